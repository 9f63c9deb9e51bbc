#!/usr/bin/env python3
"""Records how the reference stack reads and resizes images (Pillow 9.5.0), for
Tests/CoreTests/ImagingTests: PNG variants decoded with Image.open(...).convert("RGB"), and the
centre crop + default bicubic resize of ALGORITHM.md §2. Writes Tests/Fixtures/images/.
Needs pypng (pip install pypng==0.20220715.0) for the interlaced and 16-bit files Pillow cannot write.
Run from the repository root:  python3 tools/reference/imaging.py
"""
import os

import numpy as np
import png
import torch
from PIL import Image
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "images")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(5)
expected = {}


def record(name, array):
    expected[name] = torch.from_numpy(np.ascontiguousarray(array).astype(np.float32))


# PNG variants, decoded as the reference does.
rgb = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
alpha = rng.integers(0, 256, (13, 17, 1), dtype=np.uint8)
variants = {
    "rgb": Image.fromarray(rgb, "RGB"),
    "rgba": Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA"),
    "gray": Image.fromarray(rgb[:, :, 0], "L"),
    "gray_alpha": Image.fromarray(np.concatenate([rgb[:, :, :1], alpha], -1), "LA"),
    "palette": Image.fromarray(rgb, "RGB").quantize(16),
}
transparent = Image.fromarray(rgb, "RGB").quantize(16)
transparent.info["transparency"] = 3
variants["palette_transparent"] = transparent
for name, image in variants.items():
    path = os.path.join(OUT, f"{name}.png")
    image.save(path)
    record(f"{name}.rgb", np.array(Image.open(path).convert("RGB")))
with open(os.path.join(OUT, "interlaced.png"), "wb") as f:
    png.Writer(17, 13, greyscale=False, interlace=True).write(f, rgb.reshape(13, -1))
record("interlaced.rgb", np.array(Image.open(os.path.join(OUT, "interlaced.png")).convert("RGB")))
deep = (rgb.astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape)).astype(np.uint16)
with open(os.path.join(OUT, "rgb16.png"), "wb") as f:
    png.Writer(17, 13, greyscale=False, bitdepth=16).write(f, deep.reshape(13, -1))
record("rgb16.values", deep)  # 16-bit samples; Pillow's own reading of them is not the reference here

# Crop and resize (§2): a landscape image down to 32 and up to 96, and a two-axis resize.
source = rng.integers(0, 256, (53, 77, 3), dtype=np.uint8)
record("resize.source", source)
h, w = source.shape[:2]
offset = (w - h) // 2
square = source[:, offset:offset + h]
record("resize.down32", np.array(Image.fromarray(square).resize((32, 32))))
record("resize.up96", np.array(Image.fromarray(square).resize((96, 96))))
record("resize.mixed", np.array(Image.fromarray(source).resize((20, 61))))

# Demo inputs for scripts/setup (the job on the bundled tiny model): not square, so they are
# cropped and resized like real photos.
y, x = np.mgrid[0:160, 0:200]
disc = (x - 110) ** 2 + (y - 85) ** 2 < 55 ** 2
demo_structure = np.stack([np.where(disc, 220, 30), np.where(disc, 180, 40), np.where(disc, 90, 60)], -1).astype(np.uint8)
stripes = ((x + y) // 14) % 2 == 0
demo_appearance = np.stack([np.where(stripes, 240, 20), np.where(stripes, 240, 20), np.where(stripes, 230, 25)], -1).astype(np.uint8)
Image.fromarray(demo_structure).save(os.path.join(OUT, "demo-structure.png"))
Image.fromarray(demo_appearance).save(os.path.join(OUT, "demo-appearance.png"))

# JPEG (4:2:0, quality 90): what Pillow's decoder (libjpeg-turbo, ISLOW, fancy upsampling) gives.
y, x = np.mgrid[0:37, 0:51]
smooth = np.stack([(x * 5) % 256, (y * 7) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)
Image.fromarray(smooth).save(os.path.join(OUT, "photo.jpg"), quality=90)
record("photo.rgb", np.array(Image.open(os.path.join(OUT, "photo.jpg")).convert("RGB")))
save_file(expected, os.path.join(OUT, "expected.safetensors"), metadata={"pillow": Image.__version__})
print("wrote", OUT)
