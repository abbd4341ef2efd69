"""Additive white Gaussian noise; level: sigma on the 0-255 scale, per sample, on device."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ctl_jax.degradations.base import DegradationKind, register


def add_gaussian_noise(key: jax.Array, clean: jax.Array, sigma) -> jax.Array:
    """``clean + sigma / 255 * N(0, 1)``, not clipped. sigma: scalar or (N,) per sample, 0-255 scale."""
    sigma = jnp.asarray(sigma, jnp.float32)
    if sigma.ndim == 1:
        sigma = sigma[:, None, None, None]
    return clean + (sigma / 255.0) * jax.random.normal(key, clean.shape, clean.dtype)


NOISE = register(DegradationKind("noise", "sigma", "σ=", 0.0, 255.0, add_gaussian_noise))
