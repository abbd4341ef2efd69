"""Running a network at a control value: global, per-sample or per-pixel alpha.

Every endpoint method reduces to two parameter trees, theta0 (level A) and
``theta1 = tuner.endpoint(phi, theta0)`` (level B) (DESIGN.md principle 2). ``apply_at_alpha``
runs the network between them:

- scalar alpha: one interpolated tree, then a plain forward (``lerp`` is cheap next to a conv);
- alpha of shape (N,): ``jax.vmap`` over the samples, each with its own interpolated tree;
- an alpha map: exact per-pixel mixing of every layer (``ctl_jax.tuning.pixel``).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from ctl_jax.tuning.alpha import as_alpha, lerp
from ctl_jax.tuning.pixel import apply_with_alpha_map
from ctl_jax.tuning.trees import Params, check_params_match, check_same_structure


def interpolate(tuner, theta0: Params, phi: Params, alpha) -> Params:
    """The parameters at a scalar alpha: ``lerp(theta0, tuner.endpoint(phi, theta0), alpha)``.

    Compute this once per alpha (for FTN it runs every transition network), then call
    ``model.apply({"params": ...}, x)``: inference then costs a plain forward pass.
    """
    alpha = as_alpha(alpha)
    if alpha.ndim:
        raise ValueError(f"interpolate takes one alpha (a scalar); got shape {alpha.shape}")
    return lerp(theta0, tuner.endpoint(phi, theta0), alpha)


def apply_at_alpha(model: nn.Module, theta0: Params, theta1: Params, x: jax.Array, alpha) -> jax.Array:
    """Output of ``model`` at ``alpha`` between parameter trees theta0 (alpha=0) and theta1 (alpha=1).

    x: (N, H, W, C) in [0, 1]. alpha: scalar, (N,) per sample, or a per-pixel map of shape
    (H', W'), (N, H', W') or (N, H', W', 1) at any resolution. Values outside [0, 1] extrapolate.
    """
    alpha = as_alpha(alpha)
    check_params_match(model, theta0, x)
    check_same_structure(theta0, theta1)
    if alpha.ndim == 0:
        return model.apply({"params": lerp(theta0, theta1, alpha)}, x)
    if alpha.ndim == 1:
        if alpha.shape[0] != x.shape[0]:
            raise ValueError(f"per-sample alpha has {alpha.shape[0]} values for a batch of {x.shape[0]} images")
        one = lambda a, xi: model.apply({"params": lerp(theta0, theta1, a)}, xi[None])[0]
        return jax.vmap(one)(alpha, x)
    return apply_with_alpha_map(model, theta0, theta1, x, alpha)


def apply_tuned(model: nn.Module, tuner, theta0: Params, phi: Params, x: jax.Array, alpha) -> jax.Array:
    """``apply_at_alpha`` with theta1 = ``tuner.endpoint(phi, theta0)`` (DNI, AdaFM or FTN)."""
    return apply_at_alpha(model, theta0, tuner.endpoint(phi, theta0), x, alpha)
