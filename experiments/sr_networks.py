"""SR networks at CPU scale (x2, x4 on Set5 / Set14) and the degradation mismatch (seed 004, Q10).

    python experiments/sr_networks.py --out runs/sr_networks                 # RDN, RRDB, DRN (small), x2 and x4
    python experiments/sr_networks.py --out runs/sr_networks --preset smoke  # tests: bundled pictures, 2 steps

Each network is trained with L1 on BSDS400 crops whose low-resolution input is MATLAB's bicubic
down-sampling (``ctl_jax.tasks.perceptual_sr.PerceptualSR`` at level A). Then every network is
scored (PSNR / SSIM on Y, ``scale`` pixels cropped per side, as SR papers report them) on

- bicubic inputs, the degradation it was trained for, next to plain bicubic up-sampling;
- decimated inputs (every s-th pixel, no low-pass filter): the mismatch. A network that learned to
  undo bicubic's blur sharpens the aliasing of decimated inputs instead.

OUT/report/ gets ``sr_networks.md`` (the table, command, wall time) and ``mismatch_<net>_x<s>.png``
(one image: bicubic input -> output, decimated input -> output). DRN is trained here on its primal
L1 loss only (the dual regression term is ``ctl_jax.nets.drn.dual_regression_loss``, not wired into
the trainer). Rerunning reuses trained networks.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctl_jax.data import PatchSampler, bundled_images, iter_folder, load_folder  # noqa: E402
from ctl_jax.degradations.bicubic import imresize  # noqa: E402
from ctl_jax.eval.metrics import psnr, ssim  # noqa: E402
from ctl_jax.eval.plots import image_strip  # noqa: E402
from ctl_jax.eval.sweep import crop_to_multiple, outputs_over_controls, quantise  # noqa: E402
from ctl_jax.files import write_text_atomic  # noqa: E402
from ctl_jax.nets.registry import NetworkSpec  # noqa: E402
from ctl_jax.tasks.perceptual_sr import PerceptualSR  # noqa: E402
from ctl_jax.train.loop import TrainConfig  # noqa: E402
from ctl_jax.train.runs import load_run  # noqa: E402
from ctl_jax.train.supervised import train_base  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
PRESETS = {
    "cpu": dict(variant="small", nets=("rdn", "rrdb", "drn"), scales=(2, 4), patch=64, batch=16,
                train=dict(steps=1000, lr=2e-4, lr_milestones=[700], lr_gamma=0.5), test=("set5", "set14")),
    "smoke": dict(variant="tiny", nets=("rdn", "drn"), scales=(2,), patch=16, batch=2,
                  train=dict(steps=2, lr=1e-3), test=("bundled",)),
}


def _test_sets(preset: dict, scale: int) -> dict:
    if preset["test"] == ("bundled",):
        return {"bundled": [("chelsea", crop_to_multiple(bundled_images("test", 3)[2][:64, :96], scale))]}
    return {name: [(p.stem, crop_to_multiple(im, scale)) for p, im in iter_folder(SHARED / "test" / name, 3)]
            for name in preset["test"]}


def training_photos(preset_name: str) -> list:
    """The HR training images of a preset: BSDS400, or the bundled pictures for ``smoke``."""
    if preset_name == "smoke":
        return bundled_images("train", 3)
    return load_folder(SHARED / "train" / "bsds400", 3, min_size=PRESETS[preset_name]["patch"])


def train_sr_network(net: str, scale: int, workdir, photos, preset_name: str = "cpu",
                     downsample: str = "bicubic_lr") -> None:
    """Train (or resume) ``net`` ("rdn", "rrdb", "drn") for x``scale`` in ``workdir`` with the preset's
    L1 recipe on crops of ``photos``, down-sampled by ``downsample`` (a ``PerceptualSR`` down-sampler)."""
    preset = PRESETS[preset_name]
    config = TrainConfig(**preset["train"], batch_size=preset["batch"], patch_size=preset["patch"], log_every=50,
                         ckpt_every=500, seed=0, progress=preset_name != "smoke")
    train_base(NetworkSpec(net, preset["variant"], 3, upscale=scale), PerceptualSR(scale, downsample),
               PatchSampler(photos, preset["patch"], preset["batch"], seed=0), workdir, config)


def _inputs(clean: np.ndarray, scale: int) -> dict:
    """{"bicubic": MATLAB bicubic LR, "decimated": every s-th pixel} of one (H, W, 3) image, (1, h, w, 3)."""
    bicubic = PerceptualSR(scale, "bicubic_lr").eval_input(clean, 0.0)[None]
    decimated = PerceptualSR(scale, "decimate_lr").eval_input(clean, 0.0)[None]
    return {"bicubic": bicubic, "decimated": decimated}


def _scores(y, clean, scale: int) -> tuple[float, float]:
    y = np.asarray(quantise(y))[0]
    return float(psnr(y, clean, border=scale, y_channel=True)), float(ssim(y, clean, border=scale, y_channel=True))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--scales", nargs="+", type=int, help="a subset of the preset's scales")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    preset, out = PRESETS[args.preset], pathlib.Path(args.out)
    photos = training_photos(args.preset)
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    rows, timings = [], {}
    for scale in args.scales or preset["scales"]:
        sets = _test_sets(preset, scale)
        for set_name, images in sets.items():  # plain bicubic up-sampling, the reference row
            for kind in ("bicubic", "decimated"):
                values = [_scores(imresize(_inputs(c, scale)[kind], c.shape[:2]), c, scale) for _, c in images]
                rows.append(dict(net="bicubic up-sampling", scale=scale, set=set_name, input=kind,
                                 psnr=float(np.mean([v[0] for v in values])), ssim=float(np.mean([v[1] for v in values]))))
        for net in preset["nets"]:
            t0 = time.perf_counter()
            workdir = out / f"{net}_x{scale}"
            train_sr_network(net, scale, workdir, photos, args.preset)
            timings[workdir.name] = time.perf_counter() - t0
            model = load_run(workdir)
            run = lambda x: outputs_over_controls(model, x[0], [0.0])  # (1, H, W, C), 8-bit values
            for set_name, images in sets.items():
                for kind in ("bicubic", "decimated"):
                    values = [_scores(run(_inputs(c, scale)[kind]), c, scale) for _, c in images]
                    rows.append(dict(net=f"{net} ({preset['variant']})", scale=scale, set=set_name, input=kind,
                                     psnr=float(np.mean([v[0] for v in values])),
                                     ssim=float(np.mean([v[1] for v in values]))))
            name, clean = sets[next(iter(sets))][-1]
            x = _inputs(clean, scale)
            panels = [np.asarray(quantise(imresize(x[k], clean.shape[:2])))[0] for k in ("bicubic", "decimated")]
            panels += [run(x[k])[0] for k in ("bicubic", "decimated")]
            image_strip(panels, [0, 1, 2, 3], report / f"mismatch_{net}_x{scale}.png", clean=clean,
                        labels=["bicubic input (upsampled)", "decimated input (upsampled)", f"{net} on bicubic",
                                f"{net} on decimated"], title=f"{name} x{scale}: trained on bicubic inputs")
    write_text_atomic(report / "sr_networks.json", json.dumps({"rows": rows, "train_seconds": timings}, indent=1))
    lines = ["| network | scale | set | PSNR-Y bicubic input | PSNR-Y decimated input | SSIM-Y bicubic / decimated |",
             "|---|---|---|---|---|---|"]
    keyed = {(r["net"], r["scale"], r["set"], r["input"]): r for r in rows}
    for (net, scale, set_name, kind), r in keyed.items():
        if kind == "bicubic":
            d = keyed[(net, scale, set_name, "decimated")]
            lines.append(f"| {net} | x{scale} | {set_name} | {r['psnr']:.2f} | {d['psnr']:.2f} | "
                         f"{r['ssim']:.3f} / {d['ssim']:.3f} |")
    write_text_atomic(report / "sr_networks.md", "\n".join([
        "# SR networks and the degradation mismatch", "",
        f"`python experiments/sr_networks.py --out {args.out} --preset {args.preset}"
        f"{' --scales ' + ' '.join(map(str, args.scales)) if args.scales else ''}`: {time.perf_counter() - start:.0f} s "
        f"(training {', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}; trained runs are reused)", "",
        f"{preset['train']['steps']} steps of L1, batch {preset['batch']} of {preset['patch']}-pixel HR crops, "
        f"lr {preset['train']['lr']:g}.", "",
        *lines, ""]))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
