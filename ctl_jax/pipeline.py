"""The whole story of one experiment: train a base, tune each method, sweep the control, write a report.

An experiment is a plain dict (see ``experiments/*.py``, whose ``get_config(preset)`` returns one)::

    network      {"name", "variant", "channels"}                  ctl_jax.nets.registry.NetworkSpec
    task         {"kind": "restoration", "degradations", "level_a", "level_b"}   ctl_jax.tasks
    data         {"train", "test": "bundled" or a folder, "test_crop": int or None, "max_test_images"}
    stage1       TrainConfig fields for the base at level A (batch_size, patch_size, steps, ...)
    stage2       TrainConfig fields for every tuner (at level B, or over the range for one-stage tuners)
    stage2_by_method  optional {method name: TrainConfig fields} replacing stage2's for that method
                 (e.g. a smaller learning rate for one tuner; methods not in the list are ignored)
    methods      tuner names, e.g. ["ftn-gc16", "adafm", "dni", "cfsnet", "dynamic-net"]
    adversarial  optional ``ctl_jax.train.gan.Adversarial`` fields ({"kind", "weight", "discriminator",
                 "lr", ...}): stage 2 becomes a GAN stage with a discriminator of its own. A task with
                 a stage-2 objective of its own (perceptual SR's ``loss_b``) trains stage 2 on it
                 unless ``stage2`` sets ``loss``.
    from_scratch bool: also train one base per sweep level (FTN paper Table 2's first row)
    sweep        {"levels": [...], "alphas": int or list, "seed": int, "border": pixels cropped per side
                 before the metrics (optional, 0; SR: the scale)}

Layout of the output folder: ``base/`` (stage-1 run), ``<method>/`` (tuned runs, each with its own
copy of the base), ``scratch_<level>/`` (from-scratch runs), ``report/`` (sweep.json, sweep.md,
plots, strips, colour check). Every run resumes from its checkpoints, so an interrupted experiment
continues where it stopped.
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

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


def stage2_settings(config: dict, method: str) -> dict:
    """The stage-2 TrainConfig fields of ``method``: ``stage2`` updated by its ``stage2_by_method`` entry
    (which may not change the batch or crops: every method draws from one sampler)."""
    own = config.get("stage2_by_method", {}).get(method, {})
    shared = sorted({"batch_size", "patch_size"} & set(own))
    if shared:
        raise ValueError(f"stage2_by_method.{method} sets {shared}; the methods share stage2's batches, set them there")
    return {**config["stage2"], **own}


def _log(message: str) -> None:
    print(f"[ctl-jax] {message}", file=sys.stderr, flush=True)


def run_experiment(config: dict, out_dir) -> dict:
    """Run (or resume) the experiment in ``config`` into ``out_dir``; returns {method: SweepResult}."""
    from ctl_jax.eval.report import write_report
    from ctl_jax.tasks import make_task
    from ctl_jax.train.gan import Adversarial
    from ctl_jax.train.loop import TrainConfig
    from ctl_jax.train.runs import load_run
    from ctl_jax.train.supervised import train_base, train_tuner
    from ctl_jax.tuners import make_tuner

    start = time.perf_counter()
    adversarial = Adversarial.from_dict(config.get("adversarial"))  # bad settings fail before any training
    out = pathlib.Path(out_dir)
    spec = NetworkSpec(**config["network"])
    task = make_task(config["task"])
    methods = [make_tuner(m) for m in config["methods"]]  # unknown names fail before any training
    if not methods:
        raise ValueError("the config lists no methods to tune")
    for name in set(config.get("stage2_by_method", {})) - {t.name for t in methods}:
        make_tuner(name)  # a typo fails here; a method dropped from the list just has no run
    data, sweep_cfg = config["data"], config["sweep"]
    stage1 = TrainConfig(**config["stage1"])
    sampler1 = train_sampler(data, spec.channels, config["stage1"])
    sampler2 = train_sampler(data, spec.channels, config["stage2"])
    alphas = control_grid(sweep_cfg["alphas"], task.dim)
    images, names = test_images(data, spec.channels)

    imported = config.get("base", {}).get("import")
    if imported:
        _import_once(imported, task, out / "base")
    elif any(t.stages == 2 for t in methods):
        _log(f"stage 1: {spec.name} ({spec.variant}) at {task.label(task.level_a)}")
        train_base(spec, task, sampler1, out / "base", stage1)
    results, tuned = {}, {}
    for tuner in methods:
        where = "over the level range" if tuner.stages == 1 else f"to {task.label(task.level_b)}"
        _log(f"{tuner.name} ({tuner.kind}): tuning {where}")
        settings = stage2_settings(config, tuner.name)
        if getattr(task, "loss_b", None) and settings.get("loss") is None:
            settings["loss"] = task.loss_b
        train_tuner(tuner, task, sampler2, out / tuner.name, TrainConfig(**settings),
                    base_workdir=out / "base", spec=spec, adversarial=adversarial)
        model = tuned[tuner.name] = load_run(out / tuner.name)
        if task.name != "style":
            results[tuner.name] = cached_sweep(out / tuner.name, model, images, sweep_cfg["levels"], alphas,
                                               seed=sweep_cfg.get("seed", 0), image_names=names,
                                               **({"border": sweep_cfg["border"]} if sweep_cfg.get("border") else {}))
    if task.name == "style":  # no degradation, no PSNR: losses across alpha instead
        from ctl_jax.style_pipeline import write_style_report

        curves = write_style_report(config, task, tuned, out, spec, sampler1, stage1, log=_log)
        _log(f"done in {time.perf_counter() - start:.0f} s; report in {out / 'report'}")
        return curves
    if config.get("from_scratch"):
        results["from scratch"] = _from_scratch(spec, task, sweep_cfg, stage1, sampler1, out, images, names,
                                                config["from_scratch"])
    for reference in config.get("references", []):
        results[reference["name"]] = _reference(reference, task, sweep_cfg, out, images, names)

    report = out / "report"
    first = methods[0].name
    write_report(results[first], report, title=config.get("title", "alpha sweep"), method_results=results)
    _write_figures(config, tuned, report, images, task, alphas)
    _log(f"done in {time.perf_counter() - start:.0f} s; report in {report}")
    return results


def cached_sweep(run_dir, model, images, levels, controls, **kwargs):
    """``sweep`` whose result is kept in ``run_dir/sweep.json`` (keyed by the run's step, levels,
    controls, images and options), so a re-run or an interrupted experiment does not sweep again."""
    import hashlib
    import json

    from ctl_jax.files import write_text_atomic
    from ctl_jax.eval.sweep import SweepResult, sweep

    key = hashlib.sha256(json.dumps([model.step, np.asarray(levels, float).tolist(),
                                     np.asarray(controls, float).tolist(), sorted(kwargs.items(), key=str),
                                     [hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images]],
                                    default=str).encode()).hexdigest()
    path = pathlib.Path(run_dir) / "sweep.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    if stored.get(key):
        return SweepResult.from_dict(stored[key])
    result = sweep(model, images, levels, controls, **kwargs)
    # Every distinct sweep is kept: one run folder serves several (a reference network at each level,
    # the crops of the experiment and the whole images of a later evaluation).
    stored[key] = result.to_dict()
    write_text_atomic(path, json.dumps(stored))
    return result


def alpha_grid(alphas) -> np.ndarray:
    """A count -> that many alphas evenly spaced in [0, 1]; a list -> those values."""
    return np.linspace(0.0, 1.0, int(alphas)) if np.isscalar(alphas) else np.asarray(alphas, np.float64)


def control_grid(alphas, dim: int) -> np.ndarray:
    """(K, D) controls: the alpha grid on every one of the D axes (their outer product)."""
    axis = alpha_grid(alphas)
    return np.stack([m.ravel() for m in np.meshgrid(*[axis] * dim, indexing="ij")], axis=1)


def _import_once(weights, task, workdir):
    """``ctl_jax.train.imported.import_run`` unless ``workdir`` already holds that import."""
    from ctl_jax.train.checkpoint import latest_meta
    from ctl_jax.train.imported import import_run

    found = latest_meta(workdir)
    if found is None:
        _log(f"importing {weights} into {workdir}")
        import_run(weights, task, workdir)
    elif found.get("imported") != str(pathlib.Path(weights).resolve()):
        raise ValueError(f"{workdir} holds another run than the import of {weights}; use another --out")


def _from_scratch(spec, task, sweep_cfg, stage1, sampler, out, images, names, how=True):
    """One base per sweep level, each evaluated at its own level: an (L, 1) SweepResult.

    ``how``: True trains them (at level A the stage-1 base is that network already: same data,
    budget and seed; it is reused); ``{"import": "path/sigma={level:g}.mat"}`` imports a pretrained
    network per level instead (the authors' dedicated DnCNN-S, say; ``level`` formats the name).
    """
    import dataclasses

    from ctl_jax.train.supervised import train_base

    rows = []
    for level in sweep_cfg["levels"]:
        other = task.level_a if float(level) == task.level_b[0] else task.level_b  # A and B must differ
        own_task = dataclasses.replace(task, level_a=(float(level),), level_b=other)
        if isinstance(how, dict):
            workdir = out / f"scratch_{level:g}"
            _import_once(how["import"].format(level=level), own_task, workdir)
        elif float(level) == task.level_a[0]:
            workdir = out / "base"
        else:
            workdir = out / f"scratch_{level:g}"
            _log(f"from scratch: {spec.name} at {task.label([level])}")
            train_base(spec, own_task, sampler, workdir, stage1)
        rows.append((workdir, [level], [0.0]))
    return per_level_result("from scratch", rows, task, sweep_cfg, images, names)


def _reference(reference: dict, task, sweep_cfg, out, images, names):
    """A reference network given each sweep level's true value, e.g. the imported FFDNet:
    ``{"name": ..., "import": path, "levels": [low, high]}`` (the control range it is imported
    for) -> an (L, 1) SweepResult like from-scratch's."""
    import dataclasses

    low, high = reference["levels"]
    own_task = dataclasses.replace(task, level_a=(float(low),), level_b=(float(high),))
    from ctl_jax.files import safe_name

    workdir = out / safe_name(reference["name"])
    _import_once(reference["import"], own_task, workdir)
    rows = [(workdir, [level], own_task.control_for([[level]]).reshape(1, -1)) for level in sweep_cfg["levels"]]
    return per_level_result(reference["name"], rows, task, sweep_cfg, images, names)


def per_level_result(name, rows, task, sweep_cfg, images, names):
    """Sweep (cached) each (run folder, [level], [control]) row at its one level and control; stacked into an
    (L, 1) SweepResult on the experiment's task."""
    import dataclasses

    from ctl_jax.eval.sweep import METRICS, SweepResult
    from ctl_jax.train.runs import load_run

    results = []
    for workdir, level, control in rows:
        model = dataclasses.replace(load_run(workdir), task=task)  # evaluated on the experiment's task
        results.append(cached_sweep(workdir, model, images, level, np.asarray(control, float).reshape(1, -1),
                                    seed=sweep_cfg.get("seed", 0), name=name, image_names=names))
    return SweepResult(level_grid=np.concatenate([r.level_grid for r in results]), control_grid=[[0.0]],
                       task=task.to_dict(), **{m: np.concatenate([r.metric(m) for r in results]) for m in METRICS},
                       name=name, image_names=tuple(names), seed=results[0].seed)


def _write_figures(config, tuned: dict, report, images, task, alphas):
    """Image strips (one test image across alphas per method), the per-pixel demo, its input and
    alpha map as image files (``noisy_input.png``, ``alpha_ramp.png``) to try ``ctl-jax apply`` on,
    and the colour check of every method at alpha 0 and 1 (``colour.md``)."""
    from ctl_jax import Control
    from ctl_jax.data import write_image
    from ctl_jax.eval.plots import image_strip, per_pixel_demo
    from ctl_jax.eval.sweep import crop_to_multiple, outputs_over_controls, quantise

    levels = config["sweep"]["levels"]
    middle = levels[len(levels) // 2]
    index = len(images) - 1  # the bundled test set ends with a colour photo
    clean = np.asarray(crop_to_multiple(images[index], int(np.lcm(2, task.input_multiple(np.asarray([middle]))))))
    noisy = np.asarray(quantise(task.eval_input(clean, middle, seed=config["sweep"].get("seed", 0), index=index)))
    shown = noisy if noisy.shape == clean.shape else None  # an SR input is smaller: shown as the file only
    diagonal = np.all(alphas == alphas[:, :1], axis=1)  # (a, a, ...): every dimension together
    strip_alphas = alphas[diagonal][:: max(1, int(diagonal.sum()) // 5)]
    for method, model in tuned.items():
        outputs = outputs_over_controls(model, noisy, strip_alphas)
        image_strip(list(outputs), strip_alphas[:, 0], report / f"strip_{method}.png", degraded=shown, clean=clean,
                    title=f"{method}: {task.label(middle)} across alpha")
    method, model = next(iter(tuned.items()))
    if model.tuner.pixel and shown is not None:  # per-pixel demo: alpha rising from 0 (left) to 1 (right)
        ramp = np.tile(np.linspace(0.0, 1.0, clean.shape[1], dtype=np.float32), (clean.shape[0], 1))
        ramp_d = np.repeat(ramp[None, :, :, None], model.control_dim, axis=-1)  # the ramp on every dimension
        output = np.asarray(quantise(model(noisy[None], Control.per_pixel(ramp_d))))[0]
        write_image(report / "alpha_ramp.png", ramp[..., None], overwrite=True)
        per_pixel_demo(noisy, output, ramp, report / "per_pixel_demo.png",
                       title=f"{method}, {task.label(middle)}: alpha rising left to right")
    write_image(report / "noisy_input.png", noisy, overwrite=True)
    _write_colour_check(tuned, report, images, task)


def _write_colour_check(tuned: dict, report, images, task) -> None:
    """``colour.md``: per-channel colour errors of every method at control 0 (sigma = level A) and 1
    (level B), on flat saturated patches and the colourful test photos (RGB denoising tasks)."""
    import jax

    from ctl_jax.eval.colour import colour_check, colour_table
    from ctl_jax.files import write_text_atomic

    if getattr(task, "degradations", ()) != ("noise",) or getattr(task, "fixed", ()) or images[0].shape[-1] != 3:
        return
    colourful = [im for im in images if float(np.std(im - im.mean(axis=-1, keepdims=True))) > 0.03]
    lines = ["# Colour check", ""]
    for method, model in tuned.items():
        for control, sigma in ((0.0, task.level_a[0]), (1.0, task.level_b[0])):
            fn = jax.jit(lambda x, c=control: model(x, c))
            check = colour_check(fn, sigma, images=colourful)
            lines.append(colour_table(check, f"{method}, control {control:g} (noise sigma {sigma:g})"))
    write_text_atomic(report / "colour.md", "\n".join(lines))
