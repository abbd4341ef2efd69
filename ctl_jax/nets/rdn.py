"""RDN, the residual dense network for super-resolution (Zhang et al., CVPR 2018; seed 004).

Layout, NHWC, input the low-resolution image (N, h, w, C) in [0, 1], output (N, h s, w s, C):

    F_-1 = sfe1 = conv3x3 (C -> G0)             shallow features
    F_0  = sfe2 = conv3x3 (G0 -> G0)
    F_d  = RDB_d(F_{d-1}), d = 1..D              residual dense blocks ``rdb_<d-1>``:
             c = 1..Cl: conv3x3 (G0 + (c-1) G -> G) + ReLU on the concatenation of all earlier outputs
             local feature fusion conv1x1 (G0 + Cl G -> G0), + block input (local residual learning)
    F_DF = gff_3x3(gff_1x1(concat(F_1..F_D))) + F_-1   global feature fusion, global residual learning
    out  = conv3x3 (G0 -> C) after the pixel-shuffle up-sampler (x2, x3, x4)

Paper sizes: D = 16 blocks, Cl = 8 layers, G = G0 = 64 (22 M parameters). With ``adafm_kernel``
set, an AdaFM slot follows every dense-layer conv (what AdaFM tunes).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ctl_jax.nets.layers import (PixelShuffleUpsampler, check_adafm_kernel, check_image_batch, check_upscale,
                                 from_variants, modulate)
from ctl_jax.nets.layers import same_conv as conv


class ResidualDenseBlock(nn.Module):
    """(N, h, w, G0) -> same: Cl densely connected conv+ReLU layers, 1x1 fusion, local residual."""

    growth: int
    layers: int
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, x):
        features = [x]
        for c in range(self.layers):
            h = conv(self.growth, name=f"conv_{c}")(jnp.concatenate(features, axis=-1))
            features.append(nn.relu(modulate(h, self.adafm_kernel, f"conv_{c}")))
        return x + conv(x.shape[-1], 1, name="fusion")(jnp.concatenate(features, axis=-1))


class RDN(nn.Module):
    """Residual dense network; see the module docstring."""

    channels: int = 3
    features: int = 64      # G0
    growth: int = 64        # G
    blocks: int = 16        # D
    layers: int = 8         # Cl, conv layers per block
    upscale: int = 2
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, x):
        check_image_batch(x, self.channels, "RDN")
        check_upscale(self.upscale, "RDN")
        check_adafm_kernel(self.adafm_kernel)
        shallow = conv(self.features, name="sfe1")(x)
        h = conv(self.features, name="sfe2")(shallow)
        block_outputs = []
        for d in range(self.blocks):
            h = ResidualDenseBlock(self.growth, self.layers, self.adafm_kernel, name=f"rdb_{d}")(h)
            block_outputs.append(h)
        fused = conv(self.features, 1, name="gff_1x1")(jnp.concatenate(block_outputs, axis=-1))
        h = conv(self.features, name="gff_3x3")(fused) + shallow
        h = PixelShuffleUpsampler(self.features, self.upscale, name="upsample")(h)
        return conv(self.channels, name="out")(h)


VARIANTS = {
    "paper": dict(blocks=16, layers=8, growth=64, features=64),
    "small": dict(blocks=4, layers=4, growth=16, features=32),   # CPU experiments
    "tiny": dict(blocks=2, layers=2, growth=8, features=16),     # tests
}


def rdn(variant: str | None = None, **overrides) -> RDN:
    """RDN from the ``VARIANTS`` table ("paper" when None), with keyword overrides (upscale, channels, ...)."""
    return from_variants(RDN, VARIANTS, variant or "paper", "RDN", **overrides)
