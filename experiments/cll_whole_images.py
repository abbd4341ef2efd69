"""The pretrained continuous-level experiment scored on whole test images, each method at the alpha
its crop sweep chose.

``experiments/pretrained_cll.py`` sweeps 19 alphas x 14 sigmas on small centre crops (what a CPU
affords). This script takes each tuned method's best alpha per sigma from that sweep and scores it
once per sigma on whole images (Set12, BSD68), next to the same reference rows: the dedicated
DnCNN-S of each sigma, FFDNet given the true sigma, and the classical overlapped-DCT hard
thresholding denoiser at the best ratio r(sigma) of ``experiments/dct_denoiser.py`` (interpolated
between its swept sigmas). Every row sees the same noisy inputs (the task's seeded noise per image
and sigma). Run after the experiment, on its folder:

    ctl-jax run --config experiments/pretrained_cll.py --out runs/cll50
    python experiments/cll_whole_images.py --experiment runs/cll50 --data ../shared/data/test/set12
    python experiments/cll_whole_images.py --experiment runs/cll50 --data ../shared/data/test/bsd68 \\
        --levels 15 25 35 50 65 --limit 17

Writes EXPERIMENT/whole_<set>/ (table.md: best PSNR per sigma and the gap table against the
dedicated networks; best_vs_level.png). Each (row, sigma) is cached in the run folder's
sweep.json, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from ctl_jax.eval.plots import plot_best_vs_level  # noqa: E402
from ctl_jax.eval.metrics import psnr  # noqa: E402
from ctl_jax.eval.report import comparison_table, gap_table, read_sweep_json  # noqa: E402
from ctl_jax.eval.sweep import METRICS, SweepResult, quantise  # noqa: E402
from ctl_jax.files import safe_name, write_text_atomic  # noqa: E402
from ctl_jax.pipeline import per_level_result, test_images  # noqa: E402
from ctl_jax.train.runs import load_run  # noqa: E402

# the run folders run_experiment makes: one dedicated network per level, the reference by its name
REFERENCE_DIRS = {"from scratch": "scratch_{level:g}", "FFDNet (true sigma)": safe_name("FFDNet (true sigma)")}


def tuned_methods(experiment: pathlib.Path) -> dict[str, SweepResult]:
    """Each tuned method's crop sweep (name -> SweepResult with a control grid), from the experiment's report."""
    results = read_sweep_json(experiment / "report" / "sweep.json")
    return {name: r for name, r in results.items() if len(r.alphas) > 1}


def at_chosen_alphas(name: str, result: SweepResult, chosen: np.ndarray) -> SweepResult:
    """An (L, 1) per-level result re-shaped to an (L, L) grid whose diagonal holds level l at its chosen
    alpha (NaN elsewhere), so the report's best value / best alpha read it as a tuned method's."""
    n = len(chosen)
    grids = {}
    for m in METRICS:
        grid = np.full((n, n), np.nan)
        grid[np.arange(n), np.arange(n)] = result.metric(m)[:, 0]
        grids[m] = grid
    return SweepResult(level_grid=result.level_grid, control_grid=np.asarray(chosen, float).reshape(-1, 1),
                       task=result.task, **grids, name=name, image_names=result.image_names, seed=result.seed)


def dct_row(task, images, levels, seed, dct_results: pathlib.Path) -> SweepResult:
    """The overlapped-DCT hard-threshold denoiser at r(sigma) interpolated from the swept best ratios."""
    from ctl_jax.classical.dct_denoiser import dct_denoise

    sweep = json.loads(dct_results.read_text())["sweep"]
    swept = sorted((float(k.split("/")[1]), v["best_r"]) for k, v in sweep.items() if k.startswith("hard/"))
    sigmas, ratios = np.array(swept).T
    values = np.zeros((len(levels), len(images)))
    for i, image in enumerate(images):
        for j, level in enumerate(levels):
            noisy = np.asarray(task.eval_input(image, [level], seed=seed, index=i))
            out = dct_denoise(noisy, level, ratio=float(np.interp(level, sigmas, ratios)), kind="hard")  # sigma 0-255
            values[j, i] = float(psnr(quantise(out), image))
    mean = values.mean(axis=1, keepdims=True)
    nan = np.full_like(mean, np.nan)
    return SweepResult(level_grid=np.asarray(levels, float).reshape(-1, 1), control_grid=[[0.0]], task=task.to_dict(),
                       psnr=mean, ssim=nan, psnr_y=mean, ssim_y=nan, name="DCT (hard, r(σ))", seed=seed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="runs/cll50", help="a finished experiments/pretrained_cll.py run")
    parser.add_argument("--data", default="../shared/data/test/set12", help="folder of whole test images")
    parser.add_argument("--levels", type=float, nargs="+", default=None, help="sigmas (default: the experiment's)")
    parser.add_argument("--limit", type=int, default=None, help="the first N images only")
    parser.add_argument("--methods", nargs="+", default=None, help="tuned methods (default: all in the report)")
    parser.add_argument("--dct-results", default="runs/dct_denoiser/results.json",
                        help="experiments/dct_denoiser.py's results.json (its best ratios); skipped if absent")
    args = parser.parse_args(argv)
    experiment, data = pathlib.Path(args.experiment), pathlib.Path(args.data)
    if not (experiment / "report" / "sweep.json").is_file():
        print(f"cll_whole_images: {experiment}/report/sweep.json not found; run experiments/pretrained_cll.py first",
              file=sys.stderr)
        return 2
    if not data.is_dir():
        print(f"cll_whole_images: no test folder {data}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    crops = tuned_methods(experiment)
    if args.methods:
        unknown = sorted(set(args.methods) - set(crops))
        if unknown:
            print(f"cll_whole_images: no tuned run {unknown} in {experiment}; have {sorted(crops)}", file=sys.stderr)
            return 2
        crops = {m: crops[m] for m in args.methods}
    first = next(iter(crops.values()))
    levels = [float(lv) for lv in (args.levels or first.levels)]
    task = load_run(experiment / next(iter(crops))).task
    images, names = test_images({"test": str(data), "max_test_images": args.limit}, channels=1)
    sweep_cfg = {"seed": first.seed}

    results = {}
    for name, crop in crops.items():
        chosen = np.array([crop.best_alpha(lv) for lv in levels])
        rows = [(experiment / name, [lv], [[a]]) for lv, a in zip(levels, chosen)]
        results[name] = at_chosen_alphas(name, per_level_result(name, rows, task, sweep_cfg, images, names), chosen)
    for name, pattern in REFERENCE_DIRS.items():
        first_dir = experiment / pattern.format(level=levels[0])
        if not first_dir.exists():
            continue
        if name == "from scratch":
            rows = [(experiment / pattern.format(level=lv), [lv], [[0.0]]) for lv in levels]
        else:
            ref_task = load_run(first_dir).task
            rows = [(first_dir, [lv], ref_task.control_for([[lv]]).reshape(1, -1)) for lv in levels]
        results[name] = per_level_result(name, rows, task, sweep_cfg, images, names)
    if pathlib.Path(args.dct_results).is_file():
        results["DCT (hard, r(σ))"] = dct_row(task, images, levels, first.seed, pathlib.Path(args.dct_results))

    out = experiment / f"whole_{safe_name(data.name)}"
    out.mkdir(exist_ok=True)
    size = f"{len(images)} whole images of {data.name}"
    text = [f"# Whole images: {size}", "",
            "Best PSNR (dB) per sigma; tuned methods at the alpha their crop sweep chose (in brackets).", "",
            comparison_table(results), "", gap_table(results), "",
            f"`python experiments/cll_whole_images.py --experiment {experiment} --data {data}"
            + (f" --levels {' '.join(f'{lv:g}' for lv in levels)}" if args.levels else "")
            + (f" --limit {args.limit}" if args.limit else "") + f"`: {time.perf_counter() - start:.0f} s"]
    write_text_atomic(out / "table.md", "\n".join(text) + "\n")
    plot_best_vs_level(results, out / "best_vs_level.png", title=f"Pretrained DnCNN-S 15 -> B, {size}")
    print("\n".join(text))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
