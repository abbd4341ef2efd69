"""The RRDB generator of ESRGAN (Wang et al., ECCV 2018 workshops), the network DNI was made for.

Layout, NHWC, input the low-resolution image (N, h, w, C) in [0, 1], output (N, h s, w s, C):

    fea   = conv_first: conv3x3 (C -> nf)
    trunk = nb x RRDB, then trunk_conv: conv3x3, + fea
    RRDB  = 3 x RDB, output 0.2 * (rdb_2(rdb_1(rdb_0(x)))) + x       residual-in-residual
    RDB   = 5 convs, conv_i on concat(x, x_1..x_{i-1}) with gc channels and LeakyReLU(0.2) (the 5th:
            nf channels, no activation); output 0.2 * x_5 + x
    up    = per x2: nearest-neighbour x2, conv3x3 (nf -> nf), LeakyReLU(0.2)
    out   = conv_last(LeakyReLU(hr_conv(up)))

The 0.2 residual scaling keeps the deep trunk stable without batch norm (ESRGAN section 3.1). Paper
sizes: nb = 23, nf = 64, gc = 32 (16.7 M parameters). No global input skip: ESRGAN has none.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ctl_jax.nets.layers import check_adafm_kernel, check_image_batch, check_upscale, from_variants, lrelu, modulate
from ctl_jax.nets.layers import same_conv as conv

RESIDUAL_SCALE = 0.2


class DenseBlock5(nn.Module):
    """(N, h, w, nf) -> same: five densely connected convs, residual scaled by 0.2."""

    growth: int
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, x):
        features = [x]
        for i in range(4):
            h = conv(self.growth, name=f"conv_{i}")(jnp.concatenate(features, axis=-1))
            features.append(lrelu(modulate(h, self.adafm_kernel, f"conv_{i}")))
        return x + RESIDUAL_SCALE * conv(x.shape[-1], name="conv_4")(jnp.concatenate(features, axis=-1))


class RRDBBlock(nn.Module):
    """Residual in residual dense block: three :class:`DenseBlock5` and a scaled skip."""

    growth: int
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, x):
        h = x
        for i in range(3):
            h = DenseBlock5(self.growth, self.adafm_kernel, name=f"rdb_{i}")(h)
        return x + RESIDUAL_SCALE * h


class RRDBNet(nn.Module):
    """ESRGAN's generator; see the module docstring. Scales x2 and x4 (nearest + conv per x2)."""

    channels: int = 3
    features: int = 64
    growth: int = 32
    blocks: int = 23
    upscale: int = 4
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, x):
        check_image_batch(x, self.channels, "RRDBNet")
        check_upscale(self.upscale, "RRDBNet", (2, 4))
        check_adafm_kernel(self.adafm_kernel)
        fea = conv(self.features, name="conv_first")(x)
        h = fea
        for b in range(self.blocks):
            h = RRDBBlock(self.growth, self.adafm_kernel, name=f"rrdb_{b}")(h)
        h = fea + conv(self.features, name="trunk_conv")(h)
        for i in range(self.upscale.bit_length() - 1):
            h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
            h = lrelu(conv(self.features, name=f"up_conv_{i}")(h))
        return conv(self.channels, name="conv_last")(lrelu(conv(self.features, name="hr_conv")(h)))


VARIANTS = {
    "paper": dict(blocks=23, features=64, growth=32),
    "small": dict(blocks=3, features=32, growth=16),   # CPU experiments
    "tiny": dict(blocks=1, features=16, growth=8),     # tests
}


def rrdb_net(variant: str | None = None, **overrides) -> RRDBNet:
    """RRDBNet from the ``VARIANTS`` table ("paper" when None), with keyword overrides."""
    return from_variants(RRDBNet, VARIANTS, variant or "paper", "RRDBNet", **overrides)
