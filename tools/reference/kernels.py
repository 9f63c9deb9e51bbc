#!/usr/bin/env python3
"""Records expected outputs of every tensor kernel from PyTorch, for Tests/CoreTests/KernelParityTests.

Writes Tests/Fixtures/kernels.safetensors: for each case, its inputs and PyTorch's float32 output
under names "<case>.<role>". The Swift tests read the inputs from the file (so both sides see the
same bits) and compare with the stated tolerances.

Pinned stack (tools/reference/requirements.txt): torch 2.0.1, diffusers 0.19.3, safetensors 0.3.1.
Run:  python3 tools/reference/kernels.py   (from the repository root; CPU only, a few seconds)
"""
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from diffusers.models.embeddings import get_timestep_embedding

torch.manual_seed(20241126)
torch.set_num_threads(1)
out = {}


def add(case, **tensors):
    for role, t in tensors.items():
        out[f"{case}.{role}"] = t.detach().to(torch.float32).clone().contiguous()


def randn(*shape, scale=1.0):
    return torch.randn(*shape, dtype=torch.float32) * scale


# Matrix products: batched and with a shared right operand.
a, b = randn(3, 5, 7), randn(3, 7, 6)
add("matmul_batched", a=a, b=b, out=torch.matmul(a, b))
a, b = randn(2, 5, 7), randn(7, 6)
add("matmul_shared", a=a, b=b, out=torch.matmul(a, b))
x, w, bias = randn(2, 5, 12), randn(10, 12), randn(10)
add("linear", x=x, weight=w, bias=bias, out=F.linear(x, w, bias))

# Convolutions: odd sizes, batch > 1, both kernel paths (whole image and column panels).
conv_cases = {
    "conv3x3_s1_odd": ((2, 6, 9, 7), (5, 6, 3, 3), 1, 1),
    "conv3x3_s1_panels": ((2, 5, 33, 35), (7, 5, 3, 3), 1, 1),
    "conv3x3_s2": ((1, 4, 9, 8), (6, 4, 3, 3), 2, 1),
    "conv3x3_s2_panels": ((1, 3, 40, 38), (4, 3, 3, 3), 2, 1),
    "conv1x1": ((2, 7, 5, 5), (3, 7, 1, 1), 1, 0),
    "conv1x1_panels": ((1, 9, 30, 30), (5, 9, 1, 1), 1, 0),
}
for name, (xs, ws, stride, pad) in conv_cases.items():
    x, w, bias = randn(*xs), randn(*ws, scale=0.3), randn(ws[0])
    add(name, x=x, weight=w, bias=bias, out=F.conv2d(x, w, bias, stride=stride, padding=pad))
# The VAE encoder's downsampler: pad (left 0, right 1, top 0, bottom 1), then stride 2, no padding.
x, w, bias = randn(1, 3, 8, 8), randn(4, 3, 3, 3), randn(4)
add("conv3x3_s2_asym", x=x, weight=w, bias=bias, out=F.conv2d(F.pad(x, (0, 1, 0, 1)), w, bias, stride=2))

# Normalisation: 9 channels (not divisible by 2 threads), 3 groups; an offset mean tests precision.
x, g, bias = randn(2, 9, 5, 7) + 3.0, randn(9), randn(9)
add("groupnorm", x=x, weight=g, bias=bias, out=F.group_norm(x, 3, g, bias, eps=1e-5))
add("groupnorm_silu", x=x, weight=g, bias=bias, out=F.silu(F.group_norm(x, 3, g, bias, eps=1e-6)))
x, g, bias = randn(2, 5, 13), randn(13), randn(13)
add("layernorm", x=x, weight=g, bias=bias, out=F.layer_norm(x, (13,), g, bias, eps=1e-5))

# Activations over a wide range, including the clamped tails.
x = torch.cat([randn(1001, scale=4.0), torch.tensor([-100.0, -30.0, -9.0, 0.0, 9.0, 30.0, 100.0])])
add("silu", x=x, out=F.silu(x))
add("gelu", x=x, out=F.gelu(x))
add("quick_gelu", x=x, out=x * torch.sigmoid(1.702 * x))
x = randn(2, 3, 22, scale=2.0)
h, gate = x.chunk(2, dim=-1)
add("geglu", x=x, out=h * F.gelu(gate))
x = randn(3, 7, 37, scale=3.0)
add("softmax", x=x, out=torch.softmax(x, dim=-1))
x = randn(2, 3, 4, 5)
add("upsample", x=x, out=F.interpolate(x, scale_factor=2.0, mode="nearest"))

# Timestep embeddings exactly as diffusers computes them.
t = torch.tensor([0.0, 1.0, 21.0, 500.0, 981.0, 999.0])
out["timestep.t"] = t
out["timestep.sd_unet"] = get_timestep_embedding(t, 32, flip_sin_to_cos=True, downscale_freq_shift=0)
out["timestep.shift1"] = get_timestep_embedding(t, 33, flip_sin_to_cos=False, downscale_freq_shift=1)

# Attention: torch's SDPA in [B, H, N, d]. Many key blocks (5000 keys) and a ragged query count.
q, k, v = randn(2, 3, 37, 8), randn(2, 3, 19, 8), randn(2, 3, 19, 8)
add("attention_small", q=q, k=k, v=v, out=F.scaled_dot_product_attention(q, k, v))
q, k, v = randn(1, 2, 100, 8), randn(1, 2, 5000, 8), randn(1, 2, 5000, 8)
add("attention_long", q=q, k=k, v=v, out=F.scaled_dot_product_attention(q, k, v))
# The contrast step of ALGORITHM.md §8 as the paper's reference writes it: subtract the row mean,
# scale by 1.67, add the mean back, clamp to [0, 1], no renormalisation; then multiply V.
q, k, v = randn(1, 2, 33, 8), randn(1, 2, 29, 8), randn(1, 2, 29, 8)
p = torch.softmax(q @ k.transpose(-1, -2) / (8 ** 0.5), dim=-1)
mean = p.mean(dim=-1, keepdim=True)
contrasted = ((p - mean) * 1.67 + mean).clamp(0.0, 1.0)
add("attention_contrast", q=q, k=k, v=v, out=contrasted @ v)

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
path = os.path.join(root, "Tests", "Fixtures", "kernels.safetensors")
save_file(out, path, metadata={"generator": "tools/reference/kernels.py", "torch": torch.__version__})
print(f"wrote {len(out)} tensors to {path}", file=sys.stderr)
