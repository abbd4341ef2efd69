"""Building blocks shared by the base networks: AdaFM slots, PixelShuffle, input checks.

All tensors are NHWC. The base networks call :func:`modulate` after the convolutions that
carry an AdaFM slot; with ``kernel_size=None`` the slot is absent and the network is the plain
basic network (no extra parameters).
"""

from __future__ import annotations

import functools

import einops
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


def _pad_same(x, k, dilation=1):
    """Zero-pad H and W of (N, H, W, C) by dilation * (k // 2) on each side ('SAME' for odd k)."""
    pad = dilation * (k // 2)
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def _taps(xp, k, dilation, h, w):
    """The k*k shifted (N, h, w, C) views of the padded xp, row-major over the kernel taps.

    ``lax.slice`` rather than numpy-style indexing: the same program, traced several times faster
    (the AdaFM stage 2 of a paper-size net holds about 130 of these sums)."""
    n, _, _, c = xp.shape
    return [jax.lax.slice(xp, (0, i * dilation, j * dilation, 0), (n, i * dilation + h, j * dilation + w, c))
            for i in range(k) for j in range(k)]


def _shifted_sum(xp, kernel, dilation=1):
    """sum_{i,j} xp[:, h+d*i, w+d*j, c] * kernel[i, j, c]: a 'VALID' dilated depthwise correlation.

    xp: (N, H+d(k-1), W+d(k-1), C), already padded; kernel: (k, k, C). XLA fuses this into one pass.
    """
    k = kernel.shape[0]
    h, w = xp.shape[1] - dilation * (k - 1), xp.shape[2] - dilation * (k - 1)
    weights = kernel.reshape(k * k, 1, 1, 1, -1)
    return sum(tap * jax.lax.index_in_dim(weights, t, keepdims=False) for t, tap in enumerate(_taps(xp, k, dilation, h, w)))


def _kernel_gradient(xp, g, k, dilation=1):
    """d/d kernel of sum(g * _shifted_sum(xp, kernel, dilation)): (k, k, C).

    All k*k tap products go into one variadic reduction over (H, W), so XLA reads each tile of
    xp and g once for every tap (separate per-tap reductions, or padding inside the reduction, were
    slower on CPU). The remaining sum over the batch is tiny.
    """
    products = tuple(tap * g for tap in _taps(xp, k, dilation, g.shape[1], g.shape[2]))
    per_sample = jax.lax.reduce(products, (jnp.zeros((), g.dtype),) * len(products),
                                lambda a, b: tuple(ai + bi for ai, bi in zip(a, b)), (1, 2))
    return jnp.stack(per_sample).sum(axis=1).reshape(k, k, -1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv(x, kernel, dilation=1):
    """Depthwise 'SAME' correlation, (N, H, W, C) x (k, k, C) -> (N, H, W, C), as ``nn.Conv`` with
    ``feature_group_count=C`` and ``kernel_dilation=dilation`` computes it, written as shifted
    sums because XLA's grouped convolution is far slower on CPU (experiments/README.md)."""
    return _shifted_sum(_pad_same(x, kernel.shape[0], dilation), kernel, dilation)


def _depthwise_fwd(x, kernel, dilation):
    xp = _pad_same(x, kernel.shape[0], dilation)
    return _shifted_sum(xp, kernel, dilation), (xp, kernel)  # the padded input is kept for the kernel gradient


def _depthwise_bwd(dilation, residuals, g):
    xp, kernel = residuals
    k = kernel.shape[0]
    # The adjoint of a correlation is the correlation with the flipped kernel.
    grad_x = _shifted_sum(_pad_same(g, k, dilation), kernel[::-1, ::-1], dilation)
    return grad_x, _kernel_gradient(xp, g, k, dilation)


depthwise_conv.defvjp(_depthwise_fwd, _depthwise_bwd)


class DepthwiseConv(nn.Module):
    """Depthwise k x k conv with bias, 'SAME' padding, k odd, optional dilation; parameters laid out
    as ``nn.Conv``'s (kernel (k, k, 1, C), bias (C,)), so trees and PyTorch imports match. Linear in
    its parameters (per-pixel alpha mixes it exactly)."""

    kernel_size: int
    dilation: int = 1
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.zeros
    bias_init: nn.initializers.Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (self.kernel_size, self.kernel_size, 1, c))
        y = depthwise_conv(x, kernel[:, :, 0, :], self.dilation)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (c,))
        return y


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
    _, _, _, cs2 = x.shape  # a ValueError unless x is (N, H, W, C)
    if cs2 % (scale * scale):
        raise ValueError(f"pixel_shuffle: channels {cs2} not divisible by scale^2 = {scale * scale}")
    return einops.rearrange(x, "n h w (c i j) -> n (h i) (w j) c", i=scale, j=scale)


def same_conv(features: int, kernel: int = 3, stride: int = 1, name: str | None = None) -> nn.Conv:
    """A k x k convolution padded by k // 2 (the output keeps the input's size at stride 1)."""
    return nn.Conv(features, (kernel, kernel), strides=stride, padding=kernel // 2, name=name)


def lrelu(x):
    """LeakyReLU with slope 0.2 (ESRGAN, DRN, the discriminators)."""
    return nn.leaky_relu(x, 0.2)


def from_variants(cls, variants: dict, variant: str, family: str, **overrides):
    """``cls(**variants[variant], **overrides)``; a ValueError naming the known variants otherwise."""
    if variant not in variants:
        raise ValueError(f"unknown {family} variant {variant!r}; choose one of {sorted(variants)}")
    return cls(**{**variants[variant], **overrides})


def check_upscale(upscale: int, network: str, allowed=(2, 3, 4)) -> int:
    """``upscale`` if the network can be built for it, else a ValueError naming the scales it supports."""
    if upscale not in allowed:
        raise ValueError(f"{network} is built for scales {', '.join(f'x{s}' for s in allowed)}; got x{upscale}")
    return upscale


class PixelShuffleUpsampler(nn.Module):
    """EDSR/RDN up-sampler: per x2 stage (x3: one x3 stage) conv3x3 (nf -> nf s^2) then pixel shuffle.
    (N, h, w, nf) -> (N, h s, w s, nf). Stages are ``conv_0``, ``conv_1``."""

    features: int
    scale: int

    @nn.compact
    def __call__(self, x):
        steps = (3,) if self.scale == 3 else (2,) * (self.scale.bit_length() - 1)
        for i, s in enumerate(steps):
            x = pixel_shuffle(nn.Conv(self.features * s * s, (3, 3), padding=1, name=f"conv_{i}")(x), s)
        return x


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
