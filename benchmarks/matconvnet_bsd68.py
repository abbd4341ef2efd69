"""Denoising PSNR of the authors' MatConvNet networks (DnCNN-S, CDnCNN, FFDNet) imported with
:func:`ctl_jax.nets.matconvnet.load_pretrained`, on a folder of test images.

Run from the project root:

    JAX_PLATFORMS=cpu python benchmarks/matconvnet_bsd68.py \
        --weights ../shared/data/weights/dncnn_matconvnet/sigma=25.mat --sigma 25
    JAX_PLATFORMS=cpu python benchmarks/matconvnet_bsd68.py \
        --weights ../shared/data/weights/ffdnet/FFDNet_gray.mat --sigma 25

Protocol as benchmarks/dncnn_bsd68.py: 8-bit images (sorted by name) scaled to [0, 1]; noise
``x + RandomState(0).randn(*x.shape) * sigma / 255``, re-seeded per image, noisy input not clipped;
output clipped to [0, 1]; PSNR on [0, 1], no border crop; mean over the images. Images are read as
grey for a 1-channel network and as RGB for a 3-channel one. FFDNet gets a constant noise-level map
sigma / 255; an odd height or width is padded by repeating the last row / column (as the authors'
demo does) and the output cropped back. Published numbers are in ../shared/data/README.md (the
authors' noise came from MATLAB's generator: expect a few hundredths of a dB of difference).

Measured numbers: experiments/README.md ("The authors' pretrained denoisers, imported").
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from ctl_jax.eval.metrics import psnr  # noqa: E402
from ctl_jax.nets.ffdnet import FFDNet  # noqa: E402
from ctl_jax.nets.matconvnet import load_pretrained  # noqa: E402

IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg"}


def load_image(path: Path, channels: int) -> np.ndarray:
    """8-bit image file -> float32 (H, W, channels) in [0, 1]."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("L" if channels == 1 else "RGB")
        x = np.asarray(im, np.float32) / 255.0
    return x[..., None] if channels == 1 else x


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="../shared/data/weights/dncnn_matconvnet/sigma=25.mat",
                        help="MatConvNet MAT-file (DnCNN-S, CDnCNN or FFDNet)")
    parser.add_argument("--data", default=None, help="test image folder (default: BSD68, or CBSD68 for colour)")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise std on the 0..255 scale")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    args = parser.parse_args(argv)
    if not Path(args.weights).is_file():
        raise SystemExit(f"matconvnet_bsd68: no weights file {args.weights!r}; pass --weights FILE.mat")
    module, params = load_pretrained(args.weights)
    data = args.data or f"../shared/data/test/{'bsd68' if module.channels == 1 else 'cbsd68'}"
    if not Path(data).is_dir():
        raise SystemExit(f"matconvnet_bsd68: no test image folder {data!r}; pass --data FOLDER")
    paths = sorted(p for p in Path(data).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.limit:
        paths = paths[:args.limit]
    if not paths:
        raise SystemExit(f"matconvnet_bsd68: no images found in {data!r}")

    is_ffdnet = isinstance(module, FFDNet)
    level = jnp.float32(args.sigma / 255.0)

    @jax.jit
    def denoise(p, y):
        if not is_ffdnet:
            return module.apply({"params": p}, y)
        h, w = y.shape[1:3]
        y = jnp.pad(y, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        cond = jnp.full((1, *y.shape[1:3], 1), level)
        return module.apply({"params": p}, y, cond)[:, :h, :w]

    scores = []
    start = time.perf_counter()
    for path in paths:
        clean = load_image(path, module.channels)
        noisy = (clean + np.random.RandomState(0).randn(*clean.shape) * (args.sigma / 255.0)).astype(np.float32)
        out = np.clip(np.asarray(denoise(params, noisy[None]))[0], 0.0, 1.0)
        scores.append(float(psnr(out, clean)))
    elapsed = time.perf_counter() - start
    mean = float(np.mean(scores))
    print(f"{type(module).__name__} {Path(args.weights).name} (channels={module.channels}, depth={module.depth}) "
          f"on {data}: sigma={args.sigma:g}")
    print(f"images: {len(scores)}  mean PSNR: {mean:.4f} dB  time: {elapsed:.1f} s (backend {jax.default_backend()})")
    return mean


if __name__ == "__main__":
    main()
