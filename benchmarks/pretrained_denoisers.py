"""Reproduce the published PSNRs of the authors' pretrained MatConvNet denoisers (DnCNN-S, CDnCNN,
FFDNet grey / colour, DnCNN-3 JPEG deblocking), imported with
:func:`ctl_jax.nets.matconvnet.load_pretrained`.

Run from the project root:

    JAX_PLATFORMS=cpu python benchmarks/pretrained_denoisers.py \
        --weights ../shared/data/weights --data ../shared/data/test
    # a subset, on the first 4 images of each set:
    JAX_PLATFORMS=cpu python benchmarks/pretrained_denoisers.py --only dncnn-s ffdnet-gray --limit 4

``--weights`` is the folder holding ``dncnn_matconvnet/`` and ``ffdnet/``; ``--data`` the folder
holding the test sets ``bsd68/``, ``set12/``, ``cbsd68/`` and ``live1/``. Rows (``--only`` picks groups):

* ``dncnn-s``: DnCNN-S, one grey network per sigma (``sigma=15/25/50.mat``), on BSD68 and Set12;
* ``cdncnn``: the sigma-specific colour networks ``color_sigma=15/25/35/50.mat`` on CBSD68. The
  published numbers at hand are the blind CDnCNN-B's (one network for all levels): a network trained
  for one level is expected to score a little higher, so these deltas are not a reproduction check;
* ``ffdnet-gray`` / ``ffdnet-color``: ``FFDNet_gray.mat`` on BSD68, ``FFDNet_color.mat`` on CBSD68,
  sigma 15/25/35/50/75, with a constant noise-level map sigma / 255;
* ``dncnn3-jpeg``: DnCNN-3 (``DnCNN3.mat``, one blind grey network) removing JPEG artefacts on LIVE1
  at quality 10/20/30/40.

Noise protocol (as benchmarks/dncnn_bsd68.py): 8-bit images (sorted by name) scaled to [0, 1], read
as grey for a 1-channel network and as RGB for a 3-channel one; noise
``x + RandomState(0).randn(*x.shape) * sigma / 255``, re-seeded per image; the noisy input is neither
clipped nor rounded; the output is clipped to [0, 1]; PSNR on [0, 1], no border crop; mean over the
images. An odd height or width is padded for FFDNet by repeating the last row / column (as the
authors' demo does) and the output cropped back.

JPEG protocol (the authors' DnCNN-3 test): Y = 16 + 65.481 R + 128.553 G + 24.966 B (MATLAB's
``rgb2ycbcr``, R, G, B in [0, 1]) from the 8-bit RGB, rounded to 8 bits; that Y image saved as a grey
JPEG by Pillow at quality q and decoded; the network runs on the decoded Y / 255; its output is
clipped and rounded to 8 bits and scored against the 8-bit Y (PSNR with peak 255).

The published numbers (../shared/data/README.md) came from MATLAB's noise generator, so expect a
few hundredths of a dB of difference on the noise rows. The last line printed is
``max |delta| vs published: X dB`` over the rows compared with their own network's published number
(the CDnCNN rows, compared with the blind CDnCNN-B's, are summarised on the line before instead).

Measured numbers: experiments/README.md ("The authors' pretrained denoisers, imported").
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from ctl_jax.nets.ffdnet import FFDNet  # noqa: E402
from ctl_jax.nets.matconvnet import load_pretrained  # noqa: E402

PROG = "pretrained_denoisers"
IMAGE_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg"}
SET_NAMES = {"bsd68": "BSD68", "set12": "Set12", "cbsd68": "CBSD68", "live1": "LIVE1"}
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])  # MATLAB rgb2ycbcr, R, G, B in [0, 1] -> Y in [16, 235]


@dataclasses.dataclass(frozen=True)
class Row:
    group: str        # the --only name
    network: str      # shown in the table
    weights: str      # path under --weights
    channels: int     # the network's image channels (checked after loading)
    test_set: str     # folder under --data
    level: int        # sigma (0..255 scale) or JPEG quality
    published: float
    task: str = "noise"   # "noise" or "jpeg"
    reference: str = ""   # whose published number, when it is another network's

    @property
    def level_text(self) -> str:
        return f"q{self.level}" if self.task == "jpeg" else f"sigma {self.level}"


def _rows() -> list[Row]:
    rows = []
    dncnn_s = {15: (31.73, 32.86), 25: (29.23, 30.44), 50: (26.23, 27.18)}
    for test_set, k in (("bsd68", 0), ("set12", 1)):
        for sigma, pub in dncnn_s.items():
            rows.append(Row("dncnn-s", f"DnCNN-S (sigma={sigma}.mat)", f"dncnn_matconvnet/sigma={sigma}.mat", 1,
                            test_set, sigma, pub[k]))
    for sigma, pub in {15: 33.89, 25: 31.23, 35: 29.58, 50: 27.92}.items():
        rows.append(Row("cdncnn", f"CDnCNN (color_sigma={sigma}.mat)", f"dncnn_matconvnet/color_sigma={sigma}.mat", 3,
                        "cbsd68", sigma, pub, reference="CDnCNN-B"))
    ffd_gray = {15: 31.63, 25: 29.19, 35: 27.73, 50: 26.29, 75: 24.79}
    ffd_color = {15: 33.87, 25: 31.21, 35: 29.58, 50: 27.96, 75: 26.24}
    for sigma, pub in ffd_gray.items():
        rows.append(Row("ffdnet-gray", "FFDNet grey", "ffdnet/FFDNet_gray.mat", 1, "bsd68", sigma, pub))
    for sigma, pub in ffd_color.items():
        rows.append(Row("ffdnet-color", "FFDNet colour", "ffdnet/FFDNet_color.mat", 3, "cbsd68", sigma, pub))
    for q, pub in {10: 29.19, 20: 31.59, 30: 32.98, 40: 33.96}.items():
        rows.append(Row("dncnn3-jpeg", "DnCNN-3 JPEG (Y)", "dncnn_matconvnet/DnCNN3.mat", 1, "live1", q, pub,
                        task="jpeg"))
    return rows


ROWS = _rows()
GROUPS = list(dict.fromkeys(r.group for r in ROWS))


def load_image(path: Path, channels: int) -> np.ndarray:
    """8-bit image file -> uint8 (H, W, channels)."""
    with Image.open(path) as im:
        x = np.asarray(ImageOps.exif_transpose(im).convert("L" if channels == 1 else "RGB"), np.uint8)
    return x[..., None] if channels == 1 else x


def jpeg_y(rgb8: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """8-bit RGB (H, W, 3) -> (Y as uint8 (H, W), the same Y after a grey JPEG at ``quality``)."""
    y8 = np.round(16.0 + (rgb8.astype(np.float64) / 255.0) @ Y_WEIGHTS).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(y8, "L").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return y8, np.asarray(im.convert("L"), np.uint8)


def psnr(out: np.ndarray, clean: np.ndarray, peak: float) -> float:
    mse = np.mean((out.astype(np.float64) - clean.astype(np.float64)) ** 2)
    return float(10.0 * np.log10(peak ** 2 / mse))


def make_denoiser(module, params):
    """A jitted ``f(noisy (H, W, C) float32, sigma / 255) -> (H, W, C)`` for a DnCNN or FFDNet module
    (one compile per image size; the level is traced, so FFDNet's sigmas share it)."""
    is_ffdnet = isinstance(module, FFDNet)

    @jax.jit
    def denoise(p, y, level):
        y = y[None]
        if is_ffdnet:
            h, w = y.shape[1:3]
            y = jnp.pad(y, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            cond = jnp.full((1, *y.shape[1:3], 1), level, y.dtype)
            return module.apply({"params": p}, y, cond)[0, :h, :w]
        return module.apply({"params": p}, y)[0]

    return lambda y, level=0.0: np.asarray(denoise(params, jnp.asarray(y, jnp.float32), jnp.float32(level)))


def score_row(row: Row, denoise, images: list[np.ndarray], progress) -> float:
    scores = []
    for clean8 in progress(images, f"{row.network} {SET_NAMES[row.test_set]} {row.level_text}"):
        if row.task == "jpeg":
            y8, jpeg8 = jpeg_y(clean8, row.level)
            out = denoise(jpeg8[..., None].astype(np.float32) / 255.0)[..., 0]
            out8 = np.round(np.clip(out, 0.0, 1.0) * 255.0)
            scores.append(psnr(out8, y8, 255.0))
        else:
            clean = clean8.astype(np.float32) / 255.0
            sigma = row.level / 255.0
            noisy = (clean + np.random.RandomState(0).randn(*clean.shape) * sigma).astype(np.float32)
            out = np.clip(denoise(noisy, sigma), 0.0, 1.0)
            scores.append(psnr(out, clean, 1.0))
    return float(np.mean(scores))


def _progress_bar():
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: one stderr line per row
        def plain(items, desc):
            print(f"{desc}: {len(items)} images", file=sys.stderr, flush=True)
            return items
        return plain
    return lambda items, desc: tqdm(items, desc=desc, unit="img", leave=False, file=sys.stderr, dynamic_ncols=True)


def table(results: list[tuple[Row, float]]) -> list[str]:
    lines = ["| network | test set | sigma / q | measured (dB) | published (dB) | delta (dB) |",
             "|---|---|---|---|---|---|"]
    for row, measured in results:
        published = f"{row.published:.2f}" + (f" ({row.reference}'s)" if row.reference else "")
        lines.append(f"| {row.network} | {SET_NAMES[row.test_set]} | {row.level_text} | {measured:.3f} | "
                     f"{published} | {measured - row.published:+.3f} |")
    return lines


def check_inputs(rows: list[Row], weights: Path, data: Path) -> None:
    """One-line SystemExit naming what to pass, before any work, for a missing folder or file."""
    if not weights.is_dir():
        raise SystemExit(f"{PROG}: no weights folder {str(weights)!r}; pass --weights DIR "
                         "(the folder holding dncnn_matconvnet/ and ffdnet/, e.g. ../shared/data/weights)")
    if not data.is_dir():
        raise SystemExit(f"{PROG}: no test data folder {str(data)!r}; pass --data DIR "
                         "(the folder holding bsd68/, set12/, cbsd68/, live1/, e.g. ../shared/data/test)")
    for row in rows:
        if not (weights / row.weights).is_file():
            raise SystemExit(f"{PROG}: no weights file {str(weights / row.weights)!r} for the {row.group} rows; "
                             f"pass --weights DIR holding {row.weights}, or leave {row.group} out of --only")
        folder = data / row.test_set
        if not folder.is_dir() or not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            raise SystemExit(f"{PROG}: no test images in {str(folder)!r} for the {row.group} rows; "
                             f"pass --data DIR holding {row.test_set}/, or leave {row.group} out of --only")


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="../shared/data/weights",
                        help="folder holding dncnn_matconvnet/ and ffdnet/ (the authors' MAT-files)")
    parser.add_argument("--data", default="../shared/data/test",
                        help="folder holding the test sets bsd68/, set12/, cbsd68/, live1/")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=GROUPS, metavar="GROUP",
                        help=f"row groups to run (default: all): {', '.join(GROUPS)}")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images of each set (0: all)")
    args = parser.parse_args(argv)
    rows = [r for r in ROWS if r.group in args.only]
    weights, data = Path(args.weights), Path(args.data)
    check_inputs(rows, weights, data)
    try:
        import h5py  # noqa: F401
    except ImportError:
        raise SystemExit(f"{PROG}: reading the MAT-files needs h5py; pip install 'ctl_jax[mat]' (or h5py)") from None

    progress = _progress_bar()
    images: dict[tuple[str, int], list[np.ndarray]] = {}
    nets: dict[str, object] = {}
    results: list[tuple[Row, float]] = []
    start = time.perf_counter()
    for row in rows:
        if row.weights not in nets:
            module, params = load_pretrained(weights / row.weights)
            if module.channels != row.channels:
                raise SystemExit(f"{PROG}: {str(weights / row.weights)!r} is a {module.channels}-channel network; "
                                 f"the {row.group} rows expect {row.channels} channels")
            nets[row.weights] = make_denoiser(module, params)
        key = (row.test_set, 3 if row.task == "jpeg" else row.channels)
        if key not in images:
            paths = sorted(p for p in (data / row.test_set).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            images[key] = [load_image(p, key[1]) for p in paths[:args.limit or None]]
        results.append((row, score_row(row, nets[row.weights], images[key], progress)))
    elapsed = time.perf_counter() - start

    counts = ", ".join(f"{SET_NAMES[s]} {len(v)}" for (s, _), v in images.items())
    print(f"Images per set: {counts}; {elapsed:.0f} s on backend {jax.default_backend()}.")
    print()
    print("\n".join(table(results)))
    print()
    own = [abs(m - r.published) for r, m in results if not r.reference]
    against_other = [m - r.published for r, m in results if r.reference]
    if against_other:
        print(f"The CDnCNN rows run the sigma-specific colour networks; their published column is the blind "
              f"CDnCNN-B's, which a network trained for one level is expected to beat by a little "
              f"({min(against_other):+.3f} to {max(against_other):+.3f} dB here); they are not in the line below.")
    worst = max(own) if own else float("nan")
    print(f"max |delta| vs published: {worst:.3f} dB")
    return worst


if __name__ == "__main__":
    main()
