#!/usr/bin/env python3
"""What PyTorch's own bf16 does to the tiny UNet: the yardstick for xattn's bf16 precision.

Runs Tests/Fixtures/tiny-sd's UNet (no FreeU) on seeded inputs in float32 and under CPU
autocast to bfloat16 (oneDNN's bf16 convolutions, linear layers and attention products), and writes
Tests/Fixtures/tiny-bf16/expected.safetensors:
  latents [2, 4, 32, 32], context [2, 77, 32], timestep [1]   the inputs
  unet.fp32                                                    the float32 output
  unet.autocast_bf16                                           the bf16 autocast output (as float32)
xattn's bf16 UNet pass is held to autocast's own deviation from float32 on these inputs.

Pinned stack: tools/reference/requirements.txt. Run from the repository root (after sd_tiny.py):
    python3 tools/reference/bf16_tiny.py
"""
import os

import torch
from safetensors.torch import save_file
from diffusers import UNet2DConditionModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "tiny-sd")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "tiny-bf16")


def main():
    torch.manual_seed(20261129)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(MODEL, "unet"), variant="fp16").float().eval()
    latents = torch.randn(2, 4, 32, 32)
    context = torch.randn(2, 77, unet.config.cross_attention_dim)
    timestep = torch.tensor([501.0])
    with torch.inference_mode():
        exact = unet(latents, timestep, encoder_hidden_states=context).sample
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = unet(latents, timestep, encoder_hidden_states=context).sample.float()
    deviation = ((fast - exact).norm() / exact.norm()).item()
    print(f"autocast bf16 vs float32, tiny UNet pass: relative L2 {deviation:.5f}")
    os.makedirs(OUT, exist_ok=True)
    save_file({"latents": latents, "context": context, "timestep": timestep, "unet.fp32": exact.contiguous(),
               "unet.autocast_bf16": fast.contiguous()}, os.path.join(OUT, "expected.safetensors"),
              metadata={"script": "tools/reference/bf16_tiny.py", "torch": torch.__version__})


if __name__ == "__main__":
    main()
