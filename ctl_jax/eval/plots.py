"""Figures of alpha sweeps and continuous-level outputs, saved as PNG.

matplotlib is imported inside the functions (DESIGN.md principle 9) and only through its
object-oriented API on an Agg canvas: no pyplot, so no global backend is switched and nothing is
shown. Images are float arrays (H, W, C) with C = 1 or 3 (or (H, W)), values in [0, 1].
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from ctl_jax.eval.metrics import psnr
from ctl_jax.eval.sweep import SweepResult

_METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "psnr_y": "PSNR, Y channel (dB)", "ssim_y": "SSIM, Y channel"}


def _figure(width: float, height: float):
    """A matplotlib Figure on an Agg canvas (no pyplot state).

    Constrained layout keeps the suptitle, captions and colour bars from overlapping the panels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> str:
    """Save ``fig`` as a PNG at ``path`` (atomically; the folder is created if missing)."""
    from ctl_jax.files import write_atomic

    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    write_atomic(path, lambda file: fig.savefig(file, format="png", bbox_inches="tight"))
    return path


def _display(image) -> tuple[np.ndarray, dict]:
    """(H, W, C) or (H, W) float image -> (array for imshow, imshow keyword arguments)."""
    image = np.asarray(image, np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"expected an image of shape (H, W), (H, W, 1) or (H, W, 3); got {image.shape}")
    image = np.clip(image, 0.0, 1.0)
    kwargs = {"interpolation": "nearest"}
    if image.ndim == 2:
        kwargs.update(cmap="gray", vmin=0.0, vmax=1.0)
    return image, kwargs


def _psnr_text(a, b) -> str:
    value = float(psnr(np.clip(np.asarray(a, np.float32), 0, 1), np.asarray(b, np.float32)))
    return "identical" if np.isinf(value) else f"{value:.2f} dB"


