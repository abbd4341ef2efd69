"""Image quality metrics (PSNR, SSIM, BT.601 luma) in JAX, batched and jit-able.

Images are float arrays with values in ``[0, data_range]`` (``[0, 1]`` by default), laid out
NHWC: ``(N, H, W, C)`` with ``C = 1`` (grey) or ``C = 3`` (RGB). A single ``(H, W, C)`` image is
accepted too; the metric is then a scalar instead of a ``(N,)`` vector.

The definitions follow the usual super-resolution / restoration evaluation code (BasicSR, which
reproduces MATLAB): optional border crop, optional evaluation on the BT.601 Y channel, PSNR
from the per-image MSE and SSIM with an 11x11 Gaussian window (sigma 1.5) and 'valid' filtering.
BasicSR works on ``[0, 255]`` images; every quantity here is scale-free once ``data_range``
matches the image scale, so ``[0, 1]`` inputs give the same numbers. The per-image MSE and the
SSIM map come from dm-pix (``dm_pix.mse``, ``dm_pix.ssim``); the checks, border crop, Y conversion
and ``data_range`` handling are ours.

Input checks look only at shapes and dtypes, so they also run (at trace time) under ``jax.jit``.
``border`` and ``y_channel`` decide array shapes and control flow: under ``jax.jit`` they must be
static (``static_argnames=("border", "y_channel")``) unless left at their defaults.
"""

from __future__ import annotations

import operator

import jax.numpy as jnp

# MATLAB rgb2ycbcr, Y row: Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1],
# Y in [16, 235] on the 8-bit scale.
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_float(x, name: str):
    """``jnp.asarray(x)``; raise unless floating. Half precision is computed in float32."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a float array with values in [0, data_range]; "
                         f"got dtype {x.dtype} (convert e.g. uint8 images with x / 255)")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _as_image_pair(a, b):
    """Check that a and b are two float images / batches of the same NHWC or HWC shape."""
    a, b = _as_float(a, "a"), _as_float(b, "b")
    if a.ndim not in (3, 4):
        raise ValueError(f"expected images of shape (N, H, W, C) or (H, W, C); got a.shape={a.shape}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got a.shape={a.shape}, b.shape={b.shape}")
    return a, b


def rgb_to_y(x):
    """BT.601 luma of RGB images as MATLAB ``rgb2ycbcr`` computes it, on the [0, 1] scale.

    ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` for ``R, G, B`` in [0, 1], so Y lies in
    ``[16/255, 235/255]`` (black -> 16/255, white -> 235/255).

    Args:
      x: float array of shape (..., H, W, 3), RGB in [0, 1].

    Returns:
      Array of shape (..., H, W, 1).
    """
    x = _as_float(x, "x")
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"rgb_to_y expects RGB images with 3 channels on the last axis; "
                         f"got shape {x.shape}")
    weights = jnp.asarray(_Y_WEIGHTS, x.dtype)
    y = (_Y_OFFSET + x @ weights) / 255.0
    return y[..., None]


def crop_border(x, border: int):
    """Remove ``border`` pixels from each side of the H and W axes.

    Args:
      x: array of shape (..., H, W, C).
      border: non-negative Python int; 0 returns ``x`` unchanged.

    Returns:
      Array of shape (..., H - 2 border, W - 2 border, C).
    """
    border = operator.index(border)
    if border < 0:
        raise ValueError(f"border must be >= 0; got {border}")
    if border == 0:
        return x
    if x.ndim < 3:
        raise ValueError(f"crop_border expects (..., H, W, C); got shape {x.shape}")
    h, w = x.shape[-3], x.shape[-2]
    if 2 * border >= min(h, w):
        raise ValueError(f"border={border} removes the whole image of size H={h}, W={w}")
    return x[..., border:h - border, border:w - border, :]


def _prepare(a, b, border: int, y_channel: bool):
    """Shared front end of the metrics: checks, border crop, optional Y conversion."""
    a, b = _as_image_pair(a, b)
    a, b = crop_border(a, border), crop_border(b, border)
    if y_channel and a.shape[-1] != 1:  # grey images already are their own luma
        a, b = rgb_to_y(a), rgb_to_y(b)
    return a, b


def psnr(a, b, *, border: int = 0, y_channel: bool = False, data_range: float = 1.0):
    """Peak signal-to-noise ratio in dB, per image.

    ``PSNR = 10 log10(data_range^2 / MSE)`` with ``MSE`` the mean of ``(a - b)^2`` over H, W and C
    of each image, after cropping ``border`` pixels per side and, if ``y_channel``, converting RGB
    to BT.601 luma (:func:`rgb_to_y`; grey inputs are used as they are). Identical images give
    ``+inf``.

    Args:
      a, b: float images of the same shape, (N, H, W, C) or (H, W, C), values in [0, data_range].
      border: pixels removed from each side of H and W before comparing (static under jit).
      y_channel: compare the Y channel of RGB inputs instead of all channels (static under jit).
      data_range: peak value of the image scale (1.0 for [0, 1] images).

    Returns:
      Shape (N,) for batches, a scalar for a single image.
    """
    a, b = _prepare(a, b, border, y_channel)
    import dm_pix  # imported where used: it pulls in chex (DESIGN.md principle 9)

    return 10.0 * jnp.log10(data_range ** 2 / dm_pix.mse(a, b))


def ssim(a, b, *, border: int = 0, y_channel: bool = False, data_range: float = 1.0):
    """Structural similarity (Wang et al. 2004) per image, as MATLAB ``ssim_index`` / BasicSR.

    With Gaussian-weighted local statistics (11x11 window ``w``, sigma 1.5, 'valid' filtering, no
    padding), per channel::

        mu_a = w * a,  sigma_a^2 = w * a^2 - mu_a^2,  sigma_ab = w * (a b) - mu_a mu_b
        SSIM map = (2 mu_a mu_b + C1)(2 sigma_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(sigma_a^2 + sigma_b^2 + C2))

    with ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` and ``L = data_range``. The map is averaged over
    its (H - 10) x (W - 10) positions and then over channels. This equals scikit-image's
    ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``,
    which filters with padding and then drops the 5-pixel margin of the map: the kept positions
    never see the padding. Border crop and Y conversion are applied first, as in :func:`psnr`.

    The SSIM itself is ``dm_pix.ssim`` with these settings. Besides the formula above it clips
    ``sigma^2`` to at least ``eps_float32^2`` and ``|sigma_ab|`` to at most ``sigma_a sigma_b``;
    both bounds hold in exact arithmetic, so they only move float32 rounding (about 1e-6 from
    scikit-image on 256x256 images, ``benchmarks/metrics_dmpix.py``).

    Args:
      a, b: float images of the same shape, (N, H, W, C) or (H, W, C), values in [0, data_range];
        H and W after the border crop must be at least 11.
      border: pixels removed from each side of H and W before comparing (static under jit).
      y_channel: compare the Y channel of RGB inputs instead of all channels (static under jit).
      data_range: peak value of the image scale (1.0 for [0, 1] images).

    Returns:
      Shape (N,) for batches, a scalar for a single image; 1 for identical images.
    """
    a, b = _prepare(a, b, border, y_channel)
    h, w = a.shape[-3], a.shape[-2]
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"ssim needs H, W >= {SSIM_WINDOW} after the border crop; got H={h}, W={w}")
    import dm_pix

    return dm_pix.ssim(a, b, max_val=data_range, filter_size=SSIM_WINDOW, filter_sigma=SSIM_SIGMA,
                       k1=SSIM_K1, k2=SSIM_K2)
