"""Down-sampling by an integer scale, on device: MATLAB-compatible bicubic, decimation, blur + decimation.

The SR benchmarks make their low-resolution images with MATLAB's ``imresize(hr, 1/s, 'bicubic')``:
the Keys cubic kernel (a = -0.5) stretched by s (antialiasing) and mirrored at the borders.
:func:`imresize_weights` builds that resampling as an (out, in) matrix per axis, so :func:`imresize`
is two matrix products and reproduces MATLAB on floats (MATLAB rounds uint8 images after each axis;
round at the edge if you need its uint8 output bit for bit).

Registered kinds:
- ``bicubic_lr`` gives the low-resolution image (H/s, W/s), the input of SR networks with a larger output;
- ``bicubic`` goes down and back up to (H, W), the pre-upsampled input AdaFM uses;
- ``decimate_lr`` keeps every s-th pixel (no antialiasing: what a sensor without an optical
  low-pass filter does), the mismatch case of seed 004's Q10;
- ``gaussian_blur_lr`` blurs each image by its own random anisotropic Gaussian (13x13, standard
  deviations uniform in ``BLUR_SIGMAS``, any orientation) and decimates: the training degradation of
  a blind SR network that has to undo blurs it is not told (seed 004's kernel estimation).
H and W must be divisible by the scale (crop first, as the reference "modcrop" does).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.degradations.base import DegradationKind, register


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``), support [-2, 2]."""
    ax = np.abs(np.asarray(x, np.float64))
    near = (1.5 * ax - 2.5) * ax ** 2 + 1.0
    far = ((-0.5 * ax + 2.5) * ax - 4.0) * ax + 2.0
    return np.where(ax <= 1, near, np.where(ax <= 2, far, 0.0))


@functools.lru_cache(maxsize=64)
def imresize_weights(in_length: int, out_length: int) -> np.ndarray:
    """(out_length, in_length) float32 matrix of MATLAB's bicubic ``imresize`` along one axis.

    Output pixel i (1-based) samples the input at u = i / s + (1 - 1/s) / 2 with s = out / in. When
    shrinking, the kernel is widened by 1/s and scaled by s (antialiasing). Taps outside the image are
    mirrored (1..n, n..1, repeating), and each row's weights are normalised to sum to 1.
    """
    if in_length < 1 or out_length < 1:
        raise ValueError(f"imresize needs positive lengths; got {in_length} -> {out_length}")
    scale = out_length / in_length
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    index = left[:, None] + np.arange(taps)[None, :]          # 1-based input positions
    distance = u[:, None] - index
    weight = scale * cubic_kernel(distance * scale) if scale < 1 else cubic_kernel(distance)
    weight /= weight.sum(axis=1, keepdims=True)
    period = 2 * in_length
    folded = np.mod(index - 1, period)                         # 0-based, then mirrored into 0..n-1
    folded = np.where(folded < in_length, folded, period - 1 - folded).astype(np.int64)
    matrix = np.zeros((out_length, in_length))
    np.add.at(matrix, (np.repeat(np.arange(out_length), taps), folded.ravel()), weight.ravel())
    return matrix.astype(np.float32)


