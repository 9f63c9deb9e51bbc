#!/usr/bin/env python3
"""Builds tiny random-weight Stable Diffusion 1.5-topology models and records diffusers' outputs.

Writes Tests/Fixtures/tiny-sd/ in the diffusers folder layout (unet/, vae/, text_encoder/,
tokenizer/, scheduler/) plus Tests/Fixtures/tiny-sd-expected/:
  expected.safetensors  inputs and outputs (text encoder, UNet with and without FreeU, VAE)
  tokens.json           token ids of prompts as diffusers' CLIPTokenizer produces them
  single_file_names.json  diffusers name -> original single-file (LDM) name and shape for every
                        tensor, from this script's mapping, checked here against diffusers' own
                        convert_ldm_* converters; the Swift test builds an original-format file
                        with it and must reproduce the same outputs.

Storage types differ on purpose, so every loading path meets real data: the UNet is an fp16
variant file (diffusion_pytorch_model.fp16.safetensors), the text encoder BF16, the VAE F32.
Weights are rounded to their storage type before the reference runs, so storage is exact.

The tokenizer files are the real CLIP BPE (OpenAI's bpe_simple_vocab_16e6.txt.gz, shipped in the
open_clip_torch wheel), converted the way transformers' CLIPTokenizer slices it.

Pinned stack: tools/reference/requirements.txt. Run from the repository root:
    python3 tools/reference/sd_tiny.py
"""
import gzip
import importlib.util
import json
import os
import shutil
import sys

import torch
from torch.fft import fftn, fftshift, ifftn, ifftshift
from safetensors.torch import save_file
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.convert_from_ckpt import (
    convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "tiny-sd")
EXPECTED = os.path.join(ROOT, "Tests", "Fixtures", "tiny-sd-expected")
torch.manual_seed(1234)
torch.set_num_threads(1)

UNET_WIDTHS = (32, 64, 96, 96)  # distinct deepest and second widths keep FreeU's two rules apart


# ---------------------------------------------------------------------------------------------
# Tokenizer files from the original CLIP BPE merges.
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_tokenizer(folder):
    spec = importlib.util.find_spec("open_clip")
    bpe = os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({token: i for i, token in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {"model_max_length": 77, "do_lower_case": True, "bos_token": "<|startoftext|>",
              "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
              "tokenizer_class": "CLIPTokenizer"}
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)


# ---------------------------------------------------------------------------------------------
# Models with every parameter random (norm scales around 1), rounded to their storage dtype.
def randomize(model, dtype):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif p.ndim == 1:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            p.copy_(p.to(dtype).to(torch.float32))
    return model.eval()


def build_models():
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=UNET_WIDTHS,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=32)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 64, 64), layers_per_block=2,
        latent_channels=4, norm_num_groups=32, sample_size=64)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=32))
    randomize(unet, torch.float16)
    # Cross-attention as peaked as a trained model's, so that the self-segmentation masks of the
    # transfer fixtures are not empty (uniform attention scores no cluster as the object). ×8 is
    # a power of two: the weights stay exact in fp16.
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".attn2.to_q." in name or ".attn2.to_k." in name:
                p.mul_(8)
    return unet, randomize(vae, torch.float32), randomize(text, torch.bfloat16)


# ---------------------------------------------------------------------------------------------
# FreeU as the paper's reference applies it (models/unet_2d_condition.py there), with the
# hard-coded 1280/640 generalised to the deepest and second widths (ALGORITHM.md §7).
def fourier_filter(x, threshold, scale):
    x_freq = fftshift(fftn(x, dim=(-2, -1)), dim=(-2, -1))
    B, C, H, W = x_freq.shape
    mask = torch.ones((B, C, H, W))
    crow, ccol = H // 2, W // 2
    mask[..., crow - threshold:crow + threshold, ccol - threshold:ccol + threshold] = scale
    return ifftn(ifftshift(x_freq * mask, dim=(-2, -1)), dim=(-2, -1)).real


