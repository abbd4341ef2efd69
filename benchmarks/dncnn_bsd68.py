"""Reproduce DnCNN's grey denoising PSNR on BSD68 (sigma=25: 29.23 dB) with the KAIR weights.

Run from the project root:

    JAX_PLATFORMS=cpu python benchmarks/dncnn_bsd68.py --data ../shared/data/test/bsd68 \
        --weights ../shared/data/weights/dncnn_25.pth --sigma 25

Protocol (as in ../shared/data/README.md and KAIR's test script):

* each 8-bit grey PNG (sorted by file name) is scaled to [0, 1] as float32, shape (H, W, 1);
* noise: numpy's legacy generator re-seeded with 0 before *every* image,
  ``y = x + RandomState(0).randn(H, W, 1) * sigma / 255`` (the same numbers as KAIR's
  ``np.random.seed(0); np.random.normal(0, sigma / 255, shape)``); the noisy input is not clipped;
* the denoised output is clipped to [0, 1]; PSNR = 10 log10(1 / MSE) on [0, 1] images, no
  border crop; the reported number is the mean over the images.

Measured mean PSNR (dB) of the KAIR ``dncnn_25.pth`` weights on BSD68, sigma=25, under the
plausible conventions (all within 29.23 +- 0.03; the default is the first row):

=============================================================  =======
noise seeding / output                                           PSNR
=============================================================  =======
RandomState(0) re-seeded per image, output clipped (default)    29.2388
same, output also rounded to 8 bits (``--round-output``)        29.2331
one RandomState(0) stream over all images, clipped              29.2293
same, rounded to 8 bits                                         29.2237
RandomState(i) for the i-th image (0-based), clipped            29.2284
=============================================================  =======

The per-image re-seeding is KAIR's convention (the source of these weights and of the 29.23);
KAIR also rounds its output to uint8 before the PSNR, which ``--round-output`` mimics.
``--seeding shared`` draws all images' noise from one RandomState(0) stream in file order.
The forward pass is jitted; images of a new size trigger one compile each (BSD68 has two).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from ctl_jax.eval.metrics import psnr  # noqa: E402
from ctl_jax.nets.torch_import import dncnn_from_state_dict, load_torch_state_dict  # noqa: E402

IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg"}


def load_grey(path: Path) -> np.ndarray:
    """8-bit image file -> float32 array (H, W, 1) in [0, 1] (converted to grey if needed)."""
    with Image.open(path) as im:
        return (np.asarray(ImageOps.exif_transpose(im).convert("L"), np.float32) / 255.0)[..., None]


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/test/bsd68", help="folder of grey test images (BSD68)")
    parser.add_argument("--weights", default="../shared/data/weights/dncnn_25.pth",
                        help="KAIR DnCNN state dict (.pth)")
    parser.add_argument("--sigma", type=float, default=25.0, help="noise std on the 0..255 scale")
    parser.add_argument("--seeding", choices=("per-image", "shared"), default="per-image",
                        help="per-image: RandomState(0) re-seeded for each image (the protocol); "
                             "shared: one RandomState(0) stream over all images")
    parser.add_argument("--round-output", action="store_true",
                        help="round the clipped output to 8 bits before the PSNR (as KAIR's test script)")
    args = parser.parse_args(argv)
    # absent data or weights (../shared is not part of every checkout): one line saying what to pass
    if not Path(args.data).is_dir():
        raise SystemExit(f"dncnn_bsd68: no test image folder {args.data!r}; pass --data FOLDER "
                         "(grey BSD68 images, e.g. ../shared/data/test/bsd68)")
    if not Path(args.weights).is_file():
        raise SystemExit(f"dncnn_bsd68: no weights file {args.weights!r}; pass --weights FILE.pth "
                         "(KAIR's DnCNN state dict, e.g. ../shared/data/weights/dncnn_25.pth)")

    paths = sorted(p for p in Path(args.data).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"dncnn_bsd68: no images found in {args.data!r}; pass --data FOLDER of grey test images")
    module, params = dncnn_from_state_dict(load_torch_state_dict(args.weights))
    denoise = jax.jit(lambda p, y: module.apply({"params": p}, y))

    shared_rng = np.random.RandomState(0)
    scores = []
    start = time.perf_counter()
    for path in paths:
        clean = load_grey(path)
        rng = np.random.RandomState(0) if args.seeding == "per-image" else shared_rng
        noisy = (clean + rng.randn(*clean.shape) * (args.sigma / 255.0)).astype(np.float32)
        out = np.asarray(denoise(params, noisy[None]))[0]
        out = np.clip(out, 0.0, 1.0)
        if args.round_output:
            out = np.round(out * 255.0) / 255.0
        scores.append(float(psnr(out, clean)))
    elapsed = time.perf_counter() - start

    mean = float(np.mean(scores))
    print(f"DnCNN {Path(args.weights).name} on {args.data}: sigma={args.sigma:g}, seeding={args.seeding}, "
          f"output {'clipped and rounded to 8 bits' if args.round_output else 'clipped'}")
    print(f"images: {len(scores)}  mean PSNR: {mean:.4f} dB  time: {elapsed:.1f} s "
          f"({elapsed / len(scores):.2f} s/image, incl. compiles, backend {jax.default_backend()})")
    return mean


if __name__ == "__main__":
    main()
