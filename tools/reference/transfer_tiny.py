#!/usr/bin/env python3
"""The cross-image attention algorithm of ALGORITHM.md, written the way the paper's reference
code (garibida/cross-image-attention) runs it, on diffusers 0.19.3 and the tiny model of
sd_tiny.py, with injected noise. Records what Tests/CoreTests/TransferParityTests compares:

  Tests/Fixtures/tiny-transfer/noise.safetensors     the N(0, I) draws (xattnd transfer --noise format)
  Tests/Fixtures/tiny-transfer/expected.safetensors  input images, X[K] and Z[K…T−1] of both images,
                                                     final latents (masked and plain AdaIN), masks

Like the reference (and unlike xattn) it runs every inversion step and, in generation, separate
swap and plain passes of batch 3. The official code needs a GPU and 512 px; this keeps its
behaviour, quirks included, at the tiny model's 128 px. A short schedule (T = 20, K = 6) with
ranges scaled to it still exercises swaps, the c % 5 rule, contrast, swap guidance, masks and AdaIN.

Pinned stack: tools/reference/requirements.txt, plus scikit-learn==1.3.2 for k-means.
Run from the repository root after sd_tiny.py:  python3 tools/reference/transfer_tiny.py
"""
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.cluster import KMeans
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sd_tiny import install_freeu  # noqa: E402  (the same FreeU as the UNet fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "tiny-sd")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "tiny-transfer")
torch.set_num_threads(1)

OPTIONS = dict(T=20, K=6, range0=(2, 12), range1=(2, 9), adain=(4, 14), swap_guidance=3.5, contrast=1.67,
               inversion_guidance=3.5, domain="animal")


