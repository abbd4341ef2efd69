"""Linear interpolation of parameter trees (the control value itself: ``ctl_jax.control``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ctl_jax.tuners.trees import Params


def lerp(theta0: Params, theta1: Params, alpha) -> Params:
    """Leaf-wise ``(1 - alpha) * theta0 + alpha * theta1`` (DNI; FTN paper Eq. 1 on every kernel).

    ``alpha`` is a scalar (array). This form returns theta0 exactly at alpha = 0 and theta1
    exactly at alpha = 1 (``a + alpha * (b - a)`` would round at alpha = 1).
    """
    return jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * b, theta0, theta1)
