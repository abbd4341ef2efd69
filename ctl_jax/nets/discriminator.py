"""A VGG-style discriminator for perceptual super-resolution (after ESRGAN's ``Discriminator_VGG_128``).

(N, H, W, C) images in [0, 1] -> (N,) logits. Five stages, each conv3x3 (stride 1) then conv4x4
(stride 2), LeakyReLU(0.2) after every conv, widths nf, 2nf, 4nf, 8nf, 8nf; then the mean over
pixels, Dense(100), LeakyReLU, Dense(1).

Two changes from ESRGAN's network, both deliberate: no batch norm (its running statistics are state
that moves with every batch, against DESIGN.md principle 7, and a discriminator trains well without
it at this scale), and a global average pool instead of flattening a fixed 4x4 map, so any crop of
at least 32x32 works.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ctl_jax.nets.layers import check_image_batch, from_variants, lrelu


class VGGDiscriminator(nn.Module):
    channels: int = 3
    features: int = 64
    stages: int = 5

    @nn.compact
    def __call__(self, x):
        check_image_batch(x, self.channels, "VGGDiscriminator")
        if min(x.shape[1:3]) < 2 ** self.stages:
            raise ValueError(f"VGGDiscriminator with {self.stages} stride-2 stages needs crops of at least "
                             f"{2 ** self.stages}x{2 ** self.stages}; got {x.shape[1]}x{x.shape[2]}")
        h = x
        for s in range(self.stages):
            width = self.features * min(2 ** s, 8)
            h = lrelu(nn.Conv(width, (3, 3), padding=1, name=f"conv_{s}_0")(h))
            h = lrelu(nn.Conv(width, (4, 4), strides=2, padding=1, name=f"conv_{s}_1")(h))
        h = lrelu(nn.Dense(100, name="dense_0")(jnp.mean(h, axis=(1, 2))))
        return nn.Dense(1, name="dense_1")(h)[:, 0]


VARIANTS = {
    "paper": dict(features=64, stages=5),
    "small": dict(features=16, stages=4),   # CPU experiments
    "tiny": dict(features=8, stages=3),     # tests
}


def vgg_discriminator(variant: str | None = None, **overrides) -> VGGDiscriminator:
    return from_variants(VGGDiscriminator, VARIANTS, variant or "paper", "discriminator", **overrides)
