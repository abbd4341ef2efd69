"""The restoration operators: degradations with a level, whose inverse the network learns.

For these the training target is the clean image and the input is the degraded one, so
``apply`` degrades: ``apply(image, level, key)`` returns the corrupted image, same shape as the
input, clipped to [0, 1] (as writing it to an 8-bit PNG did in the authors' pipeline). They wrap
:mod:`ctl_jax.degradations`. ``key`` is a JAX PRNG key or an integer seed; JPEG and bicubic
resampling are deterministic and ignore it, keeping one signature for all three.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.degradations import add_gaussian_noise, bicubic_pre_upsampled, jpeg_compress
from ctl_jax.operators.spec import as_image


def _as_key(key) -> jax.Array:
    return jax.random.key(key) if isinstance(key, (int, np.integer)) else key


def denoise(image, sigma, key=0) -> jnp.ndarray:
    """Add white Gaussian noise: ``clip(image + sigma / 255 * N(0, 1))``; jit-able in ``sigma``.

    Args:
      image: float32 (H, W, C), C in {1, 3}, values in [0, 1].
      sigma: noise standard deviation on the 0-255 scale, valid range [10, 70] (linear).
      key: PRNG key or integer seed.
    """
    image = as_image(image)
    noisy = add_gaussian_noise(_as_key(key), image[None], sigma)[0]
    return jnp.clip(noisy, 0.0, 1.0)


def deblock(image, quality, key=None) -> np.ndarray:
    """JPEG-compress with Pillow at ``quality`` rounded to a whole number, valid range [10, 20] (linear).

    Runs on the host (the real codec), so it is not jit-able. RGB is encoded as colour JPEG
    (the authors compress the luma channel alone); grey as a one-channel JPEG.
    Returns a float32 numpy array of the input's shape.
    """
    image = np.asarray(as_image(image))
    return jpeg_compress(np.clip(image, 0.0, 1.0), round(float(quality)))


def super_resolution(image, scale, key=None) -> jnp.ndarray:
    """Bicubic down-sampling by ``scale`` (rounded to a whole number) and up-sampling back to (H, W).

    The pre-upsampled low-resolution input of SR networks (the authors use MATLAB ``imresize``
    both ways). ``scale`` valid range [2, 4], whole numbers (linear). H and W need not be
    multiples of the scale: the image is edge-padded to the next multiple and cropped back.
    """
    image = as_image(image)
    scale = round(float(scale))
    height, width, _ = image.shape
    pad = ((0, -height % scale), (0, -width % scale), (0, 0))
    padded = jnp.pad(image, pad, mode="edge")
    blurry = bicubic_pre_upsampled(padded[None], scale)[0, :height, :width]
    return jnp.clip(blurry, 0.0, 1.0)
