"""What a style experiment measures (there is no PSNR): losses across alpha, adaptation, smoothness.

For a tuned style network y(x, alpha) on content images x (FTN paper Fig. 3's reading):

- ``content``: the content loss of y against x; ``style_a`` / ``style_b``: the (unweighted) style
  losses of y against style A's and style B's Gram matrices, each a mean over the images, per
  alpha. A method "reaches" B when style_b at alpha 1 approaches that of a network trained on B
  from scratch (``adaptation`` = style_b(alpha = 1) / style_b(network trained on B)).
- ``smoothness``: how evenly the output moves along the alpha grid: with
  d_k = mean |y(alpha_{k+1}) - y(alpha_k)| (8-bit units), the coefficient of variation
  std(d) / mean(d) (0 = every step moves the image by the same amount) and the largest step's
  share of the total path.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from ctl_jax.eval.sweep import compiled_forward, crop_to_multiple


@dataclasses.dataclass
class StyleCurves:
    """alphas (K,); content, style_a, style_b (K,) means over the images; steps (K - 1,) mean
    absolute output change between consecutive alphas in 8-bit units."""

    name: str
    alphas: np.ndarray
    content: np.ndarray
    style_a: np.ndarray
    style_b: np.ndarray
    steps: np.ndarray

    @property
    def step_cv(self) -> float:
        """std / mean of the step sizes (0: perfectly even motion along alpha)."""
        return float(np.std(self.steps) / np.mean(self.steps)) if np.mean(self.steps) > 0 else float("nan")

    @property
    def largest_step_share(self) -> float:
        return float(np.max(self.steps) / np.sum(self.steps)) if np.sum(self.steps) > 0 else float("nan")

    def at(self, alpha: float) -> int:
        hits = np.flatnonzero(np.isclose(self.alphas, alpha))
        if hits.size == 0:
            raise ValueError(f"alpha {alpha} was not evaluated; alphas are {self.alphas.tolist()}")
        return int(hits[0])

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in dataclasses.asdict(self).items()}


def style_outputs(model, image: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """(K, H', W', 3) outputs of one content image (H, W, 3) at each alpha, in [0, 1] (H', W' cropped
    to multiples of 4). One compiled forward pass per model and image size; alpha is traced."""
    x = jnp.asarray(crop_to_multiple(image, 4), jnp.float32)[None]
    forward = compiled_forward(model)
    return np.stack([np.clip(np.asarray(forward(model.theta0, model.phi, x, jnp.full((1, 1, 1, model.control_dim),
                                                                                    a, jnp.float32)))[0], 0.0, 1.0)
                     for a in alphas])


def style_curves(model, task, images: Sequence[np.ndarray], alphas: Sequence[float], name: str = "") -> StyleCurves:
    """:class:`StyleCurves` of ``model`` (a controllable style network) over ``alphas`` on ``images``."""
    alphas = np.asarray(alphas, np.float64)
    content, style_a, style_b, steps = [], [], [], []
    for image in images:
        outs = style_outputs(model, image, alphas)
        x = jnp.broadcast_to(jnp.asarray(crop_to_multiple(image, 4))[None], outs.shape)
        distances = task.style_distances(jnp.asarray(outs), x)
        content.append(np.asarray(distances["content"]))
        style_a.append(np.asarray(distances["style_a"]))
        style_b.append(np.asarray(distances["style_b"]))
        steps.append(np.mean(np.abs(np.diff(outs, axis=0)), axis=(1, 2, 3)) * 255.0)
    mean = lambda rows: np.mean(np.stack(rows), axis=0)
    return StyleCurves(name or getattr(model, "name", ""), alphas, mean(content), mean(style_a), mean(style_b),
                       mean(steps))


def curves_table(curves: Mapping[str, StyleCurves], scale: float = 1e4) -> str:
    """Markdown: per alpha, each method's "style A / style B / content" (style losses x ``scale``)."""
    first = next(iter(curves.values()))
    header = ["α"] + list(curves)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for k, alpha in enumerate(first.alphas):
        cells = [f"{c.style_a[k] * scale:.2f} / {c.style_b[k] * scale:.2f} / {c.content[k]:.3f}" for c in curves.values()]
        lines.append(f"| {alpha:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(curves: Mapping[str, StyleCurves], scratch_b: float | None, scale: float = 1e4) -> str:
    """Markdown: per method, style B at alpha 1, adaptation (vs a network trained on B), style A at
    alpha 0, content at 1, and the smoothness numbers."""
    lines = ["| method | style B at α=1 (×1e4) | vs trained on B | style A at α=0 (×1e4) | content at α=1 | "
             "step CV | largest step share |", "|---|---|---|---|---|---|---|"]
    for name, c in curves.items():
        b1, a0 = c.style_b[c.at(1.0)], c.style_a[c.at(0.0)]
        ratio = f"×{b1 / scratch_b:.2f}" if scratch_b else "–"
        lines.append(f"| {name} | {b1 * scale:.2f} | {ratio} | {a0 * scale:.2f} | {c.content[c.at(1.0)]:.3f} | "
                     f"{c.step_cv:.2f} | {c.largest_step_share:.2f} |")
    return "\n".join(lines)


def plot_style_curves(curves: Mapping[str, StyleCurves], path, title: str | None = None) -> str:
    """Two panels over alpha: style loss against A (solid) and B (dashed) per method; content loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    fig, (style_ax, content_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (name, c) in enumerate(curves.items()):
        style_ax.plot(c.alphas, c.style_a, "-o", color=palette(i % 10), ms=3, label=f"{name}: vs A")
        style_ax.plot(c.alphas, c.style_b, "--s", color=palette(i % 10), ms=3, label=f"{name}: vs B")
        content_ax.plot(c.alphas, c.content, "-o", color=palette(i % 10), ms=3, label=name)
    style_ax.set(xlabel="α", ylabel="style loss", yscale="log", title="style loss against A (—) and B (- -)")
    content_ax.set(xlabel="α", ylabel="content loss", title="content loss")
    style_ax.legend(fontsize=7, ncol=2)
    content_ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def write_curve_files(curves: Mapping[str, StyleCurves], folder, title: str | None = None) -> list[str]:
    """Write ``style_curves.png`` and ``curves.json`` into ``folder``; returns the markdown lines that
    show them (the per-alpha table and the plot)."""
    import json
    import pathlib

    from ctl_jax.files import write_text_atomic

    folder = pathlib.Path(folder)
    plot_style_curves(curves, folder / "style_curves.png", title=title)
    write_text_atomic(folder / "curves.json", json.dumps({k: c.to_dict() for k, c in curves.items()}, indent=1))
    return ["## Losses across α (style A / style B (×1e4) / content)", "", curves_table(curves), "",
            "![style curves](style_curves.png)", ""]
