#!/usr/bin/env python3
"""Cross-image attention at sizes other than the square, and with two images of different sizes,
written the way transfer_tiny.py writes the paper's algorithm, with two changes the reference code
cannot make on its own (it picks the swapped layers by token count, 4096/1024, so any other size
silently switches the method off):

- layers are keyed by UNet level: an attention module in up block i is at level (levels − 1 − i);
- the appearance branch A runs in a pass of its own whenever its latent differs in size from the
  structure's, and the output O takes the keys and values A's pass computed at the same layer (the
  contrast's mean 1/N is then over A's N keys). O and S share a size, so they share a batch.

Records Tests/Fixtures/tiny-transfer/sizes.safetensors for two cases, each with its own images and
injected noise:
  wide   structure and appearance both 192×128 (W×H): latents 16×24
  mixed  structure 128×192 (portrait, latent 24×16), appearance 192×128 (landscape, latent 16×24)
and for each: the images, the inversion noise, X[K], masked-AdaIN final latents with given masks
(the structure's disc and the appearance's left half at latent resolution: random-weight attention
has no cluster structure for k-means to agree on, see transfer_tiny.py; the Swift test gives the
same masks), plain-AdaIN final latents, and the masks.

Pinned stack: tools/reference/requirements.txt, plus scikit-learn==1.3.2 for k-means.
Run from the repository root after sd_tiny.py:  python3 tools/reference/transfer_sizes.py
"""
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sd_tiny import install_freeu  # noqa: E402
from transfer_tiny import (MODEL, OPTIONS, OUT, adain, ddpm_step, encode_text, invert,  # noqa: E402
                           object_mask)

torch.set_num_threads(1)
CASES = {"wide": ((192, 128), (192, 128)), "mixed": ((128, 192), (192, 128))}  # (W, H) of structure, appearance


