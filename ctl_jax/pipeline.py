"""The whole story of one experiment: train a base, tune each method, sweep alpha, write a report.

An experiment is a plain dict (see ``experiments/*.py``, whose ``get_config(preset)`` returns one)::

    network      {"name", "variant", "channels"}                  ctl_jax.nets.registry.NetworkSpec
    degradation  {"kind", "level_a", "level_b"}                   ctl_jax.data.degrade.Degradation
    data         {"train", "test": "bundled" or a folder, "test_crop": int or None, "max_test_images"}
    stage1       TrainConfig fields for the base at level A (batch_size, patch_size, steps, ...)
    stage2       TrainConfig fields for every tuner at level B
    methods      tuner names, e.g. ["ftn-gc16", "adafm", "dni"]
    from_scratch bool: also train one base per sweep level (FTN paper Table 2's first row)
    sweep        {"levels": [...], "alphas": int or list, "seed": int}

Layout of the output folder: ``base/`` (stage-1 run), ``<method>/`` (stage-2 runs),
``scratch_<level>/`` (from-scratch runs), ``report/`` (sweep.json, sweep.md, plots, strips). Every
run resumes from its checkpoints, so an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import copy
import pathlib
import sys
import time
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from ctl_jax.data.degrade import Degradation
from ctl_jax.data.images import centre_crop
from ctl_jax.nets.registry import NetworkSpec


def test_images(data: dict, channels: int) -> tuple[list[np.ndarray], list[str]]:
    """The test images of an experiment (bundled or a folder) and their names, centre-cropped to
    ``test_crop``."""
    from ctl_jax.data import bundled_images, iter_folder
    from ctl_jax.data.bundled import SPLITS

    source = data.get("test", "bundled")
    if source in ("bundled", "bundled-train"):  # bundled-train: the bundled training photos, by name
        split = "train" if source == "bundled-train" else "test"
        images, names = bundled_images(split, channels), list(SPLITS[split])
    else:
        pairs = list(iter_folder(data["test"], channels))
        if not pairs:
            raise ValueError(f"no readable test images in {data['test']}")
        names, images = [pathlib.Path(p).stem for p, _ in pairs], [im for _, im in pairs]
    limit = data.get("max_test_images")
    images, names = images[:limit], names[:limit]
    crop = data.get("test_crop")
    if crop:
        images = [centre_crop(im, crop) for im in images]
    return images, names


def train_sampler(data: dict, channels: int, stage: dict):
    """A PatchSampler over the training images for one stage's batch and patch size."""
    from ctl_jax.data import PatchSampler, bundled_images, load_folder

    if data.get("train", "bundled") == "bundled":
        images = bundled_images("train", channels)
    else:
        images = load_folder(data["train"], channels, min_size=stage["patch_size"])
    return PatchSampler(images, stage["patch_size"], stage["batch_size"], seed=stage.get("seed", 0))


class TunedModel(NamedTuple):
    """A trained model read back from its run folder: network, tuner and both parameter trees."""

    model: Any
    tuner: Any
    theta0: Any
    phi: Any
    meta: dict


def load_tuned(workdir) -> TunedModel:
    """Read a stage-2 run (or a stage-1 run: DNI with phi = theta0, so alpha has no effect)."""
    from ctl_jax.train.checkpoint import load_params
    from ctl_jax.tuners import make_tuner

    spec, meta, params = load_params(workdir)
    if meta["stage"] == 1:
        return TunedModel(spec.build(), make_tuner("dni"), params, params, meta)
    return TunedModel(spec.build(), make_tuner(meta["method"]), params["theta0"], params["phi"], meta)


def _log(message: str) -> None:
    print(f"[ctl-jax] {message}", file=sys.stderr, flush=True)


def run_experiment(config: dict, out_dir) -> dict:
    """Run (or resume) the experiment in ``config`` into ``out_dir``; returns {method: SweepResult}."""
    from ctl_jax.eval.report import write_report
    from ctl_jax.eval.sweep import sweep
    from ctl_jax.train.trainer import TrainConfig, train_base, train_tuner

    start = time.perf_counter()
    out = pathlib.Path(out_dir)
    spec = NetworkSpec(**config["network"])
    degradation = Degradation(**config["degradation"])
    data, sweep_cfg = config["data"], config["sweep"]
    stage1, stage2 = TrainConfig(**config["stage1"]), TrainConfig(**config["stage2"])
    sampler1 = train_sampler(data, spec.channels, config["stage1"])
    sampler2 = train_sampler(data, spec.channels, config["stage2"])
    alphas = _alpha_grid(sweep_cfg["alphas"])
    images, names = test_images(data, spec.channels)

    _log(f"stage 1: {spec.name} ({spec.variant}) at {degradation.kind} {degradation.level_a}")
    train_base(spec, sampler1, degradation, out / "base", stage1)
    results, tuned = {}, {}
    for method in config["methods"]:
        _log(f"stage 2: {method} to {degradation.kind} {degradation.level_b}")
        train_tuner(spec, method, out / "base", sampler2, degradation, out / method, stage2)
        t = tuned[method] = load_tuned(out / method)
        results[method] = sweep(t.model, t.tuner, t.theta0, t.phi, images, degradation, sweep_cfg["levels"], alphas,
                                seed=sweep_cfg.get("seed", 0), name=method, image_names=names)
    if config.get("from_scratch"):
        results["from scratch"] = _from_scratch(spec, degradation, sweep_cfg, stage1, sampler1, out, images, names)

    report = out / "report"
    first = config["methods"][0]
    write_report(results[first], report, title=config.get("title", "alpha sweep"), method_results=results)
    _write_figures(config, tuned, report, images, degradation, alphas)
    _log(f"done in {time.perf_counter() - start:.0f} s; report in {report}")
    return results


