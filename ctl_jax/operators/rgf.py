"""Rolling guidance filter (Zhang, Shen, Xu, Jia, "Rolling Guidance Filter", ECCV 2014).

Small structures are removed by a Gaussian blur of scale sigma_s; large edges are then recovered
iteratively by joint bilateral filtering of the input guided by the previous result:

    J^{t+1}_p = sum_q exp(-|p - q|^2 / (2 sigma_s^2) - (J^t_p - J^t_q)^2 / (2 sigma_r^2)) I_q / K_p

with ``J^0`` constant, so the first iteration is the Gaussian blur. The bilateral is evaluated
exactly on a disc of radius ``TRUNCATE * sigma_s``; the window offsets are visited nearest first
in a while loop whose trip count depends on sigma_s, so sigma_s can be traced. Pixels outside
the image take no part (the normalisation K_p only sums in-image weights). Channels are filtered
independently, each guided by itself, as in the authors' MATLAB release used for the training
data (the paper's C++ version uses colour distances instead).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.operators.spec import as_image

SIGMA_R = 0.05  # the authors' data generation (the filter's own default is 0.1)
ITERATIONS = 4
SIGMA_S_MAX = 10.0
TRUNCATE = 2.0


def _offsets_by_distance(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """All (dy, dx) with ``dy^2 + dx^2 <= radius^2``, sorted by distance; and those distances."""
    grid = np.arange(-radius, radius + 1)
    dy, dx = (a.ravel() for a in np.meshgrid(grid, grid, indexing="ij"))
    distance = np.hypot(dy, dx)
    order = np.argsort(distance, kind="stable")
    inside = distance[order] <= radius
    return np.stack([dy, dx], axis=1)[order][inside], distance[order][inside]


def joint_bilateral(image, guide, sigma_s, sigma_r: float, max_sigma_s: float = SIGMA_S_MAX):
    """Joint bilateral filter of ``image`` (H, W, C) guided channel-wise by ``guide`` (H, W, C).

    The spatial support is the disc of radius ``TRUNCATE * sigma_s`` (at most
    ``TRUNCATE * max_sigma_s``, the static padding).
    """
    height, width, channels = image.shape
    radius = math.ceil(TRUNCATE * max_sigma_s)
    offsets, distances = _offsets_by_distance(radius)
    offsets = jnp.asarray(offsets + radius, jnp.int32)
    count = jnp.searchsorted(jnp.asarray(distances, jnp.float32), TRUNCATE * sigma_s, side="right")
    pad = ((radius, radius), (radius, radius), (0, 0))
    image_p, guide_p = jnp.pad(image, pad), jnp.pad(guide, pad)
    valid_p = jnp.pad(jnp.ones((height, width, 1), image.dtype), pad)

    def body(state):
        i, numerator, denominator = state
        start = (offsets[i, 0], offsets[i, 1], 0)
        shifted = jax.lax.dynamic_slice(image_p, start, (height, width, channels))
        shifted_guide = jax.lax.dynamic_slice(guide_p, start, (height, width, channels))
        valid = jax.lax.dynamic_slice(valid_p, start, (height, width, 1))
        dy, dx = (offsets[i] - radius).astype(image.dtype)
        weight = valid * jnp.exp(-(dy ** 2 + dx ** 2) / (2 * sigma_s ** 2)
                                 - (shifted_guide - guide) ** 2 / (2 * sigma_r ** 2))
        return i + 1, numerator + weight * shifted, denominator + weight

    zeros = jnp.zeros_like(image)
    _, numerator, denominator = jax.lax.while_loop(lambda s: s[0] < count, body, (0, zeros, zeros))
    return numerator / denominator


@functools.partial(jax.jit, static_argnames=("sigma_r", "iterations"))
def rolling_guidance(image, sigma_s, sigma_r: float = SIGMA_R,
                     iterations: int = ITERATIONS) -> jnp.ndarray:
    """Rolling-guidance-filter an image; jit/vmap-able in ``sigma_s``.

    Args:
      image: float32 (H, W, C), C in {1, 3}, values in [0, 1].
      sigma_s: spatial scale in pixels, valid range [1, 10] (linear scale): structures smaller
        than about sigma_s are removed, larger edges kept. Values above 10 are truncated to
        the disc of radius 20.
      sigma_r: range scale of the bilateral weights (0.05, the authors' data generation).
      iterations: filtering passes, the first being the Gaussian blur (4).

    Returns:
      (H, W, C) float32 in [0, 1].
    """
    image = as_image(image)
    sigma_s = jnp.asarray(sigma_s, jnp.float32)
    guide = jnp.zeros_like(image)
    for _ in range(iterations):
        guide = joint_bilateral(image, guide, sigma_s, sigma_r)
    return jnp.clip(guide, 0.0, 1.0).astype(jnp.float32)
