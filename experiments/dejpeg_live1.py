"""The deJPEG experiment scored on LIVE1 in the papers' Y protocol and in RGB, each method at the
alpha its crop sweep chose.

Two protocols, both from the 8-bit RGB LIVE1 images:

* **Y** (how DnCNN-3 and the FTN paper score JPEG): Y = MATLAB ``rgb2ycbcr``'s luma, rounded to
  8 bits, saved as a grey JPEG at quality q, restored, PSNR on Y.
* **RGB** (what a user with a colour JPEG gets): the RGB image saved as a colour JPEG at q (Pillow,
  4:2:0 chroma), its decoded YCbCr's Y restored by the grey network, chroma kept as decoded, back to
  RGB, PSNR on RGB.

Run after ``experiments/dejpeg.py``:

    python experiments/dejpeg_live1.py --experiment runs/dejpeg [--crop 256] [--qualities 10 20 30 40]

Writes EXPERIMENT/live1/table.md (PSNR of every method and DnCNN-3 per quality, both protocols, with
the JPEG input's) and prints it.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ctl_jax.data import iter_folder  # noqa: E402
from ctl_jax.data.images import centre_crop  # noqa: E402
from ctl_jax.degradations.jpeg import jpeg_compress  # noqa: E402
from ctl_jax.eval.metrics import rgb_to_y  # noqa: E402
from ctl_jax.eval.report import read_sweep_json  # noqa: E402
from ctl_jax.eval.sweep import compiled_forward  # noqa: E402
from ctl_jax.files import safe_name, write_text_atomic  # noqa: E402
from ctl_jax.train.runs import load_run  # noqa: E402

REFERENCE = "DnCNN-3 (blind)"


def psnr8(out8: np.ndarray, clean8: np.ndarray) -> float:
    mse = np.mean((out8.astype(np.float64) - clean8.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def restorer(model, alpha: float):
    """grey uint8 (H, W) -> restored grey uint8 (H, W) by ``model`` at ``alpha`` (jitted per size)."""
    forward = compiled_forward(model)
    control = jnp.full((1, 1, 1, model.control_dim), alpha, jnp.float32)

    def restore(y8: np.ndarray) -> np.ndarray:
        x = jnp.asarray(y8, jnp.float32)[None, :, :, None] / 255.0
        out = np.asarray(forward(model.theta0, model.phi, x, control))[0, :, :, 0]
        return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)

    return restore


def y_protocol(rgb8: np.ndarray, quality: int, restore) -> tuple[float, float]:
    """(JPEG input PSNR, restored PSNR) on MATLAB's Y, the grey-JPEG protocol of DnCNN-3."""
    y8 = np.round(np.asarray(rgb_to_y(rgb8.astype(np.float32) / 255.0)) * 255.0).astype(np.uint8)[..., 0]
    jpeg8 = jpeg_compress(y8[..., None], quality)[..., 0]
    return psnr8(jpeg8, y8), psnr8(restore(jpeg8), y8)


def rgb_protocol(rgb8: np.ndarray, quality: int, restore) -> tuple[float, float]:
    """(JPEG input PSNR, restored PSNR) on RGB: colour JPEG, its Y restored, chroma as decoded."""
    jpeg8 = jpeg_compress(rgb8, quality)
    y, cb, cr = Image.fromarray(jpeg8, "RGB").convert("YCbCr").split()
    restored_y = Image.fromarray(restore(np.asarray(y)), "L")
    out8 = np.asarray(Image.merge("YCbCr", (restored_y, cb, cr)).convert("RGB"))
    return psnr8(jpeg8, rgb8), psnr8(out8, rgb8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="runs/dejpeg", help="a finished experiments/dejpeg.py run")
    parser.add_argument("--data", default="../shared/data/test/live1")
    parser.add_argument("--crop", type=int, default=256, help="centre crop size (0: whole images)")
    parser.add_argument("--qualities", type=int, nargs="+", default=[10, 20, 30, 40])
    args = parser.parse_args(argv)
    experiment, data = pathlib.Path(args.experiment), pathlib.Path(args.data)
    if not (experiment / "report" / "sweep.json").is_file() or not data.is_dir():
        print(f"dejpeg_live1: need {experiment}/report/sweep.json (run experiments/dejpeg.py) and the folder "
              f"{data}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    crops = {name: r for name, r in read_sweep_json(experiment / "report" / "sweep.json").items() if len(r.alphas) > 1}
    images = [im for _, im in iter_folder(data, 3)]
    images = [centre_crop(im, args.crop) if args.crop else im for im in images]
    images8 = [np.round(im * 255.0).astype(np.uint8) for im in images]
    rows = {name: (experiment / name, lambda q, r=r: r.best_alpha(q)) for name, r in crops.items()}
    rows[REFERENCE] = (experiment / safe_name(REFERENCE), lambda q: 0.0)

    table = {}
    for name, (run_dir, alpha_at) in rows.items():
        model = load_run(run_dir)
        for q in args.qualities:
            alpha = float(alpha_at(q))
            restore = restorer(model, alpha)
            y = np.mean([y_protocol(im, q, restore) for im in images8], axis=0)
            rgb = np.mean([rgb_protocol(im, q, restore) for im in images8], axis=0)
            table[name, q] = (alpha, y, rgb)
            print(f"{name} q{q} alpha {alpha:g}: Y {y[1]:.2f} RGB {rgb[1]:.2f} ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr, flush=True)

    size = f"{len(images)} LIVE1 images" + (f", {args.crop}x{args.crop} centre crops" if args.crop else ", whole")
    lines = [f"# deJPEG on {size}", "", "PSNR (dB), Y protocol / RGB protocol; tuned methods at their crop-chosen α.",
             "", "| method | " + " | ".join(f"q{q}" for q in args.qualities) + " |",
             "|---|" + "---|" * len(args.qualities)]
    first = next(iter(rows))
    lines.append("| JPEG input | " + " | ".join(f"{table[first, q][1][0]:.2f} / {table[first, q][2][0]:.2f}"
                                               for q in args.qualities) + " |")
    for name in rows:
        lines.append(f"| {name} | " + " | ".join(f"{table[name, q][1][1]:.2f} / {table[name, q][2][1]:.2f} "
                                                f"(α={table[name, q][0]:g})" for q in args.qualities) + " |")
    lines += ["", f"`python experiments/dejpeg_live1.py --experiment {experiment} --crop {args.crop} --qualities "
              f"{' '.join(map(str, args.qualities))}`: {time.perf_counter() - start:.0f} s"]
    out = experiment / "live1"
    out.mkdir(exist_ok=True)
    write_text_atomic(out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
