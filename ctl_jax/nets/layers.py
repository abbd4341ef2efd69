"""Building blocks shared by the base networks: AdaFM slots, PixelShuffle, input checks.

All tensors are NHWC. The base networks call :func:`modulate` after the convolutions that
carry an AdaFM slot; with ``kernel_size=None`` the slot is absent and the network is the plain
basic network (no extra parameters).
"""

from __future__ import annotations

import jax
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


def _shifted_sum(x, kernel):
    """sum_{i,j} x_pad[:, h+i, w+j, c] * kernel[i, j, c]: a 'SAME' depthwise correlation.

    x: (N, H, W, C); kernel: (k, k, C) with k odd. XLA fuses this into one pass over x.
    """
    k = kernel.shape[0]
    pad = k // 2
    h, w = x.shape[1], x.shape[2]
    xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return sum(xp[:, i:i + h, j:j + w, :] * kernel[i, j] for i in range(k) for j in range(k))


def _kernel_gradient(x, g, k, rows: int = 16):
    """d/d kernel of sum(g * _shifted_sum(x, kernel)): (k, k, C).

    The k*k reductions run tile by tile (``rows`` image rows of one sample, two tiles at a time),
    so each tile of x and g stays in cache while all taps read it; one reduction per tap over the
    whole batch is memory-bound and about twice as slow on CPU (benchmarks/train_step.py).
    """
    pad = k // 2
    n, h, w, c = x.shape
    extra = -h % rows  # zero rows of g contribute nothing
    xp = jnp.pad(x, ((0, 0), (pad, pad + extra), (pad, pad), (0, 0)))
    g = jnp.pad(g, ((0, 0), (0, extra), (0, 0), (0, 0)))
    starts = range(0, h + extra, rows)
    x_tiles = jnp.stack([xp[:, r:r + rows + 2 * pad] for r in starts], 1).reshape(-1, rows + 2 * pad, w + 2 * pad, c)
    g_tiles = g.reshape(-1, rows, w, c)

    def one_tile(args):
        xs, gs = args
        return jnp.stack([jnp.stack([jnp.sum(xs[i:i + rows, j:j + w] * gs, axis=(0, 1)) for j in range(k)])
                          for i in range(k)])

    return jnp.sum(jax.lax.map(one_tile, (x_tiles, g_tiles), batch_size=2), axis=0)


@jax.custom_vjp
def depthwise_conv(x, kernel):
    """Depthwise 'SAME' correlation, (N, H, W, C) x (k, k, C) -> (N, H, W, C), as ``nn.Conv`` with
    ``feature_group_count=C`` computes it. XLA's grouped convolution is 20-50x slower on CPU."""
    return _shifted_sum(x, kernel)


def _depthwise_fwd(x, kernel):
    return _shifted_sum(x, kernel), (x, kernel)


def _depthwise_bwd(residuals, g):
    x, kernel = residuals
    grad_x = _shifted_sum(g, kernel[::-1, ::-1])  # correlation's adjoint: the flipped kernel
    return grad_x, _kernel_gradient(x, g, kernel.shape[0])


depthwise_conv.defvjp(_depthwise_fwd, _depthwise_bwd)


class DepthwiseConv(nn.Module):
    """Depthwise k x k conv with bias, 'SAME' padding, k odd; parameters laid out as ``nn.Conv``'s
    (kernel (k, k, 1, C), bias (C,)), so trees and PyTorch imports match. Linear in its
    parameters (per-pixel alpha mixes it exactly)."""

    kernel_size: int
    kernel_init: nn.initializers.Initializer = nn.initializers.zeros
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (self.kernel_size, self.kernel_size, 1, c))
        bias = self.param("bias", self.bias_init, (c,))
        return depthwise_conv(x, kernel[:, :, 0, :]) + bias


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
        return x + DepthwiseConv(self.kernel_size, name="depthwise")(x)


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
