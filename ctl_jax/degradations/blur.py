"""Isotropic Gaussian blur; level: the kernel's standard deviation in pixels, per sample, on device.

The kernel is (2r+1) x (2r+1) with r = ceil(3 * MAX_WIDTH) fixed, so one compiled step serves every
width; it is normalised to sum 1 and applied with edge padding (CResMD's blur uses widths 0-4).
Width 0 is the identity.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ctl_jax.degradations.base import DegradationKind, register

MAX_WIDTH = 4.0
RADIUS = math.ceil(3 * MAX_WIDTH)


def gaussian_kernels(widths: jax.Array) -> jax.Array:
    """(N,) widths -> (N, 2r+1) normalised 1-D Gaussian kernels; width 0 gives a unit impulse."""
    t = jnp.arange(-RADIUS, RADIUS + 1, dtype=jnp.float32)
    w = jnp.maximum(jnp.asarray(widths, jnp.float32), 1e-3)[:, None]
    k = jnp.exp(-0.5 * (t / w) ** 2)
    return k / jnp.sum(k, axis=1, keepdims=True)


def gaussian_blur(key: jax.Array, clean: jax.Array, widths) -> jax.Array:
    """Blur each image of (N, H, W, C) with its own width, separably (rows, then columns)."""
    del key
    n = clean.shape[0]
    kernels = gaussian_kernels(jnp.broadcast_to(jnp.asarray(widths, jnp.float32).reshape(-1), (n,)))

    def one(image, k):  # image (H, W, C), k (2r+1,)
        padded = jnp.pad(image, ((RADIUS, RADIUS), (RADIUS, RADIUS), (0, 0)), mode="edge")
        taps = jnp.arange(2 * RADIUS + 1)
        rows = sum(k[i] * padded[i:i + image.shape[0]] for i in taps.tolist())
        return sum(k[i] * rows[:, i:i + image.shape[1]] for i in taps.tolist())

    return jax.vmap(one)(clean, kernels)


BLUR = register(DegradationKind("blur", "width", "w=", 0.0, MAX_WIDTH, gaussian_blur))
