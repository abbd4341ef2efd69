"""Cost accounting: parameters per method and FLOPs from XLA's cost analysis (FTN paper Tables 3/4).

For an endpoint method the cost has two parts: the forward pass at a fixed alpha, and the
one-off work of deriving the parameters at that alpha (``interpolate``: for FTN, running every
filter transition network; for DNI and AdaFM, a lerp). The paper's "+FTN" GFLOPs counts both;
we report them separately and together. A feature-space method (CFSNet, Dynamic-Net) has no
per-alpha part: alpha enters the forward pass, whose cost includes the tuning branch or blocks.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from ctl_jax.control import Control
from ctl_jax.tuners import interpolate, make_tuner
from ctl_jax.tuners.trees import count_params


def xla_flops(fn: Callable, *args) -> float:
    """FLOPs of ``jax.jit(fn)(*args)`` according to XLA's cost analysis of the compiled program.

    XLA counts a multiply-add as 2 FLOPs; papers that quote "FLOPs" from MAC counters report half.
    """
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax versions return one dict per device
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0))


@dataclasses.dataclass
class MethodCost:
    """One row of the cost table. FLOPs are XLA FLOPs (2 per multiply-add)."""

    method: str
    params: int
    forward_flops: float
    transform_flops: float  # once per alpha change (interpolating / transforming the kernels)

    @property
    def total_flops(self) -> float:
        return self.forward_flops + self.transform_flops


def method_costs(make_model: Callable[..., object], image_shape: tuple,
                 methods=("baseline", "adafm", "ftn", "ftn-gc16"), adafm_kernel: int = 5) -> list[MethodCost]:
    """Parameter counts and FLOPs of a base network and its tuned versions.

    make_model: ``make_model(adafm_kernel=None | k)`` returns the base network (with AdaFM slots
      when k is given), e.g. ``functools.partial(adafm_net, "paper")``.
    image_shape: (N, H, W, C) of the input. methods: "baseline", names of ``ctl_jax.tuners.TUNERS``
      or tuners (parameter-space or feature-space).
    All shapes are abstract (``jax.eval_shape``); nothing the size of the network is allocated
    except for compiling.
    """
    x = jax.ShapeDtypeStruct(image_shape, jnp.float32)
    alpha = jax.ShapeDtypeStruct((), jnp.float32)
    rows = []
    for spec in methods:
        method = spec if isinstance(spec, str) else spec.name
        model = make_model(adafm_kernel=adafm_kernel if method == "adafm" else None)
        theta0 = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
        forward = xla_flops(lambda p, x: model.apply({"params": p}, x), theta0, x)
        if method == "baseline":
            rows.append(MethodCost(method, count_params(theta0), forward, 0.0))
            continue
        tuner = make_tuner(spec)
        if tuner.kind == "feature":  # the tuned forward pass at one alpha; no per-alpha work
            phi = jax.eval_shape(lambda t: tuner.init(jax.random.key(0), t, model, x), theta0)
            tuned = xla_flops(lambda t, p, x, a: tuner.apply(model, t, p, x, Control.scalar(a)), theta0, phi, x, alpha)
            rows.append(MethodCost(method, count_params(theta0) + count_params(phi), tuned, 0.0))
            continue
        phi = jax.eval_shape(lambda t: tuner.init(None, t), theta0)
        transform = xla_flops(lambda t, p, a: interpolate(tuner, t, p, a), theta0, phi, alpha)
        # AdaFM's slots are in theta0 (zero); its phi only holds their trained values
        params = count_params(theta0) + (0 if method == "adafm" else count_params(phi))
        rows.append(MethodCost(method, params, forward, transform))
    return rows


def format_cost_table(rows: list[MethodCost]) -> str:
    """A Markdown table: params (M), forward / per-alpha / total GFLOPs and overhead vs the first row."""
    base = rows[0].total_flops
    lines = ["| method | params (M) | forward GFLOPs | per-alpha GFLOPs | total GFLOPs | vs baseline |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.method} | {r.params / 1e6:.3f} | {r.forward_flops / 1e9:.2f} | "
                     f"{r.transform_flops / 1e9:.4f} | {r.total_flops / 1e9:.2f} | "
                     f"{100 * (r.total_flops - base) / base:+.2f}% |")
    return "\n".join(lines)