def images(size=128):
    """A structure (a bright disc on a dark ground) and an appearance (diagonal stripes), as the
    reference loads images: uint8 RGB → x / 127.5 − 1."""
    y, x = np.mgrid[0:size, 0:size]
    disc = ((x - 60) ** 2 + (y - 70) ** 2 < 40 ** 2)
    structure = np.stack([np.where(disc, 220, 30), np.where(disc, 180, 40), np.where(disc, 90, 60)], -1)
    stripes = ((x + y) // 12) % 2 == 0
    appearance = np.stack([np.where(stripes, 240, 20), np.where(stripes, 240, 20), np.where(stripes, 230, 25)], -1)
    as_tensor = lambda a: torch.from_numpy(a.astype(np.uint8)).float().permute(2, 0, 1) / 127.5 - 1.0
    return as_tensor(structure), as_tensor(appearance)


class State:
    step = 0
    perform_swap = False
    enable_edit = False
    record = {}


def level_of(tokens, latent_hw):
    h, w = latent_hw
    if tokens == h * w:
        return 0
    if tokens == ((h + 1) // 2) * ((w + 1) // 2):
        return 1
    return None


class Processor:
    """The reference's AttentionProcessor: swap keys/values for O in the decoder's self-attention
    at levels 0 and 1, contrast O's probabilities, record A's and S's maps for the masks."""

    def __init__(self, place, state, latent_hw):
        self.place, self.state, self.latent_hw = place, state, latent_hw

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        st = self.state
        batch_size = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        key, value = attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        should_mix = False
        level = level_of(hidden_states.shape[1], self.latent_hw)
        if st.perform_swap and not is_cross and "up" in self.place and st.enable_edit:
            in0 = OPTIONS["range0"][0] <= st.step < OPTIONS["range0"][1] and level == 0
            in1 = OPTIONS["range1"][0] <= st.step < OPTIONS["range1"][1] and level == 1
            if in0 or in1:
                should_mix = True
                source = 2 if (st.step % 5 == 0 and st.step < 40) else 1  # S else A
                key[0], value[0] = key[source], value[source]
        q = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        k = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        v = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
        if st.perform_swap and st.enable_edit and should_mix and not is_cross:
            w0 = weights[0]
            mean = w0.mean(dim=-1, keepdim=True)
            weights[0] = torch.clip((w0 - mean) * OPTIONS["contrast"] + mean, 0.0, 1.0)
        if st.enable_edit and st.step == OPTIONS["adain"][0] - 1:
            if not is_cross and level == 0:
                st.record["self"] = weights.clone()   # the last one in the forward pass wins
            if is_cross and level == 1:
                st.record["cross"] = weights.clone()
        out = (weights @ v).transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        return attn.to_out[0](out)


def install_processors(unet, state, latent_hw):
    for name, block in unet.named_children():
        place = "down" if "down" in name else "up" if "up" in name else "mid" if "mid" in name else None
        if place is None:
            continue
        for module in block.modules():
            if module.__class__.__name__ == "Attention":
                module.set_processor(Processor(place, state, latent_hw))


def encode_text(tokenizer, text_encoder, prompt):
    ids = tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids)[0], ids[0].tolist()


def invert(unet, scheduler, x0, noise, cond, uncond, T):
    """Edit-friendly DDPM inversion, every step, as the reference's inversion_forward_process."""
    scheduler.set_timesteps(T)
    timesteps = scheduler.timesteps
    alpha_bar = scheduler.alphas_cumprod
    xts = torch.zeros((T,) + tuple(x0.shape[1:]))
    t_to_idx = {int(v): k for k, v in enumerate(timesteps)}
    for t in reversed(timesteps):
        idx = t_to_idx[int(t)]
        xts[idx] = x0 * (alpha_bar[t] ** 0.5) + noise[idx] * (1 - alpha_bar[t]) ** 0.5
    xts = torch.cat([xts, x0], dim=0)
    zs = torch.zeros((T,) + tuple(x0.shape[1:]))
    for t in reversed(timesteps):
        idx = t_to_idx[int(t)]
        xt = xts[idx][None]
        out = unet(xt, t, encoder_hidden_states=uncond).sample
        cond_out = unet(xt, t, encoder_hidden_states=cond).sample
        e = out + OPTIONS["inversion_guidance"] * (cond_out - out)
        xtm1 = xts[idx + 1][None]
        pred_original = (xt - (1 - alpha_bar[t]) ** 0.5 * e) / alpha_bar[t] ** 0.5
        prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        a_prev = alpha_bar[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
        variance = variance_of(scheduler, t)
        mu = a_prev ** 0.5 * pred_original + (1 - a_prev - variance) ** 0.5 * e
        z = (xtm1 - mu) / variance ** 0.5
        zs[idx] = z
        xts[idx + 1] = mu + variance ** 0.5 * z
    zs[-1] = torch.zeros_like(zs[-1])
    return zs, xts


def variance_of(scheduler, t):
    prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    a = scheduler.alphas_cumprod[t]
    a_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
    return ((1 - a_prev) / (1 - a)) * (1 - a / a_prev)


def ddpm_step(scheduler, x, e, t, z):
    prev_t = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    a = scheduler.alphas_cumprod[t]
    a_prev = scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else scheduler.final_alpha_cumprod
    variance = variance_of(scheduler, t)
    pred_original = (x - (1 - a) ** 0.5 * e) / a ** 0.5
    prev = a_prev ** 0.5 * pred_original + (1 - a_prev - 1 * variance) ** 0.5 * e
    return prev + 1 * variance ** 0.5 * z


def calc_mean_std(feat, mask=None, eps=1e-5):
    C = feat.shape[0]
    flat = feat.view(C, -1)
    if mask is not None:
        flat = flat[:, mask.view(-1) == 1]
    return flat.mean(dim=1).view(C, 1, 1), (flat.var(dim=1) + eps).sqrt().view(C, 1, 1)


def adain(o, a, mask_s=None, mask_a=None):
    a_mean, a_std = calc_mean_std(a, mask_a)
    o_mean, o_std = calc_mean_std(o, mask_s)
    normalised = (o - o_mean) / o_std * a_std + a_mean
    return normalised if mask_s is None else o * (1 - mask_s) + normalised * mask_s


def object_mask(self_attn, cross_attn, noun_positions, hw):
    """The reference's Segmentor for one image: KMeans(5, n_init=10) after np.random.seed(1), noun
    maps upsampled ×2 and normalised, clusters scoring above 1.4 × the others' mean."""
    h, w = hw
    np.random.seed(1)
    labels = KMeans(n_clusters=5, n_init=10).fit(self_attn.mean(dim=0).numpy()).labels_.reshape(h, w)
    cross = cross_attn.mean(dim=0).reshape((h + 1) // 2, (w + 1) // 2, -1).numpy()[:, :, noun_positions]
    maps = []
    for i in range(cross.shape[-1]):
        m = cross[:, :, i].repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
        maps.append((m - np.abs(m.min())) / m.max())
    scores = []
    for c in range(5):
        member = labels == c
        scores.append(max(float(m[member].sum() / member.sum()) for m in maps))
    others = list(scores)
    others.remove(max(scores))
    mean = sum(others) / len(others)
    return torch.from_numpy(np.isin(labels, [c for c in range(5) if scores[c] > 1.4 * mean]).astype(np.float32))


def generate(unet, scheduler, state, x_s, x_a, zs_s, zs_a, cond, noun_positions, masked, latent_hw):
    T, K = OPTIONS["T"], OPTIONS["K"]
    scheduler.set_timesteps(T)
    timesteps = scheduler.timesteps[K:]
    n = len(timesteps)
    latents = torch.stack([x_s, x_a, x_s])  # O, A, S
    zs = [zs_s[K:], zs_a[K:], zs_s[K:]]
    context = cond.repeat(3, 1, 1)
    strengths = np.linspace(OPTIONS["swap_guidance"], max(OPTIONS["swap_guidance"] / 2, 1.0), n)
    start = min(OPTIONS["range0"][0], OPTIONS["range1"][0])
    end = max(OPTIONS["range0"][1], OPTIONS["range1"][1])
    state.enable_edit, state.step = True, 0
    masks = None
    for i, t in enumerate(timesteps):
        state.perform_swap = True
        e_swap = unet(latents, t, encoder_hidden_states=context).sample
        state.perform_swap = False
        e_plain = unet(latents, t, encoder_hidden_states=context).sample
        if OPTIONS["swap_guidance"] > 1.0 and start <= i <= end:
            e = e_plain + strengths[i] * (e_swap - e_plain)
        else:
            e = e_swap
        latents = torch.stack([ddpm_step(scheduler, latents[b], e[b], t, zs[b][i]) for b in range(3)])
        state.step = i
        if masked and i == OPTIONS["adain"][0]:
            rec = state.record
            state.recorded = {f"{name}.self_attention": rec["self"][b].mean(dim=0) for name, b in (("appearance", 1), ("structure", 2))}
            state.recorded.update({f"{name}.cross_attention": rec["cross"][b].mean(dim=0)[:, noun_positions]
                                   for name, b in (("appearance", 1), ("structure", 2))})
            masks = (object_mask(rec["self"][2], rec["cross"][2], noun_positions, latent_hw),   # S
                     object_mask(rec["self"][1], rec["cross"][1], noun_positions, latent_hw))   # A
        if OPTIONS["adain"][0] <= i < OPTIONS["adain"][1]:
            latents[0] = adain(latents[0], latents[1], *masks) if masked else adain(latents[0], latents[1])
    state.enable_edit = False
    return latents, masks


def synthetic_segmentation(hw=(16, 16)):
    """A well-posed segmentation case: five regions (four quadrants with a disc cut out of their
    centre), each pixel's self-attention concentrated on its own region, and the noun's
    cross-attention strong on the disc. Random-weight attention (above) has no such structure, so
    k-means on it is ill-posed: scikit-learn's own restarts disagree there."""
    h, w = hw
    y, x = np.mgrid[0:h, 0:w]
    labels = (y >= h // 2) * 2 + (x >= w // 2)
    labels[(x - 7.5) ** 2 + (y - 8.5) ** 2 < 16] = 4
    labels = labels.reshape(-1)
    g = torch.Generator().manual_seed(3)
    logits = 4.0 * torch.from_numpy((labels[:, None] == labels[None, :]).astype(np.float32)) + 0.5 * torch.randn(h * w, h * w, generator=g)
    self_attn = torch.softmax(logits, dim=-1)
    yy, xx = np.mgrid[0:(h + 1) // 2, 0:(w + 1) // 2]
    disc = ((xx - 3.75) ** 2 + (yy - 4.25) ** 2 < 5).astype(np.float32).reshape(-1, 1)
    cross = torch.from_numpy(0.02 + 0.05 * disc) + 0.005 * torch.rand(disc.shape[0], 1, generator=g)
    mask = object_mask(self_attn[None], cross[None], [0], hw)
    return {"synthetic.self_attention": self_attn, "synthetic.cross_attention": cross, "synthetic.mask": mask}


def main():
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(MODEL, "tokenizer"))
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(MODEL, "text_encoder")).eval()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(MODEL, "unet"), variant="fp16").eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(MODEL, "vae")).eval()
    scheduler = DDIMScheduler.from_pretrained(os.path.join(MODEL, "scheduler"))
    install_freeu(unet)
    structure, appearance = images()
    T = OPTIONS["T"]
    torch.manual_seed(7)
    latent_hw = (16, 16)
    noise_s, noise_a = torch.randn(T, 4, *latent_hw), torch.randn(T, 4, *latent_hw)
    state = State()
    install_processors(unet, state, latent_hw)
    prompt = f"A photo of a {OPTIONS['domain']}"
    out = {"structure.image": structure, "appearance.image": appearance}
    with torch.no_grad():
        cond, ids = encode_text(tokenizer, text_encoder, prompt)
        uncond, _ = encode_text(tokenizer, text_encoder, "")
        noun = tokenizer(OPTIONS["domain"], add_special_tokens=False).input_ids
        noun_positions = [p for p in range(len(ids) - len(noun) + 1) if ids[p:p + len(noun)] == noun][:1]
        noun_positions = list(range(noun_positions[0], noun_positions[0] + len(noun)))
        x0 = {}
        for name, image in (("structure", structure), ("appearance", appearance)):
            x0[name] = vae.encode(image[None]).latent_dist.mode() * 0.18215
        zs_s, xts_s = invert(unet, scheduler, x0["structure"], noise_s, cond, uncond, T)
        zs_a, xts_a = invert(unet, scheduler, x0["appearance"], noise_a, cond, uncond, T)
        K = OPTIONS["K"]
        out.update({"structure.x_skip": xts_s[K], "structure.zs": zs_s[K:],
                    "appearance.x_skip": xts_a[K], "appearance.zs": zs_a[K:]})
        latents, masks = generate(unet, scheduler, state, xts_s[K], xts_a[K], zs_s, zs_a, cond, noun_positions, True, latent_hw)
        out.update(state.recorded)
        out.update({"masked.output.latent": latents[0], "masked.appearance.latent": latents[1],
                    "masked.structure.latent": latents[2], "structure.mask": masks[0], "appearance.mask": masks[1]})
        latents, _ = generate(unet, scheduler, state, xts_s[K], xts_a[K], zs_s, zs_a, cond, noun_positions, False, latent_hw)
        out["plain.output.latent"] = latents[0]
    out.update(synthetic_segmentation())
    os.makedirs(OUT, exist_ok=True)
    save_file({"structure.inversion_noise": noise_s.contiguous(), "appearance.inversion_noise": noise_a.contiguous()},
              os.path.join(OUT, "noise.safetensors"))
    save_file({k: v.float().clone().contiguous() for k, v in out.items()}, os.path.join(OUT, "expected.safetensors"),
              metadata={"generator": "tools/reference/transfer_tiny.py", "options": repr(OPTIONS)})
    print("masks (structure, appearance) pixels:", int(masks[0].sum()), int(masks[1].sum()), file=sys.stderr)


if __name__ == "__main__":
    main()
