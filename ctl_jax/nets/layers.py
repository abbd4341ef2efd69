"""Building blocks shared by the base networks: AdaFM slots, PixelShuffle, input checks.

All tensors are NHWC. The base networks call :func:`modulate` after the convolutions that
carry an AdaFM slot; with ``kernel_size=None`` the slot is absent and the network is the plain
basic network (no extra parameters).
"""

from __future__ import annotations

import jax.numpy as jnp
import flax.linen as nn

ADAFM_KERNEL_SIZES = (1, 3, 5, 7)
ADAFM_PREFIX = "adafm"  # every AdaFM slot's module name starts with this; the AdaFM tuner relies on it


def check_adafm_kernel(kernel_size: int | None) -> None:
    """Raise a ValueError unless ``kernel_size`` is None or one of 1, 3, 5, 7."""
    if kernel_size is not None and kernel_size not in ADAFM_KERNEL_SIZES:
        raise ValueError(
            f"AdaFM kernel size must be one of {ADAFM_KERNEL_SIZES} (or None for no AdaFM slots); "
            f"got {kernel_size!r}")


class AdaFM(nn.Module):
    """Adaptive feature modification (He et al. 2019): ``y = x + dw(x)``.

    ``dw`` is a depthwise ``k x k`` convolution with bias, zero-initialised, so a fresh slot is
    the identity and the network that carries it is exactly the basic network. Scaling the
    slot's parameters by alpha gives the paper's interpolation ``g_alpha = I + alpha (g - I)``.
    Input and output: (N, H, W, C).
    """

    kernel_size: int

    @nn.compact
    def __call__(self, x):
        check_adafm_kernel(self.kernel_size)
        channels = x.shape[-1]
        return x + nn.Conv(channels, (self.kernel_size, self.kernel_size), padding="SAME",
                           feature_group_count=channels, kernel_init=nn.initializers.zeros,
                           bias_init=nn.initializers.zeros, name="depthwise")(x)


def modulate(x, kernel_size: int | None, name: str):
    """Apply an AdaFM slot named ``adafm_<name>`` when ``kernel_size`` is set, else return x.

    Must be called from inside a compact module's ``__call__``.
    """
    if kernel_size is None:
        return x
    return AdaFM(kernel_size, name=f"{ADAFM_PREFIX}_{name}")(x)


def pixel_shuffle(x, scale: int):
    """Depth-to-space in PyTorch's channel order: (N, H, W, C*s*s) -> (N, H*s, W*s, C).

    Input channel ``c*s*s + i*s + j`` goes to output channel ``c`` at sub-pixel ``(i, j)``, as in
    ``torch.nn.PixelShuffle``, so weights ported from PyTorch keep their meaning.
    """
    n, h, w, cs2 = x.shape
    if cs2 % (scale * scale):
        raise ValueError(f"pixel_shuffle: channels {cs2} not divisible by scale^2 = {scale * scale}")
    c = cs2 // (scale * scale)
    x = x.reshape(n, h, w, c, scale, scale)
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * scale, w * scale, c)


def check_image_batch(x, channels: int, network: str, multiple_of: int = 1) -> None:
    """Raise a ValueError naming the problem unless x is (N, H, W, channels) with H, W % multiple_of == 0."""
    if x.ndim != 4:
        raise ValueError(f"{network} expects an image batch of shape (N, H, W, {channels}); "
                         f"got rank {x.ndim} with shape {tuple(x.shape)}")
    if x.shape[-1] != channels:
        kinds = {1: "grey", 3: "RGB", 4: "RGBA"}
        raise ValueError(
            f"{network} was built for {channels} channel(s) ({kinds.get(channels, '?')}); the input has "
            f"{x.shape[-1]} ({kinds.get(x.shape[-1], '?')}), shape {tuple(x.shape)}")
    if multiple_of > 1 and (x.shape[1] % multiple_of or x.shape[2] % multiple_of):
        raise ValueError(f"{network} needs height and width divisible by {multiple_of}; "
                         f"got {x.shape[1]}x{x.shape[2]}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{network} expects floating-point images in [0, 1]; got dtype {x.dtype}")
