"""The control value alpha and linear interpolation of parameter trees.

Alpha is always a float32 array (DESIGN.md principle 6), so sweeping it never recompiles:
- rank 0: one alpha for the whole batch;
- rank 1, shape (N,): one alpha per sample;
- rank 2-4, shape (H, W), (N, H, W) or (N, H, W, 1): a per-pixel alpha map (any resolution; it
  is resized to each layer's output, see ``ctl_jax.tuning.pixel``).
Values outside [0, 1] extrapolate; they must be finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.tuning.trees import Params


def as_alpha(alpha) -> jax.Array:
    """Convert alpha to a float32 array; raise ValueError if a concrete value is NaN or inf.

    Python ints and numpy scalars would otherwise retrace a jitted caller; converting at the
    boundary keeps one compiled function for every alpha value. Traced values (inside jit) cannot
    be inspected and pass through unchecked.
    """
    alpha = jnp.asarray(alpha, jnp.float32)
    if not isinstance(alpha, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(alpha))):
        raise ValueError(f"alpha must be finite; got {np.asarray(alpha) if alpha.size < 8 else 'an array'} "
                         "with NaN or inf values")
    return alpha


def lerp(theta0: Params, theta1: Params, alpha) -> Params:
    """Leaf-wise ``(1 - alpha) * theta0 + alpha * theta1`` (DNI; FTN paper Eq. 1 on every kernel).

    ``alpha`` is a scalar (array). This form returns theta0 exactly at alpha = 0 and theta1
    exactly at alpha = 1 (``a + alpha * (b - a)`` would round at alpha = 1).
    """
    return jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * b, theta0, theta1)