def _alpha_grid(alphas) -> np.ndarray:
    return np.linspace(0.0, 1.0, int(alphas)) if np.isscalar(alphas) else np.asarray(alphas, np.float64)


def _from_scratch(spec, degradation, sweep_cfg, stage1, sampler, out, images, names):
    """One base per sweep level, each evaluated at its own level (alpha = 0): a (L, 1) SweepResult.

    At level A the stage-1 base is that network already (same data, budget and seed); it is reused.
    """
    from ctl_jax.eval.sweep import SweepResult, sweep
    from ctl_jax.train.checkpoint import load_params
    from ctl_jax.train.trainer import train_base
    from ctl_jax.tuners import make_tuner

    rows = []
    for level in sweep_cfg["levels"]:
        if level == degradation.level_a:
            workdir = out / "base"
        else:
            workdir = out / f"scratch_{level:g}"
            _log(f"from scratch: {spec.name} at {degradation.kind} {level}")
            train_base(spec, sampler, Degradation(degradation.kind, level, degradation.level_a), workdir, stage1)
        _, _, theta0 = load_params(workdir)
        rows.append(sweep(spec.build(), make_tuner("dni"), theta0, theta0, images, degradation, [level], [0.0],
                          seed=sweep_cfg.get("seed", 0), name="from scratch", image_names=names))
    return SweepResult(levels=np.concatenate([r.levels for r in rows]), alphas=[0.0], degradation=degradation,
                       **{m: np.concatenate([r.metric(m) for r in rows]) for m in ("psnr", "ssim", "psnr_y", "ssim_y")},
                       name="from scratch", image_names=tuple(names), seed=rows[0].seed)


def _write_figures(config, tuned: dict, report, images, degradation, alphas):
    """Image strips (one test image across alphas per method), the per-pixel demo, and its input
    and alpha map as image files (``noisy_input.png``, ``alpha_ramp.png``) to try ``ctl-jax apply`` on."""
    from ctl_jax.data import write_image
    from ctl_jax.eval.plots import image_strip, per_pixel_demo
    from ctl_jax.eval.sweep import crop_to_multiple, degrade, outputs_over_alphas
    from ctl_jax.tuners import apply_tuned

    levels = config["sweep"]["levels"]
    middle = levels[len(levels) // 2]
    index = len(images) - 1  # the bundled test set ends with a colour photo
    clean = jnp.asarray(crop_to_multiple(images[index], 2))
    noisy = jnp.clip(degrade(clean, degradation, middle, seed=config["sweep"].get("seed", 0), index=index), 0, 1)
    strip_alphas = alphas[:: max(1, len(alphas) // 5)]
    for method, t in tuned.items():
        outputs = outputs_over_alphas(t.model, t.tuner, t.theta0, t.phi, noisy, strip_alphas)
        image_strip(list(outputs), strip_alphas, report / f"strip_{method}.png", degraded=np.asarray(noisy),
                    clean=np.asarray(clean), title=f"{method}: {degradation.kind} {middle:g} across alpha")
    # per-pixel demo: alpha rising from 0 (left) to 1 (right) on the first method
    method, t = next(iter(tuned.items()))
    ramp = jnp.tile(jnp.linspace(0.0, 1.0, clean.shape[1]), (clean.shape[0], 1))
    output = apply_tuned(t.model, t.tuner, t.theta0, t.phi, noisy[None], ramp)[0]
    write_image(report / "noisy_input.png", np.asarray(noisy), overwrite=True)
    write_image(report / "alpha_ramp.png", np.asarray(ramp)[..., None], overwrite=True)
    per_pixel_demo(np.asarray(noisy), np.clip(np.asarray(output), 0, 1), np.asarray(ramp),
                   report / "per_pixel_demo.png",
                   title=f"{method}, {degradation.kind} {middle:g}: alpha rising left to right")


def merge_overrides(config: dict, overrides: dict) -> dict:
    """A deep copy of config with dotted keys set: {"stage1.steps": 10} sets config["stage1"]["steps"]."""
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise KeyError(f"override {dotted!r}: {key!r} is not a section of the config")
            node = node[key]
        if leaf not in node:
            raise KeyError(f"override {dotted!r}: unknown key {leaf!r}; known: {sorted(node)}")
        node[leaf] = value
    return config