def images(structure_wh, appearance_wh):
    """The disc and the stripes of transfer_tiny.py, drawn at the given sizes."""
    def disc(w, h):
        y, x = np.mgrid[0:h, 0:w]
        inside = ((x - 0.45 * w) ** 2 + (y - 0.55 * h) ** 2 < (0.3 * min(w, h)) ** 2)
        return np.stack([np.where(inside, 220, 30), np.where(inside, 180, 40), np.where(inside, 90, 60)], -1)

    def stripes(w, h):
        y, x = np.mgrid[0:h, 0:w]
        on = ((x + y) // 12) % 2 == 0
        return np.stack([np.where(on, 240, 20), np.where(on, 240, 20), np.where(on, 230, 25)], -1)

    as_tensor = lambda a: torch.from_numpy(a.astype(np.uint8)).float().permute(2, 0, 1) / 127.5 - 1.0
    return as_tensor(disc(*structure_wh)), as_tensor(stripes(*appearance_wh))


class State:
    step = 0
    perform_swap = False
    enable_edit = False
    # "capture": A's own pass, keys/values kept per module; "use": O takes them; None: one batch.
    kv_mode = None
    record = {}


class LevelProcessor:
    """transfer_tiny.Processor keyed by level, with A's keys and values carried between passes.
    Batches are [O, A, S] when the sizes agree, else [A] then [O, S]."""

    def __init__(self, place, level, state):
        self.place, self.level, self.state = place, level, state
        self.saved = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        st = self.state
        batch_size = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        key, value = attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        if st.kv_mode == "capture" and not is_cross:
            self.saved = (key.clone(), value.clone())
        should_mix = False
        keys = [key[b] for b in range(batch_size)]
        values = [value[b] for b in range(batch_size)]
        if st.perform_swap and not is_cross and self.place == "up" and st.enable_edit and st.kv_mode != "capture":
            in0 = OPTIONS["range0"][0] <= st.step < OPTIONS["range0"][1] and self.level == 0
            in1 = OPTIONS["range1"][0] <= st.step < OPTIONS["range1"][1] and self.level == 1
            if in0 or in1:
                should_mix = True
                use_structure = st.step % 5 == 0 and st.step < 40
                if st.kv_mode == "use":          # batch [O, S]; A's from its own pass
                    keys[0], values[0] = (key[1], value[1]) if use_structure else (self.saved[0][0], self.saved[1][0])
                else:                            # batch [O, A, S]
                    source = 2 if use_structure else 1
                    keys[0], values[0] = key[source], value[source]
        outs = []
        probabilities = []
        for b in range(batch_size):
            q = query[b].view(-1, attn.heads, head_dim).transpose(0, 1)
            k = keys[b].view(-1, attn.heads, head_dim).transpose(0, 1)
            v = values[b].view(-1, attn.heads, head_dim).transpose(0, 1)
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
            if b == 0 and st.perform_swap and st.enable_edit and should_mix:
                mean = weights.mean(dim=-1, keepdim=True)   # 1/N over the keys O attends to
                weights = torch.clip((weights - mean) * OPTIONS["contrast"] + mean, 0.0, 1.0)
            probabilities.append(weights)
            outs.append((weights @ v).transpose(0, 1).reshape(-1, attn.heads * head_dim))
        if st.enable_edit and st.step == OPTIONS["adain"][0] - 1:
            # A is item 1 of [O, A, S] or item 0 of its own pass; S is the last item of either batch.
            roles = {"capture": {0: "A"}, "use": {1: "S"}, None: {1: "A", 2: "S"}}[st.kv_mode]
            for b, role in roles.items():
                if not is_cross and self.level == 0 and self.place == "up":
                    st.record[("self", role)] = probabilities[b].clone()   # the last one wins
                if is_cross and self.level == 1 and self.place == "up":
                    st.record[("cross", role)] = probabilities[b].clone()
        return attn.to_out[0](torch.stack(outs))


def install_processors(unet, state):
    levels = len(unet.config.block_out_channels)
    for place, blocks in (("down", unet.down_blocks), ("up", unet.up_blocks)):
        for i, block in enumerate(blocks):
            level = i if place == "down" else levels - 1 - i
            for module in block.modules():
                if module.__class__.__name__ == "Attention":
                    module.set_processor(LevelProcessor(place, level, state))
    for module in unet.mid_block.modules():
        if module.__class__.__name__ == "Attention":
            module.set_processor(LevelProcessor("mid", levels - 1, state))


def unet_pass(unet, state, latents, t, cond):
    """e for [O, A, S]: one batch when the sizes agree, else A's pass then [O, S]'s."""
    o, a, s = latents
    if o.shape == a.shape:
        state.kv_mode = None
        e = unet(torch.stack([o, a, s]), t, encoder_hidden_states=cond.repeat(3, 1, 1)).sample
        return [e[0], e[1], e[2]]
    state.kv_mode = "capture"
    e_a = unet(a[None], t, encoder_hidden_states=cond).sample[0]
    state.kv_mode = "use"
    e = unet(torch.stack([o, s]), t, encoder_hidden_states=cond.repeat(2, 1, 1)).sample
    state.kv_mode = None
    return [e[0], e_a, e[1]]


def generate(unet, scheduler, state, x_s, x_a, zs_s, zs_a, cond, noun_positions, masked, given_masks=None):
    T, K = OPTIONS["T"], OPTIONS["K"]
    scheduler.set_timesteps(T)
    timesteps = scheduler.timesteps[K:]
    n = len(timesteps)
    latents = [x_s, x_a, x_s]  # O, A, S
    zs = [zs_s[K:], zs_a[K:], zs_s[K:]]
    strengths = np.linspace(OPTIONS["swap_guidance"], max(OPTIONS["swap_guidance"] / 2, 1.0), n)
    start = min(OPTIONS["range0"][0], OPTIONS["range1"][0])
    end = max(OPTIONS["range0"][1], OPTIONS["range1"][1])
    state.enable_edit, state.step = True, 0
    masks = None
    for i, t in enumerate(timesteps):
        state.perform_swap = True
        e_swap = unet_pass(unet, state, latents, t, cond)
        state.perform_swap = False
        e_plain = unet_pass(unet, state, latents, t, cond)
        if OPTIONS["swap_guidance"] > 1.0 and start <= i <= end:
            e = [p + strengths[i] * (q - p) for p, q in zip(e_plain, e_swap)]
        else:
            e = e_swap
        latents = [ddpm_step(scheduler, latents[b], e[b], t, zs[b][i]) for b in range(3)]
        state.step = i
        if masked and i == OPTIONS["adain"][0]:
            rec = state.record
            if given_masks is not None:
                masks = given_masks
            else:
                masks = (object_mask(rec[("self", "S")], rec[("cross", "S")], noun_positions, tuple(x_s.shape[1:])),
                         object_mask(rec[("self", "A")], rec[("cross", "A")], noun_positions, tuple(x_a.shape[1:])))
        if OPTIONS["adain"][0] <= i < OPTIONS["adain"][1]:
            latents[0] = adain(latents[0], latents[1], *masks) if masked else adain(latents[0], latents[1])
    state.enable_edit = False
    return latents, masks


def latent_masks(structure_hw, appearance_hw):
    """The object masks the test gives: the structure's disc (as images() draws it, at latent
    pixel centres) and the appearance's left half."""
    h, w = structure_hw
    y, x = np.mgrid[0:h, 0:w] * 8 + 3.5
    disc = ((x - 0.45 * w * 8) ** 2 + (y - 0.55 * h * 8) ** 2 < (0.3 * min(w, h) * 8) ** 2)
    h, w = appearance_hw
    half = np.mgrid[0:h, 0:w][1] < w // 2
    return torch.from_numpy(disc.astype(np.float32)), torch.from_numpy(half.astype(np.float32))


def main():
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(MODEL, "tokenizer"))
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(MODEL, "text_encoder")).eval()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(MODEL, "unet"), variant="fp16").eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(MODEL, "vae")).eval()
    scheduler = DDIMScheduler.from_pretrained(os.path.join(MODEL, "scheduler"))
    install_freeu(unet)
    state = State()
    install_processors(unet, state)
    T, K = OPTIONS["T"], OPTIONS["K"]
    out = {}
    with torch.no_grad():
        cond, ids = encode_text(tokenizer, text_encoder, f"A photo of a {OPTIONS['domain']}")
        uncond, _ = encode_text(tokenizer, text_encoder, "")
        noun = tokenizer(OPTIONS["domain"], add_special_tokens=False).input_ids
        first = [p for p in range(len(ids) - len(noun) + 1) if ids[p:p + len(noun)] == noun][0]
        noun_positions = list(range(first, first + len(noun)))
        for case, (structure_wh, appearance_wh) in CASES.items():
            structure, appearance = images(structure_wh, appearance_wh)
            torch.manual_seed(11)
            x0s = vae.encode(structure[None]).latent_dist.mode() * 0.18215
            x0a = vae.encode(appearance[None]).latent_dist.mode() * 0.18215
            noise_s, noise_a = torch.randn(T, *x0s.shape[1:]), torch.randn(T, *x0a.shape[1:])
            zs_s, xts_s = invert(unet, scheduler, x0s, noise_s, cond, uncond, T)
            zs_a, xts_a = invert(unet, scheduler, x0a, noise_a, cond, uncond, T)
            given = (latent_masks(x0s.shape[2:], x0a.shape[2:]))
            latents, masks = generate(unet, scheduler, state, xts_s[K], xts_a[K], zs_s, zs_a, cond, noun_positions, True, given)
            plain, _ = generate(unet, scheduler, state, xts_s[K], xts_a[K], zs_s, zs_a, cond, noun_positions, False)
            out.update({f"{case}.structure.image": structure, f"{case}.appearance.image": appearance,
                        f"{case}.structure.inversion_noise": noise_s, f"{case}.appearance.inversion_noise": noise_a,
                        f"{case}.structure.x_skip": xts_s[K], f"{case}.appearance.x_skip": xts_a[K],
                        f"{case}.masked.output.latent": latents[0], f"{case}.masked.appearance.latent": latents[1],
                        f"{case}.masked.structure.latent": latents[2], f"{case}.structure.mask": masks[0],
                        f"{case}.appearance.mask": masks[1], f"{case}.plain.output.latent": plain[0]})
            print(case, "masks (structure, appearance) pixels:", int(masks[0].sum()), int(masks[1].sum()), file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.float().clone().contiguous() for k, v in out.items()}, os.path.join(OUT, "sizes.safetensors"),
              metadata={"generator": "tools/reference/transfer_sizes.py", "options": repr(OPTIONS), "cases": repr(CASES)})


if __name__ == "__main__":
    main()