def install_freeu(unet):
    deepest, second = UNET_WIDTHS[-1], UNET_WIDTHS[1]

    def hook(module, args, kwargs):
        sample = kwargs["hidden_states"].clone()
        if sample.shape[1] == deepest:
            sample[:, :deepest // 2] *= 1.2
            sample = fourier_filter(sample, threshold=1, scale=0.9)
        if sample.shape[1] == second:
            sample[:, :second // 2] *= 1.4
            sample = fourier_filter(sample, threshold=1, scale=0.2)
        kwargs["hidden_states"] = sample
        return args, kwargs

    return [block.register_forward_pre_hook(hook, with_kwargs=True) for block in unet.up_blocks]


# ---------------------------------------------------------------------------------------------
# diffusers -> original (LDM) names. Inverse of diffusers' convert_ldm_* functions.
def unet_to_original(name, levels=4, layers=2):
    p = name.split(".")
    if p[0] == "time_embedding":
        return "time_embed." + {"linear_1": "0", "linear_2": "2"}[p[1]] + "." + p[2]
    if p[0] == "conv_in":
        return "input_blocks.0.0." + p[1]
    if p[0] == "conv_norm_out":
        return "out.0." + p[1]
    if p[0] == "conv_out":
        return "out.2." + p[1]
    resnet = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
              "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
    if p[0] == "down_blocks":
        i = int(p[1])
        if p[2] == "downsamplers":
            return f"input_blocks.{3 * (i + 1)}.0.op." + ".".join(p[5:])
        j = int(p[3])
        block = f"input_blocks.{3 * i + j + 1}"
        if p[2] == "resnets":
            return f"{block}.0.{resnet[p[4]]}." + ".".join(p[5:])
        return f"{block}.1." + ".".join(p[4:])
    if p[0] == "mid_block":
        if p[1] == "attentions":
            return "middle_block.1." + ".".join(p[3:])
        return f"middle_block.{2 * int(p[2])}.{resnet[p[3]]}." + ".".join(p[4:])
    if p[0] == "up_blocks":
        i = int(p[1])
        if p[2] == "upsamplers":
            has_attention = i > 0  # the first up block has no cross-attention (UpBlock2D)
            return f"output_blocks.{(layers + 1) * i + layers}.{2 if has_attention else 1}.conv." + ".".join(p[5:])
        j = int(p[3])
        block = f"output_blocks.{(layers + 1) * i + j}"
        if p[2] == "resnets":
            return f"{block}.0.{resnet[p[4]]}." + ".".join(p[5:])
        return f"{block}.1." + ".".join(p[4:])
    raise KeyError(name)


def vae_to_original(name, levels=4):
    p = name.split(".")
    if p[0] in ("quant_conv", "post_quant_conv"):
        return name
    coder, rest = p[0], p[1:]
    tail = ".".join
    if rest[0] in ("conv_in", "conv_out"):
        return f"{coder}.{tail(rest)}"
    if rest[0] == "conv_norm_out":
        return f"{coder}.norm_out.{rest[1]}"
    resnet = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            return f"{coder}.mid.block_{int(rest[2]) + 1}.{resnet[rest[3]]}.{rest[4]}"
        attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
        return f"{coder}.mid.attn_1.{attention[rest[3]]}.{rest[-1]}"
    i = int(rest[1])
    stage, index = ("down", i) if rest[0] == "down_blocks" else ("up", levels - 1 - i)
    if rest[2] in ("downsamplers", "upsamplers"):
        return f"{coder}.{stage}.{index}.{'downsample' if stage == 'down' else 'upsample'}.conv.{rest[-1]}"
    return f"{coder}.{stage}.{index}.block.{rest[3]}.{resnet[rest[4]]}.{rest[5]}"


def single_file_names(unet, vae, text):
    rows = []
    original = {}
    for prefix, model, convert, outer in (
            ("unet", unet, unet_to_original, "model.diffusion_model."),
            ("vae", vae, vae_to_original, "first_stage_model."),
            ("text_encoder", text, lambda n: n, "cond_stage_model.transformer.")):
        for name, tensor in model.state_dict().items():
            if name.endswith("position_ids"):
                continue
            shape = list(tensor.shape)
            # The LDM VAE's mid-block attention uses 1x1 convolutions where diffusers uses Linear.
            if prefix == "vae" and ".mid_block.attentions." in name and name.endswith("weight") and tensor.ndim == 2:
                shape = shape + [1, 1]
            key = outer + convert(name)
            rows.append({"diffusers": f"{prefix}/{name}", "original": key, "original_shape": shape})
            original[key] = tensor.reshape(shape)
    check_against_diffusers(original, unet, vae)
    return rows


def check_against_diffusers(original, unet, vae):
    """diffusers' own converters must map our original-format names back to the same tensors."""
    unet_back = convert_ldm_unet_checkpoint(original, dict(unet.config), extract_ema=False)
    for name, tensor in unet.state_dict().items():
        assert torch.equal(unet_back[name], tensor), name
    assert set(unet_back) == set(unet.state_dict()), set(unet_back) ^ set(unet.state_dict())
    vae_back = convert_ldm_vae_checkpoint(original, dict(vae.config))
    for name, tensor in vae.state_dict().items():
        assert torch.equal(vae_back[name].reshape(tensor.shape), tensor), name
    assert set(vae_back) == set(vae.state_dict()), set(vae_back) ^ set(vae.state_dict())


# ---------------------------------------------------------------------------------------------
def save_folder(unet, vae, text):
    shutil.rmtree(MODEL, ignore_errors=True)
    unet.save_pretrained(os.path.join(MODEL, "unet"), safe_serialization=True, variant="fp16")
    vae.save_pretrained(os.path.join(MODEL, "vae"), safe_serialization=True)
    text.save_pretrained(os.path.join(MODEL, "text_encoder"), safe_serialization=True)
    # Re-store in the intended dtypes (save_pretrained keeps the model's float32).
    for path, dtype in ((os.path.join(MODEL, "unet", "diffusion_pytorch_model.fp16.safetensors"), torch.float16),
                        (os.path.join(MODEL, "text_encoder", "model.safetensors"), torch.bfloat16)):
        from safetensors.torch import load_file
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})
    write_tokenizer(os.path.join(MODEL, "tokenizer"))
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(os.path.join(MODEL, "scheduler"))


