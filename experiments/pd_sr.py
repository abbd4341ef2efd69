"""Perception-distortion controllable x4 super-resolution (FTN paper Sec. 4.3, Fig. 4, 5, 9a, Table 3).

    python experiments/pd_sr.py --out runs/pd_sr                  # CPU scale (BSDS400 -> Set14, Set5)
    python experiments/pd_sr.py --out runs/pd_sr --preset smoke   # tests: bundled pictures, a few steps
    python experiments/pd_sr.py --out runs/pd_sr --preset paper   # accelerator scale (not run here)

Stage 1 trains the base (CFSNet's main branch with a x4 pixel-shuffle tail) with L1: the faithful,
PSNR-oriented network. Stage 2 tunes it for each method (DNI as ESRGAN does it: a fine-tuned copy;
FTN with 1, 4 and 16 groups; AdaFM; CFSNet) with ESRGAN's objective, 1e-2 L1 + 1 perceptual + 5e-3
RaGAN, against a VGG-style discriminator (``ctl_jax.train.gan``). Then, on every test image at
alpha = 0, 0.1, ..., 1: PSNR / SSIM on Y with 4 pixels cropped per side, NIQE (``ctl_jax.eval.niqe``),
and the mean colour difference to the ground truth. OUT/report/ gets:

- ``pd_sr.md``: the command, wall time, the table per method (alpha 0, 0.5, 1), the smoothness of each
  curve (step CV: the spread of the PSNR steps between neighbouring alphas; 0 = even), the filter
  similarity between the two stages' kernels (FTN Table 3), the colour shift along alpha;
- ``pd_curves.png`` (PSNR against NIQE along alpha, every method: FTN Fig. 4) and
  ``pd_groups.png`` (FTN with 1 / 4 / 16 groups and AdaFM: Fig. 5);
- ``strip_<method>.png``: one test image across alpha; ``pd_map.png``: FTN with a horizontal ramp map
  (faithful on the left, realistic on the right: Fig. 9a).

The random loss network stands in for VGG-19 (nothing can be downloaded here); rerunning resumes
the trained runs.
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

from ctl_jax.control import Control  # noqa: E402
from ctl_jax.data import PatchSampler, bundled_images, iter_folder, load_folder, write_image  # noqa: E402
from ctl_jax.eval.filters import filter_similarity  # noqa: E402
from ctl_jax.eval.metrics import psnr, ssim  # noqa: E402
from ctl_jax.eval.niqe import niqe  # noqa: E402
from ctl_jax.eval.plots import image_strip  # noqa: E402
from ctl_jax.eval.sweep import crop_to_multiple, outputs_over_controls, quantise  # noqa: E402
from ctl_jax.files import write_text_atomic  # noqa: E402
from ctl_jax.nets.registry import NetworkSpec  # noqa: E402
from ctl_jax.tasks.perceptual_sr import PerceptualSR  # noqa: E402
from ctl_jax.train.gan import Adversarial  # noqa: E402
from ctl_jax.train.loop import TrainConfig  # noqa: E402
from ctl_jax.train.runs import load_run  # noqa: E402
from ctl_jax.train.supervised import train_base, train_tuner  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
METHODS = ("dni", "ftn", "ftn-gc4", "ftn-gc16", "adafm", "cfsnet")
PARAMETER_METHODS = ("dni", "ftn", "ftn-gc4", "ftn-gc16", "adafm")
ALPHAS = tuple(round(a, 1) for a in np.linspace(0, 1, 11))
PRESETS = {
    "cpu": dict(network=("cfsnet", "small"), discriminator="small", patch=64, batch=16,
                stage1=dict(steps=1500, lr=2e-4, lr_milestones=[1000]), stage2=dict(steps=400, lr=1e-4),
                train="bsds400", test=("set14", "set5"), test_side=0),
    "smoke": dict(network=("cfsnet", "tiny"), discriminator="tiny", patch=32, batch=2,
                  stage1=dict(steps=2, lr=1e-3), stage2=dict(steps=2, lr=1e-3),
                  train="bundled", test=("bundled",), test_side=256),
    "paper": dict(network=("cfsnet", "cfsnet30"), discriminator="paper", patch=128, batch=16,
                  stage1=dict(steps=500_000, lr=2e-4, lr_milestones=[200_000, 400_000]),
                  stage2=dict(steps=400_000, lr=1e-4, lr_milestones=[50_000, 100_000, 200_000, 300_000]),
                  train="bsds400", test=("set14", "set5"), test_side=0),
}


def _test_sets(preset: dict, scale: int) -> dict:
    """{set name: [(image name, (H, W, 3) image cropped to a multiple of the scale)]}."""
    if preset["train"] == "bundled":
        side = preset["test_side"]
        return {"bundled": [(f"bundled_{k}", im[:side, :side]) for k, im in enumerate(bundled_images("test", 3)[1:])]}
    return {name: [(path.stem, crop_to_multiple(image, scale)) for path, image in iter_folder(SHARED / "test" / name, 3)]
            for name in preset["test"]}


def _colour_shift(output: np.ndarray, target: np.ndarray) -> float:
    """Mean over RGB of |mean colour of the output - mean colour of the ground truth|, in 8-bit levels."""
    return float(np.mean(np.abs(output.reshape(-1, 3).mean(0) - target.reshape(-1, 3).mean(0))) * 255)


def evaluate(model, images, scale: int) -> dict:
    """{"psnr_y", "ssim_y", "niqe", "colour"}: (len(ALPHAS),) means over ``images``."""
    rows = {k: np.zeros((len(ALPHAS), len(images))) for k in ("psnr_y", "ssim_y", "niqe", "colour")}
    for i, (_, clean) in enumerate(images):
        outputs = outputs_over_controls(model, model.task.eval_input(clean, 0.0), ALPHAS)
        for k, y in enumerate(outputs):
            rows["psnr_y"][k, i] = float(psnr(y, clean, border=scale, y_channel=True))
            rows["ssim_y"][k, i] = float(ssim(y, clean, border=scale, y_channel=True))
            rows["niqe"][k, i] = niqe(y, border=scale)
            rows["colour"][k, i] = _colour_shift(y, clean)
    return {k: v.mean(axis=1) for k, v in rows.items()}


def step_cv(values: np.ndarray) -> float:
    """Coefficient of variation of |steps| between neighbouring alphas (0 = evenly spaced)."""
    steps = np.abs(np.diff(values))
    return float(np.std(steps) / max(np.mean(steps), 1e-12))


def _plots(results: dict, set_name: str, report: pathlib.Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for file, methods, title in (("pd_curves.png", METHODS, "all methods"),
                                 ("pd_groups.png", ("ftn", "ftn-gc4", "ftn-gc16", "adafm"), "FTN groups and AdaFM")):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for m in methods:
            r = results[m][set_name]
            ax.plot(r["niqe"], r["psnr_y"], "o-", ms=3, label=m)
            ax.annotate("α=0", (r["niqe"][0], r["psnr_y"][0]), fontsize=7)
            ax.annotate("α=1", (r["niqe"][-1], r["psnr_y"][-1]), fontsize=7)
        ax.set_xlabel("NIQE (lower = more natural)")
        ax.set_ylabel("PSNR on Y (dB)")
        ax.invert_xaxis()
        ax.set_title(f"x4 perception-distortion along alpha, {set_name}: {title}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(report / file, dpi=110)
        plt.close(fig)
        paths.append(str(report / file))
    return paths


def _table(results: dict, set_name: str) -> str:
    lines = [f"### {set_name}", "",
             "| method | PSNR-Y α=0 / 0.5 / 1 | SSIM-Y α=0 / 1 | NIQE α=0 / 0.5 / 1 | PSNR step CV | NIQE step CV | "
             "colour shift α=0 / 0.5 / 1 (8-bit) |", "|---|---|---|---|---|---|---|"]
    mid = ALPHAS.index(0.5)
    for m, by_set in results.items():
        r = by_set[set_name]
        lines.append(f"| {m} | {r['psnr_y'][0]:.2f} / {r['psnr_y'][mid]:.2f} / {r['psnr_y'][-1]:.2f} | "
                     f"{r['ssim_y'][0]:.3f} / {r['ssim_y'][-1]:.3f} | "
                     f"{r['niqe'][0]:.2f} / {r['niqe'][mid]:.2f} / {r['niqe'][-1]:.2f} | "
                     f"{step_cv(r['psnr_y']):.2f} | {step_cv(r['niqe']):.2f} | "
                     f"{r['colour'][0]:.2f} / {r['colour'][mid]:.2f} / {r['colour'][-1]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="experiment folder (resumed if it exists)")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    preset, out = PRESETS[args.preset], pathlib.Path(args.out)
    task = PerceptualSR(scale=4)
    spec = NetworkSpec(*preset["network"], channels=3, upscale=4)
    adversarial = Adversarial("ragan", 5e-3, preset["discriminator"], 1e-4)
    common = dict(batch_size=preset["batch"], patch_size=preset["patch"], log_every=10 if args.preset != "smoke" else 1,
                  seed=0, progress=args.preset != "smoke")
    stage1 = TrainConfig(**common, **preset["stage1"], ckpt_every=500)
    stage2 = TrainConfig(**common, **preset["stage2"], ckpt_every=200, loss=task.loss_b)
    photos = (bundled_images("train", 3) if preset["train"] == "bundled"
              else load_folder(SHARED / "train" / preset["train"], 3, min_size=preset["patch"]))

    train_base(spec, task, PatchSampler(photos, preset["patch"], preset["batch"], seed=0), out / "base", stage1)
    for m in args.methods:
        train_tuner(m, task, PatchSampler(photos, preset["patch"], preset["batch"], seed=1), out / m, stage2,
                    base_workdir=out / "base", adversarial=adversarial)
    trained = time.perf_counter() - start

    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    sets = _test_sets(preset, task.scale)
    results, similarity = {}, {}
    first_set = next(iter(sets))
    name, clean = sets[first_set][0]
    lr = task.eval_input(clean, 0.0)
    strip_alphas = (0.0, 0.25, 0.5, 0.75, 1.0)
    for m in args.methods:
        model = load_run(out / m)
        results[m] = {set_name: evaluate(model, images, task.scale) for set_name, images in sets.items()}
        if m in PARAMETER_METHODS:
            theta1 = model.tuner.endpoint(model.phi, model.theta0)
            similarity[m] = {k: float(v) for k, v in filter_similarity(model.theta0, theta1).items()}
        image_strip(list(outputs_over_controls(model, lr, strip_alphas)), strip_alphas,
                    report / f"strip_{m}.png", clean=clean, title=f"{m}: {name} x4, faithful (α=0) to realistic (α=1)")
        if m == "ftn":  # the pixel-adaptive PD map: faithful on the left, realistic on the right
            ramp = np.broadcast_to(np.linspace(0, 1, lr.shape[1], dtype=np.float32)[None, :], lr.shape[:2])
            write_image(report / "pd_map.png", np.asarray(quantise(model(lr[None], Control.per_pixel(ramp)))[0]),
                        overwrite=True)
    plots = _plots(results, first_set, report) if len(args.methods) == len(METHODS) else []
    write_text_atomic(report / "pd_sr.json", json.dumps(
        {"alphas": ALPHAS, "results": {m: {s: {k: v.tolist() for k, v in r.items()} for s, r in by.items()}
                                       for m, by in results.items()}, "filter_similarity": similarity}, indent=1))
    sim_lines = ["| method | kernel MAE (stage 1 vs 2) | filter cosine |", "|---|---|---|"] + [
        f"| {m} | {s['mae']:.4f} | {s['cosine']:.3f} |" for m, s in similarity.items()]
    write_text_atomic(report / "pd_sr.md", "\n".join([
        "# x4 perception-distortion SR", "",
        f"`python experiments/pd_sr.py --out {args.out} --preset {args.preset}`", "",
        f"Base {spec.name}/{spec.variant} x4, stage 1 {stage1.steps} steps of L1, stage 2 {stage2.steps} steps of "
        f"{task.loss_b} + {adversarial.weight:g} {adversarial.kind} (discriminator {adversarial.discriminator}); "
        f"batch {stage1.batch_size} of {stage1.patch_size}-pixel HR crops. Training {trained:.0f} s, all "
        f"{time.perf_counter() - start:.0f} s (trained runs are reused).", "",
        *(_table(results, s) for s in sets), "", "Filter similarity between theta0 and the stage-2 endpoint:", "",
        *sim_lines, "", "Plots: " + ", ".join(pathlib.Path(p).name for p in plots), ""]))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
