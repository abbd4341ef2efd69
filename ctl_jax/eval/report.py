"""Sweep reports: JSON, a Markdown summary and plots in one folder.

``write_report(result, out_dir, title=...)`` documents one method's sweep. To compare methods
(FTN paper Table 2 style), pass all of them as ``method_results={name: SweepResult}``; the CLI does::

    results = {name: sweep(...) for name in ("ftn-gc16", "adafm", "dni")}
    write_report(results["ftn-gc16"], out_dir, title="AdaFM-Net, sigma 20 -> 80", method_results=results)

The primary ``result`` is written in detail (and added to the comparison if missing); the other
methods get their own JSON file, their own PSNR table in the Markdown, a column in the
comparison table and a subplot in the PSNR-vs-alpha figure.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Mapping

import numpy as np

from ctl_jax.eval.sweep import SweepResult
from ctl_jax.files import safe_name, write_text_atomic

PSNR_DIGITS = 2
SSIM_DIGITS = 4


def read_sweep_json(path) -> dict[str, SweepResult]:
    """{name: SweepResult} from a report's ``sweep.json``."""
    return {name: SweepResult.from_dict(d) for name, d in json.loads(pathlib.Path(path).read_text()).items()}


def _num(value: float, digits: int) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def _alpha(value) -> str:
    """"0.5" for one control value, "(0.5, 1)" for a D-dimensional one."""
    values = np.ravel(np.asarray(value, np.float64))
    text = ", ".join(f"{float(v):.3g}" for v in values)
    return text if values.size == 1 else f"({text})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def metric_table(result: SweepResult, metric: str = "psnr", digits: int | None = None) -> str:
    """Markdown table of one metric: rows = levels, columns = alphas; each row's best in bold."""
    digits = (SSIM_DIGITS if metric.startswith("ssim") else PSNR_DIGITS) if digits is None else digits
    values = result.metric(metric)
    rows = []
    for i, level in enumerate(result.levels):
        best = int(np.nanargmax(values[i])) if not np.all(np.isnan(values[i])) else -1
        cells = [_num(v, digits) for v in values[i]]
        if best >= 0:
            cells[best] = f"**{cells[best]}**"
        rows.append([result.level_label(level)] + cells)
    return _table(["level \\ α"] + [_alpha(a) for a in result.alphas], rows)


def best_alpha_table(result: SweepResult) -> str:
    """Markdown table per level: expected alpha, best alpha and value by PSNR, best alpha by SSIM."""
    rows = []
    for i, level in enumerate(result.levels):
        inp = _num(result.input_psnr[i], PSNR_DIGITS) if result.input_psnr is not None else "–"
        rows.append([result.level_label(level), _alpha(result.expected_alpha(level)),
                     _alpha(result.best_alpha(level)), _num(result.best_value(level), PSNR_DIGITS),
                     _alpha(result.best_alpha(level, "ssim")), _num(result.best_value(level, "ssim"), SSIM_DIGITS),
                     inp])
    return _table(["level", "expected α", "best α (PSNR)", "best PSNR", "best α (SSIM)", "best SSIM",
                   "input PSNR"], rows)


def comparison_table(methods: Mapping[str, SweepResult], metric: str = "psnr") -> str:
    """Best value over each method's alpha grid per level (FTN paper Table 2 style).

    Rows = levels (the union over methods; (D,) tuples), columns = methods; each cell is "value (α=best)",
    the row's best value in bold, "–" where a method did not sweep that level.
    """
    digits = SSIM_DIGITS if metric.startswith("ssim") else PSNR_DIGITS
    levels = sorted({tuple(float(v) for v in lv) for r in methods.values() for lv in r.level_grid})
    first = next(iter(methods.values()))
    rows = []
    for level in levels:
        cells, values = [], []
        for res in methods.values():
            if res.dim == len(level) and np.any(np.all(np.isclose(res.level_grid, level), axis=1)):
                v = res.best_value(level, metric)
                values.append(v)
                cells.append(f"{_num(v, digits)} (α={_alpha(res.best_alpha(level, metric))})")
            else:
                values.append(np.nan)
                cells.append("–")
        if not np.all(np.isnan(values)):
            top = round(float(np.nanmax(values)), digits)
            cells = [f"**{c}**" if not np.isnan(v) and round(float(v), digits) == top else c
                     for c, v in zip(cells, values)]
        rows.append([first.level_label(level)] + cells)
    return _table(["level"] + list(methods), rows)


