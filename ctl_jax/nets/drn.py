"""A DRN-style network with its dual regression branch (Guo et al., CVPR 2020; seed 004).

Primal network P, NHWC, input the low-resolution image x (N, h, w, C) in [0, 1], output (N, h s, w s, C):

    u     = bicubic x s of x (MATLAB imresize), head = conv3x3 (C -> nf)
    down  = log2 s stages: conv3x3 stride 2 (c -> 2c), LeakyReLU(0.2), conv3x3      ``down_<i>``
    up    = per stage, from the coarsest: B residual channel-attention blocks (RCAB), pixel-shuffle
            x2 to half the channels, concatenated with the down path's feature of that size, conv1x1
    out   = conv3x3 (nf -> C) + u

Dual network D (:class:`DualRegression`, ``stage_<i>`` per x2 stage): conv3x3 stride 2 (C -> 16),
LeakyReLU(0.2), conv3x3 (16 -> C); it maps the SR output back to the LR size. DRN's loss is
L1(P(x), y) + lambda * L1(D(P(x)), x) with lambda = 0.1 (paper Eq. 3): the dual branch constrains the
mapping even where no HR image exists. D is a separate module with its own parameter tree, used in
training only, so the tuners and the per-pixel mixing see the primal network alone.

Simplified from the paper: one output scale (DRN also supervises the intermediate scales), no
mean shift. In channel attention the per-pixel alpha map (``ctl_jax.tuners.mixing``) is averaged over
the image, since the attention is computed from global averages.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from ctl_jax.degradations.bicubic import imresize
from ctl_jax.losses import l1_loss
from ctl_jax.nets.layers import (check_adafm_kernel, check_image_batch, check_upscale, from_variants, lrelu,
                                 pixel_shuffle)
from ctl_jax.nets.layers import same_conv as conv

DUAL_WEIGHT = 0.1


class RCAB(nn.Module):
    """Residual channel-attention block (RCAN): conv-ReLU-conv, rescaled per channel by
    sigmoid(conv1x1(ReLU(conv1x1(mean over H, W)))), plus the input. (N, H, W, c) -> same."""

    reduction: int = 16

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        h = conv(c, name="conv_1")(nn.relu(conv(c, name="conv_0")(x)))
        pooled = jnp.mean(h, axis=(1, 2), keepdims=True)
        weight = nn.sigmoid(conv(c, 1, name="attend_1")(nn.relu(conv(max(1, c // self.reduction), 1,
                                                                          name="attend_0")(pooled))))
        return x + h * weight


class DRN(nn.Module):
    """DRN-style primal network with the dual regression branch; see the module docstring."""

    channels: int = 3
    features: int = 16
    rcab_blocks: int = 30
    upscale: int = 4
    adafm_kernel: int | None = None  # no AdaFM slots: accepted for the registry's signature, must be None

    @nn.compact
    def __call__(self, x):
        check_image_batch(x, self.channels, "DRN")
        check_upscale(self.upscale, "DRN", (2, 4, 8))
        check_adafm_kernel(self.adafm_kernel)
        if self.adafm_kernel is not None:
            raise ValueError("DRN has no AdaFM slots; tune it with FTN or DNI")
        n, h, w, c = x.shape
        stages = self.upscale.bit_length() - 1
        upsampled = imresize(x, (h * self.upscale, w * self.upscale))
        skips = [conv(self.features, name="head")(upsampled)]
        for i in range(stages):
            width = self.features * 2 ** (i + 1)
            skips.append(conv(width, name=f"down_{i}_1")(lrelu(conv(width, stride=2, name=f"down_{i}_0")(skips[-1]))))
        g = skips[-1]
        for i in reversed(range(stages)):
            width = self.features * 2 ** i
            for b in range(self.rcab_blocks):
                g = RCAB(name=f"up_{i}_rcab_{b}")(g)
            g = pixel_shuffle(conv(width * 4, name=f"up_{i}_shuffle")(g), 2)
            g = conv(width, 1, name=f"up_{i}_fuse")(jnp.concatenate([g, skips[i]], axis=-1))
        return conv(self.channels, name="tail")(g) + upsampled


class DualRegression(nn.Module):
    """DRN's dual network: (N, h s, w s, C) -> (N, h, w, C), one strided stage per x2."""

    channels: int = 3
    upscale: int = 4

    @nn.compact
    def __call__(self, sr):
        check_image_batch(sr, self.channels, "DualRegression", multiple_of=self.upscale)
        for i in range(self.upscale.bit_length() - 1):
            sr = conv(self.channels, name=f"stage_{i}_1")(lrelu(conv(16, stride=2, name=f"stage_{i}_0")(sr)))
        return sr


VARIANTS = {
    "paper": dict(features=16, rcab_blocks=30),   # DRN-S (x4: 4.8 M parameters in the paper)
    "small": dict(features=16, rcab_blocks=4),    # CPU experiments
    "tiny": dict(features=8, rcab_blocks=1),      # tests
}


def drn(variant: str | None = None, **overrides) -> DRN:
    """DRN from the ``VARIANTS`` table ("paper" when None), with keyword overrides."""
    return from_variants(DRN, VARIANTS, variant or "paper", "DRN", **overrides)


def dual_regression_loss(primal: DRN, dual: DualRegression, params: dict, lr, hr,
                         dual_weight: float = DUAL_WEIGHT):
    """DRN's training loss for LR (N, h, w, C) and HR (N, h s, w s, C) batches, params
    ``{"primal": ..., "dual": ...}``: L1(P(lr), hr) + dual_weight * L1(D(P(lr)), lr) (paper Eq. 3).
    Returns (loss, sr)."""
    sr = primal.apply({"params": params["primal"]}, lr)
    lr_back = dual.apply({"params": params["dual"]}, sr)
    return l1_loss(sr, hr) + dual_weight * l1_loss(lr_back, lr), sr
