"""Transform-Net: the feed-forward image transformation network of Johnson, Alahi and Fei-Fei,
"Perceptual Losses for Real-Time Style Transfer and Super-Resolution" (ECCV 2016), in the layout of
the widely used PyTorch fast-neural-style example (reflection padding, instance norm, nearest
upsampling followed by a conv instead of transposed convs). It is the style-transfer backbone of
the FTN paper (Table 3: 1.68 M parameters) and of Dynamic-Net.

Layout for widths (w1, w2, w3) and B residual blocks ("paper": 32, 64, 128 and 5), NHWC,
C channels (3: RGB). Every conv has a bias and reflection padding of k // 2 pixels; IN is instance
norm with a learnable per-channel scale and bias (epsilon 1e-5, no running statistics)::

    down_0   conv 9x9 stride 1 (C -> w1) -> IN -> ReLU               (N, H, W, w1)
    down_1   conv 3x3 stride 2 (w1 -> w2) -> IN -> ReLU              (N, H/2, W/2, w2)
    down_2   conv 3x3 stride 2 (w2 -> w3) -> IN -> ReLU              (N, H/4, W/4, w3)
    block_i  h + IN(conv 3x3(ReLU(IN(conv 3x3(h)))))   i = 0..B-1    (N, H/4, W/4, w3)
    up_0     nearest x2 -> conv 3x3 (w3 -> w2) -> IN -> ReLU        (N, H/2, W/2, w2)
    up_1     nearest x2 -> conv 3x3 (w2 -> w1) -> IN -> ReLU        (N, H, W, w1)
    out_conv conv 9x9 (w1 -> C), no norm, no activation             (N, H, W, C)

``down_*``, ``block_*`` and ``up_*`` are submodule calls (their parameters nest under those
names: ``down_0/conv``, ``down_0/norm``, ``block_0/conv_a``, ``block_0/norm_b``, ...), so the
feature-space tuners can mix at them: CFSNet's and Dynamic-Net's default pattern ``"block_*"``
selects the residual blocks, and :func:`feature_tuner_specs` names Dynamic-Net's three places in its
style-transfer network. Every parameterised layer is an ``nn.Conv`` or ``nn.InstanceNorm``, both
linear in their parameters, so FTN transitions all 3 + 2B + 3 conv kernels (the upsampling convs
included) and per-pixel control is exact.

Range convention: the input is an RGB image in [0, 1]; the output is image values in the same
[0, 1] scale, produced directly by the last conv (no sigmoid or tanh, not clipped: the training
losses pull it into [0, 1]; clip for display). There is no input skip. (The PyTorch example works on
the 0-255 scale; the instance norm after the first conv makes the network nearly insensitive to
the input's scale.)

With ``adafm_kernel`` set (1, 3, 5 or 7), an AdaFM slot sits right after every conv except
``out_conv`` (before its instance norm): ``down_j/adafm_conv``, ``block_i/adafm_a``,
``block_i/adafm_b``, ``up_j/adafm_conv``, 2B + 5 slots, zero-initialised, so a fresh slotted
network computes exactly what the slot-free one does. With 5x5 slots the paper network has
41,600 slot parameters (1.68 M -> 1.72 M, the FTN paper's "+AdaFM" column). A 1x1 slot there is
a per-channel scale and shift that the instance norm right after it undoes (except its sign):
use k >= 3.

Input: (N, H, W, C) float, H and W multiples of 4 and at least 8 (the reflection padding of the
quarter-resolution convs needs two pixels). Output: (N, H, W, C).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from ctl_jax.nets.layers import check_adafm_kernel, check_image_batch, modulate

# widths (w1, w2, w3) of the three resolutions and the number of residual blocks B.
VARIANTS = {
    "paper": dict(widths=(32, 64, 128), blocks=5),  # Johnson et al.: 1,679,235 parameters (RGB)
    "small": dict(widths=(16, 32, 64), blocks=3),   # CPU experiments
    "tiny": dict(widths=(8, 8, 16), blocks=1),      # tests and smoke runs
}

MULTIPLE = 4   # two stride-2 convs and two x2 upsamplings: H and W must be multiples of 4
MIN_SIZE = 8   # reflection padding of 1 at H/4 needs H/4 >= 2

# Instance norm as in PyTorch's InstanceNorm2d(affine=True): per sample and channel over (H, W),
# biased variance, epsilon 1e-5, learnable scale (init 1) and bias (init 0), no running statistics.
# use_fast_variance=False computes E[(x - mean)^2] rather than E[x^2] - mean^2 (no cancellation).
InstanceNorm = functools.partial(nn.InstanceNorm, epsilon=1e-5, use_fast_variance=False)


def reflect_pad(x, pad: int):
    """Reflection-pad H and W of (N, H, W, C) by ``pad`` on each side (PyTorch's ReflectionPad2d:
    the edge pixel is not repeated)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def upsample_nearest(x, factor: int = 2):
    """Nearest-neighbour upsampling of (N, H, W, C) to (N, factor H, factor W, C)."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def reflect_conv(features: int, kernel_size: int, stride: int, name: str):
    """``h -> conv(reflect_pad(h, k // 2))``: a k x k conv with bias, 'VALID' on the padded input."""
    conv = nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride), padding="VALID", name=name)
    return lambda h: conv(reflect_pad(h, kernel_size // 2))


class ConvUnit(nn.Module):
    """``[nearest x2] -> reflection-padded conv k x k (stride s) -> [AdaFM] -> IN -> ReLU``.

    (N, H, W, C_in) -> (N, H', W', features) with H' = H / s, or 2 H with ``upsample``.
    Parameters: ``conv``, ``norm`` and, with ``adafm_kernel``, the slot ``adafm_conv``.
    """

    features: int
    kernel_size: int
    stride: int = 1
    upsample: bool = False
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, h):
        if self.upsample:
            h = upsample_nearest(h)
        h = reflect_conv(self.features, self.kernel_size, self.stride, "conv")(h)
        h = modulate(h, self.adafm_kernel, "conv")
        return nn.relu(InstanceNorm(name="norm")(h))


class ResidualBlock(nn.Module):
    """``h + IN(conv3x3(ReLU(IN(conv3x3(h)))))`` with reflection padding: (N, H, W, C) -> same.

    Parameters: ``conv_a``, ``norm_a``, ``conv_b``, ``norm_b`` and, with ``adafm_kernel``, the
    slots ``adafm_a`` and ``adafm_b`` (after each conv, before its norm). No ReLU after the sum.
    """

    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, h):
        c, k = h.shape[-1], self.adafm_kernel
        r = modulate(reflect_conv(c, 3, 1, "conv_a")(h), k, "a")
        r = nn.relu(InstanceNorm(name="norm_a")(r))
        r = modulate(reflect_conv(c, 3, 1, "conv_b")(r), k, "b")
        return h + InstanceNorm(name="norm_b")(r)