def gap_table(methods: Mapping[str, SweepResult], reference: str = "from scratch", metric: str = "psnr") -> str:
    """Per method, at the levels it shares with ``reference`` other than the training levels A and B:
    the mean of (best value - reference's value) between A and B (interpolation) and outside them
    (extrapolation), and, for methods with a control grid, the mean |best α - linearly expected α|
    between A and B. Markdown; "" when there is no reference or no such level."""
    ref = methods.get(reference)
    if ref is None or ref.dim != 1:
        return ""
    ref_levels = set(map(float, ref.levels))

    def mean(values, fmt):
        return format(float(np.mean(values)), fmt) if values else "–"

    rows = []
    for name, res in methods.items():
        if name == reference or res.dim != 1:
            continue
        position = {float(lv): res.expected_alpha(lv) for lv in res.levels if float(lv) in ref_levels}
        inside = [lv for lv, a in position.items() if 0 < a < 1 and not np.isclose(a, 0) and not np.isclose(a, 1)]
        outside = [lv for lv, a in position.items() if a < 0 or a > 1 and not np.isclose(a, 1)]
        if not inside and not outside:
            continue
        gap = {lv: res.best_value(lv, metric) - ref.best_value(lv, metric) for lv in inside + outside}
        drift = [abs(res.best_alpha(lv, metric) - position[lv]) for lv in inside] if len(res.alphas) > 1 else []
        rows.append([name, mean([gap[lv] for lv in inside], "+.2f"), mean([gap[lv] for lv in outside], "+.2f"),
                     mean(drift, ".2f"), f"{len(inside)} / {len(outside)}"])
    if not rows:
        return ""
    return _table(["method", f"mean gap to {reference} between A and B (dB)", "mean gap outside A..B (dB)",
                   "mean \\|best α - linear α\\| between A and B", "levels between / outside"], rows)


def _describe(result: SweepResult) -> str:
    n = result.per_image["psnr"].shape[-1] if result.per_image else None
    parts = [result.describe_task(), f"{n} test images" if n is not None else None,
             f"border {result.border}", f"seed {result.seed}",
             f"strategy {result.strategy}" if result.strategy else None, "outputs scored as 8-bit images"]
    return "; ".join(p for p in parts if p) + "."


def _method_section(name: str, result: SweepResult, heading: str) -> list[str]:
    return [f"{heading} {name}", "", _describe(result), "",
            "PSNR (dB, RGB), mean over images; best per level in bold:", "", metric_table(result, "psnr"), "",
            "Best α per level against the linearly expected α = (level - A) / (B - A):", "",
            best_alpha_table(result), "",
            "SSIM (RGB):", "", metric_table(result, "ssim"), "",
            "PSNR (dB, Y channel):", "", metric_table(result, "psnr_y"), "",
            "SSIM (Y channel):", "", metric_table(result, "ssim_y"), ""]


def control_2d_table(result: SweepResult, metric: str = "psnr") -> str:
    """Per degradation pair: the linearly expected control, the best one, and the metric at each."""
    rows = []
    for k, level in enumerate(result.level_grid):
        expected = np.asarray(result.expected_alpha(level))
        nearest = int(np.argmin(np.sum((result.control_grid - expected) ** 2, axis=1)))
        best = result.best_control(level, metric)
        digits = PSNR_DIGITS if metric.startswith("psnr") else SSIM_DIGITS
        rows.append([result.level_label(level), "(" + ", ".join(_alpha(v) for v in expected) + ")",
                     "(" + ", ".join(_alpha(v) for v in best) + ")", _num(result.best_value(level, metric), digits),
                     _num(result.metric(metric)[k, nearest], digits),
                     _num(result.input_psnr[k], PSNR_DIGITS) if result.input_psnr is not None else "–"])
    return _table(["levels", "expected control", "best control", f"best {metric}", f"{metric} at the grid point "
                   "nearest the expected control", "input PSNR"], rows)