PROMPTS = [
    "A photo of a zebra",
    "",
    "a PHOTO of an Animal, with   punctuation!!! (and brackets) & 'quotes'",
    "numbers 1234 and 3.14, dates 2024-11-26",
    "don't stop; it's we're they'll I'd",
    "café naïve résumé — unicode ✓",
    "a photo of a " + "very " * 100 + "long prompt",
]


def main():
    unet, vae, text = build_models()
    save_folder(unet, vae, text)
    os.makedirs(EXPECTED, exist_ok=True)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(MODEL, "tokenizer"))
    ids = tokenizer(PROMPTS, padding="max_length", max_length=77, truncation=True).input_ids
    with open(os.path.join(EXPECTED, "tokens.json"), "w") as f:
        json.dump({"tokenizer": "transformers.CLIPTokenizer " + __import__("transformers").__version__,
                   "ftfy": importlib.util.find_spec("ftfy") is not None,
                   "cases": [{"prompt": p, "ids": i} for p, i in zip(PROMPTS, ids)]}, f, indent=1, ensure_ascii=False)

    out = {}
    with torch.no_grad():
        text_ids = torch.tensor(ids[:2])
        context = text(text_ids)[0]
        out["text.ids"] = text_ids.to(torch.float32)
        out["text.out"] = context

        latents = torch.randn(2, 4, 16, 16)
        out["unet.latents"] = latents
        for t in (1, 500, 981):
            timestep = torch.tensor(t, dtype=torch.int64)
            out[f"unet.t{t}.plain"] = unet(latents, timestep, encoder_hidden_states=context).sample
            hooks = install_freeu(unet)
            out[f"unet.t{t}.freeu"] = unet(latents, timestep, encoder_hidden_states=context).sample
            for h in hooks:
                h.remove()

        image = torch.rand(1, 3, 64, 48) * 2 - 1
        out["vae.image"] = image
        out["vae.mean"] = vae.encode(image).latent_dist.mean
        z = torch.randn(1, 4, 8, 6)
        out["vae.z"] = z
        out["vae.decoded"] = vae.decode(z).sample
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(EXPECTED, "expected.safetensors"),
              metadata={"generator": "tools/reference/sd_tiny.py", "torch": torch.__version__})
    with open(os.path.join(EXPECTED, "single_file_names.json"), "w") as f:
        json.dump(single_file_names(unet, vae, text), f, indent=0)
    print("wrote", MODEL, EXPECTED, file=sys.stderr)


if __name__ == "__main__":
    main()