class TransformNet(nn.Module):
    """Johnson et al.'s Transform-Net; see the module docstring for the layout and the ranges."""

    channels: int = 3
    widths: tuple = (32, 64, 128)
    blocks: int = 5
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, x):
        check_image_batch(x, self.channels, "TransformNet", multiple_of=MULTIPLE)
        if min(x.shape[1], x.shape[2]) < MIN_SIZE:
            raise ValueError(f"TransformNet needs height and width of at least {MIN_SIZE} (multiples of "
                             f"{MULTIPLE}); got {x.shape[1]}x{x.shape[2]}")
        check_adafm_kernel(self.adafm_kernel)
        if len(self.widths) != 3 or self.blocks < 0:
            raise ValueError(f"TransformNet needs three widths and blocks >= 0; got widths={self.widths}, "
                             f"blocks={self.blocks}")
        (w1, w2, w3), k = self.widths, self.adafm_kernel
        h = ConvUnit(w1, 9, adafm_kernel=k, name="down_0")(x)
        h = ConvUnit(w2, 3, stride=2, adafm_kernel=k, name="down_1")(h)
        h = ConvUnit(w3, 3, stride=2, adafm_kernel=k, name="down_2")(h)
        for i in range(self.blocks):
            h = ResidualBlock(k, name=f"block_{i}")(h)
        h = ConvUnit(w2, 3, upsample=True, adafm_kernel=k, name="up_0")(h)
        h = ConvUnit(w1, 3, upsample=True, adafm_kernel=k, name="up_1")(h)
        return reflect_conv(self.channels, 9, 1, "out_conv")(h)


def transform_net(variant: str | None = None, **overrides) -> TransformNet:
    """A Transform-Net of the ``VARIANTS`` table (None: "paper") with keyword overrides (channels,
    adafm_kernel, ...)."""
    variant = variant or "paper"
    if variant not in VARIANTS:
        raise ValueError(f"unknown Transform-Net variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return TransformNet(**{**VARIANTS[variant], **overrides})


def feature_tuner_specs(variant: str | None = None) -> list[dict]:
    """CFSNet and Dynamic-Net as a config names them (``make_tuner`` specs) for a Transform-Net ``variant``.

    CFSNet couples a tuning block into every residual block (``block_*``). Dynamic-Net puts its
    three tuning blocks where its style-transfer network has them: before the third residual block
    (after ``block_1``), before the first upsampling (after the last block) and before the final
    9x9 conv (after ``up_1``); for fewer blocks, after the block just before the middle. On the
    paper network they hold 913,248 parameters (1.68 M -> 2.59 M, the FTN paper's "+Dynamic-Net").
    """
    blocks = transform_net(variant).blocks
    places = ["up_1"] if blocks == 0 else list(dict.fromkeys(
        [f"block_{max(0, blocks // 2 - 1)}", f"block_{blocks - 1}", "up_1"]))
    specs = [{"class": "DynamicNet", "name": "dynamic-net", "layers": places}]
    if blocks:
        specs.insert(0, {"class": "CFSNet", "name": "cfsnet", "layers": ["block_*"]})
    return specs
