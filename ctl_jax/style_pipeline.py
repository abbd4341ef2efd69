"""The report of a style experiment (``run_experiment`` with a ``{"kind": "style"}`` task).

After stage 1 (style A) and each method's stage 2 (style B), this writes into ``out/report``:

- ``style.md``: the losses across alpha per method (``ctl_jax.eval.style``), the summary (style B
  reached at alpha 1 against a network trained on B from scratch with the stage-1 budget, the
  smoothness of the motion along alpha), the parameters and FLOPs per method (on a
  ``report.cost_size`` square input, default 256);
- ``style_curves.png`` (FTN paper Fig. 3's reading as curves), ``curves.json``;
- ``strip_<method>_<image>.png``: each content image across alpha 0 .. 1;
- ``map_<method>_<image>.png``: the pixel-adaptive style map, style A on the left blending to
  style B on the right (FTN paper Fig. 9b), for every method with per-pixel control.

Content images come from ``data.test`` (a folder, or "bundled"), resized so that their longer
side is ``data.test_size`` (default 256): a feed-forward network runs whole images, so a large
photo costs memory, not a tiling seam.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from ctl_jax.eval.style import style_curves, style_outputs, summary_table, write_curve_files
from ctl_jax.files import write_text_atomic

STRIP_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def resize_longer_side(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> the longer side ``size`` (never enlarged), antialiased."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = size / max(h, w)
    if scale >= 1:
        return image
    pil = Image.fromarray(np.round(image * 255).astype(np.uint8))
    pil = pil.resize((max(4, round(w * scale)), max(4, round(h * scale))), Image.Resampling.LANCZOS)
    return np.asarray(pil, np.float32) / 255.0


def content_images(data: dict) -> tuple[list[np.ndarray], list[str]]:
    from ctl_jax.pipeline import test_images

    images, names = test_images({**data, "test_crop": None}, channels=3)
    size = int(data.get("test_size", 256))
    return [resize_longer_side(im, size) for im in images], names


def scratch_on_b(task, spec, sampler, out: pathlib.Path, stage1) -> object:
    """A network trained on style B alone with the stage-1 budget (the adaptation reference)."""
    from ctl_jax.train.runs import load_run
    from ctl_jax.train.supervised import train_base

    swapped = dataclasses.replace(task, style_a=task.style_b, style_b=task.style_a,
                                  style_weight_a=task.style_weight_b, style_weight_b=task.style_weight_a)
    train_base(spec, swapped, sampler, out / "scratch_b", stage1)
    return load_run(out / "scratch_b")


def cost_rows(spec, tuners, size: int = 256) -> str:
    from ctl_jax.eval.cost import format_cost_table, method_costs

    make = lambda adafm_kernel=None: dataclasses.replace(spec, adafm_kernel=adafm_kernel).build()
    return format_cost_table(method_costs(make, (1, size, size, spec.channels), ["baseline", *tuners]))


def write_style_report(config: dict, task, tuned: dict, out, spec, sampler1, stage1, log=print) -> dict:
    """Curves, tables and images of a finished style experiment; returns {method: StyleCurves}."""
    from ctl_jax import Control
    from ctl_jax.data import write_image
    from ctl_jax.eval.plots import image_strip
    from ctl_jax.pipeline import alpha_grid

    start = time.perf_counter()
    out = pathlib.Path(out)
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    images, names = content_images(config["data"])
    alphas = [float(a) for a in alpha_grid(config["sweep"].get("alphas", 11))]
    curves = {}
    for name, model in tuned.items():
        log(f"style curves: {name}")
        curves[name] = style_curves(model, task, images, alphas, name=name)
    scratch_b = None
    if config.get("from_scratch"):
        log("from scratch: the network trained on style B alone")
        scratch = scratch_on_b(task, spec, sampler1, out, stage1)
        scratch_b = float(style_curves(scratch, task, images, [0.0], name="scratch").style_b[0])

    for name, model in tuned.items():
        for image, image_name in zip(images, names):
            outs = style_outputs(model, image, STRIP_ALPHAS)
            image_strip(list(outs), STRIP_ALPHAS, report / f"strip_{name}_{image_name}.png",
                        degraded=np.clip(image[:outs.shape[1], :outs.shape[2]], 0, 1), input_caption="content",
                        title=f"{name}: style A (α=0) -> style B (α=1)")
            if model.tuner is not None and model.tuner.pixel:
                h, w = outs.shape[1:3]
                ramp = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))
                content = image[:h, :w][None]
                mixed = np.clip(np.asarray(model(content, Control.per_pixel(ramp[None, :, :, None]))), 0, 1)[0]
                write_image(report / f"map_{name}_{image_name}.png", mixed, overwrite=True)

    cost_size = int(config.get("report", {}).get("cost_size", 256))
    curve_lines = write_curve_files(curves, report, title=config.get("title"))
    text = [f"# {config.get('title', 'style transfer')}", "",
            f"Style A: `{task.style_a}` (weight {task.style_weight_a:g}); style B: `{task.style_b}` "
            f"(weight {task.style_weight_b:g}); loss network `{task.loss_net}`; content images: "
            f"{', '.join(names)} (longer side {config['data'].get('test_size', 256)}).", "",
            "## Summary", "", summary_table(curves, scratch_b), "",
            "Style losses are unweighted (×1e4); step CV = std / mean of the output change between consecutive "
            "alphas (0 = even motion).", "", *curve_lines,
            f"## Cost ({cost_size}×{cost_size} input)", "", cost_rows(spec, [m.tuner for m in tuned.values()], cost_size),
            "",
            f"Report written in {time.perf_counter() - start:.0f} s."]
    write_text_atomic(report / "style.md", "\n".join(text) + "\n")
    return curves