def write_report(result: SweepResult, out_dir, *, title: str,
                 method_results: Mapping[str, SweepResult] | None = None) -> dict[str, pathlib.Path]:
    """Write ``sweep.json``, ``sweep.md`` and ``psnr_vs_alpha.png`` (needs matplotlib) to ``out_dir``.

    result: the primary method's sweep. method_results: optional {name: SweepResult} of methods to
    compare; ``result`` is included under its name if no entry is that object. ``sweep.json`` holds
    ``{name: SweepResult.to_dict()}`` for every method (:func:`read_sweep_json` reads it back). With
    two or more methods the report adds a comparison table (best PSNR and SSIM per level per
    method) and one subplot per method.

    With a "from scratch" entry it adds :func:`gap_table`; with several methods of D = 1 and three or
    more levels, ``best_vs_level.png`` (:func:`ctl_jax.eval.plots.plot_best_vs_level`).

    Returns {"json", "markdown", "plot", "levels_plot": path}; "plot" only when every method has D = 1
    (the tables show D-dimensional levels and controls as tuples).
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if result.dim > 1:
        return _write_report_nd(result, out, title, method_results)
    primary = result.name or "method"
    methods = dict(method_results or {})
    if not any(r is result for r in methods.values()):
        if primary in methods:
            raise ValueError(f"method_results has another result named {primary!r}; name the primary result "
                             "differently or include it in method_results")
        methods = {primary: result, **methods}
    primary = next(name for name, r in methods.items() if r is result)

    paths = {"json": out / "sweep.json"}  # every method's result, by name
    write_text_atomic(paths["json"], json.dumps({name: r.to_dict() for name, r in methods.items()}, indent=1))

    lines = [f"# {title}", ""]
    if len(methods) > 1:
        lines += ["## Comparison", "",
                  "Best PSNR (dB, RGB) over each method's α grid per level, with the α that gives it; "
                  "the best method per level in bold:", "", comparison_table(methods, "psnr"), "",
                  "Best SSIM (RGB):", "", comparison_table(methods, "ssim"), ""]
    gaps = gap_table(methods)
    if gaps:
        lines += ["Against the from-scratch networks at the levels the methods did not train on (best α per level):", "",
                  gaps, ""]
    levels_plot = len(methods) > 1 and all(r.dim == 1 for r in methods.values()) and len(result.levels) >= 3
    if levels_plot:
        lines += ["![Best PSNR and best α against the level](best_vs_level.png)", ""]
    lines += _method_section(primary, result, "##")
    for name, res in methods.items():
        if res is not result:
            lines += [f"## {name}", "", _describe(res), "", "PSNR (dB, RGB):", "", metric_table(res, "psnr"), "",
                      best_alpha_table(res), ""]
    plot = all(r.dim == 1 for r in methods.values())  # curves against one α; D > 1 has tables only
    lines += ["![PSNR against α](psnr_vs_alpha.png)" if plot else "(No PSNR-vs-α plot for D-dimensional control.)", ""]
    paths["markdown"] = out / "sweep.md"
    write_text_atomic(paths["markdown"], "\n".join(lines))

    if plot:
        from ctl_jax.eval.plots import plot_psnr_vs_alpha

        paths["plot"] = pathlib.Path(plot_psnr_vs_alpha(methods if len(methods) > 1 else result,
                                                        os.fspath(out / "psnr_vs_alpha.png"), title))
    if levels_plot:
        from ctl_jax.eval.plots import plot_best_vs_level

        paths["levels_plot"] = pathlib.Path(plot_best_vs_level(methods, os.fspath(out / "best_vs_level.png"), title))
    return paths


def _full_grid(controls: np.ndarray) -> bool:
    """True when the (K, D) controls are every combination of their per-dimension values."""
    return int(np.prod([len(np.unique(controls[:, d])) for d in range(controls.shape[1])])) == len(controls)


def _write_report_nd(result: SweepResult, out: pathlib.Path, title: str, method_results) -> dict:
    """The report of a D-dimensional sweep: per method a best-control table and, for D = 2, heat maps."""
    from ctl_jax.eval.plots import plot_control_2d

    methods = dict(method_results or {})
    if not any(r is result for r in methods.values()):  # the primary result is always reported
        methods = {result.name or "method": result, **methods}
    paths = {"json": out / "sweep.json", "markdown": out / "sweep.md"}
    write_text_atomic(paths["json"], json.dumps({name: r.to_dict() for name, r in methods.items()}, indent=1))
    lines = [f"# {title}", ""]
    for name, res in methods.items():
        lines += [f"## {name}", "", _describe(res), "",
                  "Best control per degradation pair against the linearly expected one (level - A) / (B - A):", "",
                  control_2d_table(res, "psnr"), ""]
        if res.dim == 2 and _full_grid(res.control_grid):  # heat maps need the controls on an outer product
            paths[f"plot_{name}"] = out / f"control_2d_{safe_name(name)}.png"
            plot_control_2d(res, paths[f"plot_{name}"], f"{title}: {name}")
            lines += [f"![PSNR over the control grid]({paths[f'plot_{name}'].name})", ""]
    write_text_atomic(paths["markdown"], "\n".join(lines))
    return paths
