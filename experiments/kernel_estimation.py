"""Degradation-kernel estimation through a frozen SR network (seed 004, Q11).

    python experiments/kernel_estimation.py --sr runs/sr_networks/rdn_x2 --blind-sr runs/sr_blind_rdn_x2 \
        --out runs/kernel_estimation

Synthetic: 96x96 crops of Set14 images blurred by known anisotropic Gaussian kernels and decimated
by 2 (``blur_decimate``); the kernel is estimated (``ctl_jax.classical.kernel_estimation``) from the LR
image and an HR stand-in: the true HR crop (oracle), each frozen SR network's output, and plain
bicubic up-sampling; free kernels and KernelGAN's deep linear generator. ``--blind-sr DIR`` trains
(or reuses) a blind SR network in DIR, RDN-small x2 with ``sr_networks.py``'s recipe on
``gaussian_blur_lr`` inputs (a random 13x13 anisotropic Gaussian per crop, then decimation), and adds it
to the ``--sr`` networks. Real: a photo crop taken as the LR image, the last network's output as HR.
OUT gets ``kernels.md`` (relative L2 kernel errors, command, wall time) and ``kernels.png`` (true and
estimated kernels).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax.numpy as jnp  # noqa: E402

from ctl_jax.classical.kernel_estimation import estimate_kernel, gaussian_kernel, kernel_error  # noqa: E402
from ctl_jax.data import read_image  # noqa: E402
from ctl_jax.degradations.bicubic import blur_decimate, imresize  # noqa: E402
from ctl_jax.eval.sweep import compiled_forward  # noqa: E402
from ctl_jax.files import write_text_atomic  # noqa: E402
from ctl_jax.train.runs import load_run  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
KERNELS = {"gauss(2.0, 1.0, 30°)": (2.0, 1.0, np.pi / 6), "gauss(1.2, 1.2)": (1.2, 1.2, 0.0),
           "gauss(2.5, 0.8, -45°)": (2.5, 0.8, -np.pi / 4)}
IMAGES = ("baboon", "zebra", "lenna", "monarch")


def train_blind_sr(workdir: pathlib.Path) -> pathlib.Path:
    """RDN-small x2 trained (or reused) in ``workdir`` on randomly blurred, decimated BSDS400 crops."""
    from experiments.sr_networks import train_sr_network, training_photos

    train_sr_network("rdn", 2, workdir, training_photos("cpu"), "cpu", downsample="gaussian_blur_lr")
    return workdir


def _super_resolver(run: str):
    model = load_run(run)
    forward = compiled_forward(model)
    return model.meta.spec.upscale, lambda lr: np.asarray(forward(model.theta0, model.phi, jnp.asarray(lr)[None],
                                                                   np.zeros((1, 1, 1, 1), np.float32))[0]).clip(0, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sr", nargs="+", default=[], help="trained x2 SR run folders (experiments/sr_networks.py)")
    parser.add_argument("--blind-sr", help="train (or reuse) a blind x2 RDN here and add it to --sr")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--images", nargs="+", default=list(IMAGES), help="Set14 image names")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = list(args.sr) + ([str(train_blind_sr(pathlib.Path(args.blind_sr)))] if args.blind_sr else [])
    if not runs:
        parser.error("give at least one SR network: --sr RUN and/or --blind-sr DIR")
    networks = {}
    for run in runs:
        scale, networks[f"SR {pathlib.Path(run).name}"] = _super_resolver(run)
        if scale != 2:
            parser.error(f"{run} is a x{scale} network; the synthetic kernels are set up for x2")
    stand_ins = [("oracle HR", "free")] + [(n, k) for n in networks for k in ("free", "deep_linear")] \
        + [("bicubic up-sampling", "free")]
    rows, shown = [], {}
    c = args.crop
    for name in args.images:
        image = read_image(SHARED / "test" / "set14" / f"{name}.png", 3)
        h, w = image.shape[:2]
        hr = image[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
        for kname, (sx, sy, angle) in KERNELS.items():
            truth = np.asarray(gaussian_kernel(13, sx, sy, angle))
            lr = np.asarray(blur_decimate(jnp.asarray(hr)[None], truth, 2)[0])
            proxies = {"oracle HR": hr, **{n: f(lr) for n, f in networks.items()},
                       "bicubic up-sampling": np.asarray(imresize(jnp.asarray(lr)[None], hr.shape[:2])[0])}
            for proxy, kind in stand_ins:
                found = estimate_kernel(lr, proxies[proxy], 2, model=kind, steps=args.steps)
                rows.append((name, kname, proxy, kind, kernel_error(found.kernel, truth)))
                if name == args.images[0]:
                    shown[(kname, "true")] = truth
                    shown[(kname, f"{proxy}, {kind}")] = found.kernel
    photo = read_image(SHARED / "style" / "content" / "chicago.jpg", 3)
    h, w = photo.shape[:2]
    lr_real = photo[h // 2 - 48:h // 2 + 48, w // 2 - 48:w // 2 + 48]
    last = list(networks)[-1]
    real = estimate_kernel(lr_real, networks[last](lr_real), 2, steps=args.steps).kernel

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["true"] + [f"{p}, {k}" for p, k in stand_ins]
    fig, axes = plt.subplots(len(KERNELS) + 1, len(columns), figsize=(2 * len(columns), 2 * (len(KERNELS) + 1)))
    for r, kname in enumerate(KERNELS):
        for col, label in enumerate(columns):
            axes[r, col].imshow(shown[(kname, label)], cmap="magma")
            axes[r, col].set_title(f"{kname}\n{label}" if col == 0 else label.replace(", ", "\n"), fontsize=7)
    axes[-1, 0].imshow(real, cmap="magma")
    axes[-1, 0].set_title(f"real photo (chicago)\n{last}, free", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    for ax in axes[-1, 1:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "kernels.png", dpi=110)
    plt.close(fig)

    table = ["| HR stand-in | kernel model | mean relative L2 error | per kernel |", "|---|---|---|---|"]
    for proxy, kind in stand_ins:
        errs = [r[4] for r in rows if r[2] == proxy and r[3] == kind]
        per = [np.mean([r[4] for r in rows if r[2] == proxy and r[3] == kind and r[1] == k]) for k in KERNELS]
        table.append(f"| {proxy} | {kind} | {np.mean(errs):.3f} | " + ", ".join(f"{v:.3f}" for v in per) + " |")
    isotropic = np.mean([kernel_error(gaussian_kernel(13, 1.5), gaussian_kernel(13, *v)) for v in KERNELS.values()])
    command = (f"python experiments/kernel_estimation.py{' --sr ' + ' '.join(args.sr) if args.sr else ''}"
               f"{' --blind-sr ' + args.blind_sr if args.blind_sr else ''} --out {args.out} --steps {args.steps} "
               f"--images {' '.join(args.images)}")
    write_text_atomic(out / "kernels.md", "\n".join([
        "# Kernel estimation through a frozen SR network", "", f"`{command}`: {time.perf_counter() - start:.0f} s", "",
        f"{len(args.images)} Set14 centre crops ({', '.join(args.images)}) of {c}x{c}, x2, kernels "
        f"{', '.join(KERNELS)} (13x13); {args.steps} Adam steps per estimate. For scale: a fixed isotropic guess "
        f"(std 1.5) has error {isotropic:.3f}.", "", *table, "",
        "Kernels: `kernels.png` (first image; bottom left: the real photo's).", ""]))
    print(out / "kernels.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