def plot_psnr_vs_alpha(result: SweepResult | Mapping[str, SweepResult], path, title: str | None = None, *,
                       metric: str = "psnr") -> str:
    """Metric-vs-alpha curves, one per level (FTN paper Fig. 6 style); returns the PNG path.

    Each level's curve has its linearly expected alpha marked by a vertical dashed line in the
    curve's colour (when it lies within the swept alphas) and its best alpha by a large dot.
    ``result`` may be one SweepResult or a mapping {method name: SweepResult}: one subplot per
    method, sharing the y axis, with the same colour for the same level in every subplot.
    """
    methods = dict(result) if isinstance(result, Mapping) else {result.name or "sweep": result}
    if not methods:
        raise ValueError("plot_psnr_vs_alpha needs at least one SweepResult")
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    all_levels = sorted({float(lv) for r in methods.values() for lv in r.levels})
    palette = colormaps["tab10"]
    colour = {lv: palette(i % 10) for i, lv in enumerate(all_levels)}

    fig = _figure(4.8 * len(methods) + 1.6, 4.2)
    axes = fig.subplots(1, len(methods), sharey=True, squeeze=False)[0]
    for ax, (name, res) in zip(axes, methods.items()):
        values = res.metric(metric)
        lo, hi = float(res.alphas.min()), float(res.alphas.max())
        for row, level in enumerate(res.levels):
            c = colour[float(level)]
            ax.plot(res.alphas, values[row], "-", color=c, lw=1.8, marker=".", ms=5,
                    label=res.level_label(level))
            expected = res.expected_alpha(level)
            if lo - 1e-9 <= expected <= hi + 1e-9:
                ax.axvline(expected, color=c, ls="--", lw=1.2, alpha=0.9)
            best = res.best_alpha(level, metric)
            ax.plot([best], [res.best_value(level, metric)], "o", color=c, ms=9, mec="black", mew=1.0, zorder=3)
        ax.set_title(name)
        ax.set_xlabel("α")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(_METRIC_LABELS.get(metric, metric))

    first = next(iter(methods.values()))
    handles = [Line2D([], [], color=colour[lv], lw=1.8, label=first.level_label(lv)) for lv in all_levels]
    handles += [Line2D([], [], color="grey", ls="--", lw=1.2, label="linearly expected α"),
                Line2D([], [], color="grey", ls="", marker="o", ms=9, mec="black", label="best α")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_best_vs_level(methods: Mapping[str, SweepResult], path, title: str | None = None, *,
                       metric: str = "psnr") -> str:
    """Two panels over the levels (D = 1): each method's best ``metric`` over its control grid, and
    the control that gives it against the linearly expected one (FTN paper Fig. 6's reading of
    alpha as a level). Single-control rows (references such as "from scratch") appear only in the
    first panel, dashed. Returns the PNG path."""
    from matplotlib import colormaps

    if not methods or any(r.dim != 1 for r in methods.values()):
        raise ValueError("plot_best_vs_level needs one or more SweepResults with one control dimension")
    palette = colormaps["tab10"]
    fig = _figure(11.0, 4.2)
    value_ax, alpha_ax = fig.subplots(1, 2)
    for i, (name, res) in enumerate(methods.items()):
        levels = np.asarray(res.levels, float)
        tuned = len(res.alphas) > 1
        value_ax.plot(levels, [res.best_value(lv, metric) for lv in levels], "-" if tuned else "--",
                      color=palette(i % 10), marker="o" if tuned else "s", ms=4, lw=1.6, label=name)
        if tuned:
            alpha_ax.plot(levels, [res.best_alpha(lv, metric) for lv in levels], "-o", color=palette(i % 10),
                          ms=4, lw=1.6, label=name)
    first = next(r for r in methods.values())
    levels = np.asarray(first.levels, float)
    alpha_ax.plot(levels, [first.expected_alpha(lv) for lv in levels], ":", color="black", lw=1.2,
                  label="linear α = (level - A) / (B - A)")
    for ax, label in ((value_ax, f"best {_METRIC_LABELS.get(metric, metric)}"), (alpha_ax, "best α")):
        ax.set_xlabel("level")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def image_strip(images_by_alpha: Sequence[np.ndarray], alphas: Sequence[float], path,
                labels: Sequence[str] | None = None, *, degraded=None, clean=None, title: str | None = None,
                input_caption: str = "degraded input") -> str:
    """One test image across alphas in a row; returns the PNG path.

    Panels: the ``degraded`` input (if given, captioned ``input_caption``), the outputs at each
    alpha, the ``clean`` reference (if given). Captions: ``labels`` (one per alpha) if given, else
    "α = a", with the PSNR against ``clean`` added when it is given. images_by_alpha: K images
    (H, W, C) in [0, 1]; alphas: (K,).
    """
    alphas = [float(a) for a in alphas]
    if len(images_by_alpha) != len(alphas):
        raise ValueError(f"{len(images_by_alpha)} images for {len(alphas)} alphas")
    if labels is not None and len(labels) != len(alphas):
        raise ValueError(f"{len(labels)} labels for {len(alphas)} alphas")
    panels = []
    if degraded is not None:
        panels.append((degraded, input_caption + (f"\n{_psnr_text(degraded, clean)}" if clean is not None else "")))
    for k, (image, alpha) in enumerate(zip(images_by_alpha, alphas)):
        caption = labels[k] if labels is not None else f"α = {alpha:.2f}"
        if labels is None and clean is not None:
            caption += f"\n{_psnr_text(image, clean)}"
        panels.append((image, caption))
    if clean is not None:
        panels.append((clean, "clean reference"))

    h, w = np.shape(panels[0][0])[:2]
    panel_w = 2.4
    fig = _figure(panel_w * len(panels), panel_w * h / w + 0.7)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (image, caption) in zip(axes, panels):
        shown, kwargs = _display(image)
        ax.imshow(shown, **kwargs)
        ax.set_title(caption, fontsize=10)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def per_pixel_demo(input, output, alpha_map, path, *, title: str | None = None) -> str:
    """Input, per-pixel alpha map (with a colour bar) and output side by side; returns the PNG path.

    input, output: (H, W, C) in [0, 1]; alpha_map: (H', W') (or (H', W', 1)) at any resolution.
    """
    alpha_map = np.asarray(alpha_map, np.float32)
    if alpha_map.ndim == 3 and alpha_map.shape[-1] == 1:
        alpha_map = alpha_map[..., 0]
    if alpha_map.ndim != 2:
        raise ValueError(f"alpha_map must be (H, W) or (H, W, 1); got shape {alpha_map.shape}")
    h, w = np.shape(input)[:2]
    fig = _figure(3 * 3.0 + 0.6, 3.0 * h / w + 0.7)
    axes = fig.subplots(1, 3)
    for ax, image, caption in ((axes[0], input, "input"), (axes[2], output, "output")):
        shown, kwargs = _display(image)
        ax.imshow(shown, **kwargs)
        ax.set_title(caption)
        ax.set_axis_off()
    # The colour scale spans at least [0, 1], so maps are comparable across figures.
    im = axes[1].imshow(alpha_map, cmap="viridis", interpolation="nearest", extent=(0, w, h, 0),
                        vmin=min(0.0, float(alpha_map.min())), vmax=max(1.0, float(alpha_map.max())))  # stretched over the image's extent, whatever its resolution
    axes[1].set_title("α map")
    axes[1].set_axis_off()
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04, label="α")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_control_2d(result: SweepResult, path, title: str | None = None, metric: str = "psnr") -> str:
    """Heat maps of a 2-D sweep: one panel per degradation pair, ``metric`` over the control grid
    (axis 0 down, axis 1 across), the best control marked with a star and the linearly expected
    one with a circle; a last panel shows the best value per degradation pair over the level grid."""
    if result.dim != 2:
        raise ValueError(f"plot_control_2d needs a 2-D sweep; got D = {result.dim}")
    axes0, axes1 = (np.unique(result.control_grid[:, d]) for d in (0, 1))
    if len(axes0) * len(axes1) != len(result.control_grid):
        raise ValueError("plot_control_2d needs the controls on a full grid (an outer product)")
    index = {tuple(c): (int(np.searchsorted(axes0, c[0])), int(np.searchsorted(axes1, c[1])))
             for c in result.control_grid}
    values = result.metric(metric)
    pairs = result.level_grid
    cols = min(4, len(pairs) + 1)
    rows = int(np.ceil((len(pairs) + 1) / cols))
    fig = _figure(3.2 * cols, 3.0 * rows)
    grid = fig.subplots(rows, cols, squeeze=False)
    extent = (axes1[0], axes1[-1], axes0[-1], axes0[0])
    for k, level in enumerate(pairs):
        ax = grid.flat[k]
        image = np.full((len(axes0), len(axes1)), np.nan)
        for j, c in enumerate(result.control_grid):
            image[index[tuple(c)]] = values[k, j]
        shown = ax.imshow(image, extent=extent, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(shown, ax=ax, shrink=0.8)
        best, expected = result.best_control(level, metric), result.expected_alpha(level)
        ax.plot(best[1], best[0], "*", color="white", ms=12, mec="black")
        ax.plot(expected[1], expected[0], "o", mfc="none", mec="red", ms=10, mew=2)
        ax.set_title(result.level_label(level), fontsize=9)
        ax.set_xlabel(f"control 1 ({result._task.degradations[1]})", fontsize=8)
        ax.set_ylabel(f"control 0 ({result._task.degradations[0]})", fontsize=8)
    ax = grid.flat[len(pairs)]
    l0, l1 = np.unique(pairs[:, 0]), np.unique(pairs[:, 1])
    best = np.full((len(l0), len(l1)), np.nan)
    for k, level in enumerate(pairs):
        best[int(np.searchsorted(l0, level[0])), int(np.searchsorted(l1, level[1]))] = np.nanmax(values[k])
    shown = ax.imshow(best, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_xticks(range(len(l1)), [f"{v:g}" for v in l1])
    ax.set_yticks(range(len(l0)), [f"{v:g}" for v in l0])
    kinds = [f"{k.name} {k.parameter}" for k in result._task.kinds]
    ax.set_xlabel(kinds[1], fontsize=8)
    ax.set_ylabel(kinds[0], fontsize=8)
    ax.set_title(f"best {_METRIC_LABELS[metric]} per level pair", fontsize=9)
    fig.colorbar(shown, ax=ax, shrink=0.8)
    for ax in grid.flat[len(pairs) + 1:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
