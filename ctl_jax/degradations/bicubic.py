"""Bicubic down-sampling by an integer scale (MATLAB ``imresize`` style, antialiased), on device.

Two kinds: ``bicubic_lr`` gives the low-resolution image (H/s, W/s), the input of SR networks
with a larger output; ``bicubic`` goes down and back up to (H, W), the pre-upsampled input AdaFM
uses. H and W must be divisible by the scale (crop first, as the reference "modcrop" does).
"""

from __future__ import annotations

import jax
import numpy as np

from ctl_jax.degradations.base import DegradationKind, register


def bicubic_downsample(x: jax.Array, scale: int) -> jax.Array:
    """(N, H, W, C) -> (N, H/s, W/s, C) with antialiased bicubic resizing."""
    n, h, w, c = x.shape
    if h % scale or w % scale:
        raise ValueError(f"bicubic x{scale}: height and width must be divisible by {scale}; got {h}x{w}")
    return jax.image.resize(x, (n, h // scale, w // scale, c), method="bicubic", antialias=True)


def bicubic_pre_upsampled(x: jax.Array, scale: int) -> jax.Array:
    """Down-sample by ``scale`` then up-sample back to (N, H, W, C)."""
    return jax.image.resize(bicubic_downsample(x, scale), x.shape, method="bicubic")


def _static_scale(levels) -> int:
    """The batch's one scale (resizing fixes shapes, so it must be a concrete value)."""
    if isinstance(levels, jax.core.Tracer):
        raise ValueError("bicubic scales must be concrete (static) values, not traced ones")
    return int(np.ravel(np.asarray(levels))[0])


BICUBIC = register(DegradationKind(
    "bicubic", "scale", "×", 1, 16, lambda key, x, levels: bicubic_pre_upsampled(x, _static_scale(levels)),
    integer=True, same_level=True))
BICUBIC_LR = register(DegradationKind(
    "bicubic_lr", "scale", "×", 1, 16, lambda key, x, levels: bicubic_downsample(x, _static_scale(levels)),
    integer=True, same_level=True, scale=lambda level: 1.0 / float(level)))
