"""Relative total variation texture removal (Xu, Yan, Xia, Jia, "Structure Extraction from
Texture via Relative Total Variation", SIGGRAPH Asia 2012).

The structure S minimises ``sum_p (S_p - I_p)^2 + lambda (D_x(p) / (L_x(p) + eps) + D_y(p) /
(L_y(p) + eps))``, where D is the windowed total variation ``G_sigma * |dS|`` and L
the windowed inherent variation ``|G_sigma * dS|``: texture has large D but small L. Each outer
iteration linearises the objective around the current S,

    u_x = G_sigma * (1 / (|G_sigma * dS/dx| + eps)),   w_x = 1 / (|dS/dx| + eps_s),

and solves ``(1 + lambda L_{u w}) S = I`` with the matrix-free conjugate gradient of
:mod:`ctl_jax.operators.wls`. As in the authors' release, sigma halves after every outer
iteration (never below 0.5) and the weights are averaged over colour channels so all channels
share one system.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from ctl_jax.operators.spec import as_image
from ctl_jax.operators.wls import solve_weighted_laplacian

SIGMA = 3.0
SHARPNESS = 0.02  # eps_s: the smaller, the sharper the structure edges
EPS = 1e-3
OUTER_ITERATIONS = 4


def gaussian_blur(x: jnp.ndarray, sigma: float) -> jnp.ndarray:
    """Separable Gaussian blur of an (H, W, C) array, truncated at 2.5 sigma, symmetric borders."""
    radius = max(1, math.ceil(2.5 * sigma))
    taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1) / sigma) ** 2)
    taps = taps / taps.sum()
    height, width, _ = x.shape
    padded = jnp.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    rows = sum(taps[i] * padded[i:i + height] for i in range(2 * radius + 1))
    return sum(taps[i] * rows[:, i:i + width] for i in range(2 * radius + 1))


def _pair_weights(structure: jnp.ndarray, sigma: float, axis: int) -> jnp.ndarray:
    """``u * w`` for the neighbour pairs along ``axis`` (0: vertical, 1: horizontal)."""
    diff = jnp.diff(structure, axis=axis)
    # Zero difference across the last row/column (Neumann) so the blur sees a full-size field.
    full = jnp.pad(diff, [(0, 1) if a == axis else (0, 0) for a in range(3)])
    inherent = jnp.mean(jnp.abs(gaussian_blur(full, sigma)), axis=-1, keepdims=True)
    u = gaussian_blur(1.0 / (inherent + EPS), sigma)[..., 0]
    u = u[:-1, :] if axis == 0 else u[:, :-1]
    w = 1.0 / (jnp.mean(jnp.abs(diff), axis=-1) + SHARPNESS)
    return u * w


@functools.partial(jax.jit, static_argnames=("sigma", "outer_iterations"))
def rtv_smooth(image, lam, sigma: float = SIGMA,
               outer_iterations: int = OUTER_ITERATIONS) -> jnp.ndarray:
    """Remove texture from an image with RTV; jit/vmap-able in ``lam``.

    Args:
      image: float32 (H, W, C), C in {1, 3}, values in [0, 1].
      lam: smoothness weight lambda, valid range [0.002, 0.05] (log scale); larger removes
        coarser and stronger texture.
      sigma: initial scale of the windows (pixels; texture elements up to about this size are
        removed), 3 as in the authors' data generation.
      outer_iterations: reweighting iterations (4), each one CG solve to relative residual 1e-4.

    Returns:
      (H, W, C) float32 in [0, 1].
    """
    image = as_image(image)
    lam = jnp.asarray(lam, jnp.float32)
    structure = image
    for k in range(outer_iterations):
        scale = max(sigma / 2 ** k, 0.5)
        weight_x = lam * _pair_weights(structure, scale, axis=1)
        weight_y = lam * _pair_weights(structure, scale, axis=0)
        structure = solve_weighted_laplacian(image, weight_x, weight_y, x0=structure)
    return jnp.clip(structure, 0.0, 1.0).astype(jnp.float32)