def imresize(x: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """(N, H, W, C) -> (N, h, w, C) resized as MATLAB's ``imresize(..., 'bicubic')`` (float, no rounding)."""
    _, h, w, _ = x.shape
    rows = jnp.asarray(imresize_weights(h, int(out_hw[0])))
    cols = jnp.asarray(imresize_weights(w, int(out_hw[1])))
    y = jnp.einsum("oh,nhwc->nowc", rows, x, precision=jax.lax.Precision.HIGHEST)
    return jnp.einsum("pw,nowc->nopc", cols, y, precision=jax.lax.Precision.HIGHEST)


def _check_divisible(x, scale: int, what: str):
    _, h, w, _ = x.shape
    if h % scale or w % scale:
        raise ValueError(f"{what} x{scale}: height and width must be divisible by {scale}; got {h}x{w} "
                         f"(crop with ctl_jax.data.images.crop_to_multiple first)")


def bicubic_downsample(x: jax.Array, scale: int) -> jax.Array:
    """(N, H, W, C) -> (N, H/s, W/s, C), MATLAB ``imresize(x, 1/s, 'bicubic')``."""
    _check_divisible(x, scale, "bicubic")
    _, h, w, _ = x.shape
    return imresize(x, (h // scale, w // scale))


def bicubic_pre_upsampled(x: jax.Array, scale: int) -> jax.Array:
    """Down-sample by ``scale`` then up-sample back to (N, H, W, C), both MATLAB bicubic."""
    return imresize(bicubic_downsample(x, scale), x.shape[1:3])


def decimate(x: jax.Array, scale: int) -> jax.Array:
    """(N, H, W, C) -> (N, H/s, W/s, C): every s-th pixel from the first (no low-pass filter)."""
    _check_divisible(x, scale, "decimate")
    return x[:, ::scale, ::scale, :]


def blur_decimate(x: jax.Array, kernel, scale: int) -> jax.Array:
    """Blur each channel with ``kernel`` (k, k), sum 1 expected, edges mirrored, then :func:`decimate`.

    The classical SR degradation y = (x * k) decimated by s (seed 004, KernelGAN). ``kernel`` may be a
    traced array (kernel estimation differentiates through it); its size must be odd and smaller than
    the image.
    """
    kernel = jnp.asarray(kernel, x.dtype)
    k = kernel.shape[0]
    if kernel.ndim != 2 or kernel.shape[1] != k or k % 2 == 0:
        raise ValueError(f"blur kernel must be square with an odd size; got shape {kernel.shape}")
    _, h, w, c = x.shape
    if k > min(h, w):
        raise ValueError(f"blur kernel {k}x{k} is larger than the image {h}x{w}")
    pad = k // 2
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    # cross-correlation with the flipped kernel is convolution; depthwise over channels
    rhs = jnp.tile(kernel[::-1, ::-1, None, None], (1, 1, 1, c))
    blurred = jax.lax.conv_general_dilated(padded, rhs, (1, 1), "VALID", feature_group_count=c,
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                           precision=jax.lax.Precision.HIGHEST)
    return decimate(blurred, scale)


BLUR_SIZE, BLUR_SIGMAS = 13, (0.6, 2.6)


def gaussian_kernel(size: int, sigma_x, sigma_y=None, angle=0.0) -> jax.Array:
    """A (size, size) anisotropic Gaussian blur kernel (standard deviations sigma_x, sigma_y along
    axes rotated by ``angle`` radians), summing to 1. Traceable in the sigmas and the angle."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    t = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    yy, xx = jnp.meshgrid(t, t, indexing="ij")
    c, s = jnp.cos(angle), jnp.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = jnp.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return k / jnp.sum(k)


def random_gaussian_blur_decimate(key, x: jax.Array, scale: int) -> jax.Array:
    """Each image of (N, H, W, C) blurred by its own random ``gaussian_kernel`` (sigmas uniform in
    ``BLUR_SIGMAS``, angle uniform in [0, pi)) and decimated by ``scale``."""
    if key is None:
        raise ValueError("gaussian_blur_lr draws a kernel per image and needs a random key")
    sig_key, angle_key = jax.random.split(key)
    sigmas = jax.random.uniform(sig_key, (x.shape[0], 2), minval=BLUR_SIGMAS[0], maxval=BLUR_SIGMAS[1])
    angles = jax.random.uniform(angle_key, (x.shape[0],), maxval=np.pi)
    kernels = jax.vmap(lambda s, a: gaussian_kernel(BLUR_SIZE, s[0], s[1], a))(sigmas, angles)
    return jax.vmap(lambda image, k: blur_decimate(image[None], k, scale)[0])(x, kernels)


def _static_scale(levels) -> int:
    """The batch's one scale (resizing fixes shapes, so it must be a concrete value)."""
    if isinstance(levels, jax.core.Tracer):
        raise ValueError("down-sampling scales must be concrete (static) values, not traced ones")
    return int(np.ravel(np.asarray(levels))[0])


BICUBIC = register(DegradationKind(
    "bicubic", "scale", "×", 1, 16, lambda key, x, levels: bicubic_pre_upsampled(x, _static_scale(levels)),
    integer=True, same_level=True))
BICUBIC_LR = register(DegradationKind(
    "bicubic_lr", "scale", "×", 1, 16, lambda key, x, levels: bicubic_downsample(x, _static_scale(levels)),
    integer=True, same_level=True, scale=lambda level: 1.0 / float(level)))
GAUSSIAN_BLUR_LR = register(DegradationKind(
    "gaussian_blur_lr", "scale", "×", 1, 16,
    lambda key, x, levels: random_gaussian_blur_decimate(key, x, _static_scale(levels)),
    integer=True, same_level=True, scale=lambda level: 1.0 / float(level)))
DECIMATE_LR = register(DegradationKind(
    "decimate_lr", "scale", "×", 1, 16, lambda key, x, levels: decimate(x, _static_scale(levels)),
    integer=True, same_level=True, scale=lambda level: 1.0 / float(level)))
