"""The main branch of CFSNet (Wang et al., ICCV 2019), used as a backbone by the FTN paper.

Layout (qibao77/CFSNet), NHWC, channels C (1 grey or 3 RGB), residual output:

    head  = conv3x3 (C -> nf), no bias
    body  = M x [conv3x3 -> ReLU -> conv3x3, + block input]     submodules block_0 .. block_{M-1}
    noise = conv3x3 (nf -> C) applied to (body + head)
    out   = x - noise

CFSNet-10 (M=10, nf=64) is the denoising / deblocking setting. The tuning branch of the full
CFSNet is a feature-space tuner (``ctl_jax.tuners.feature.CFSNet``) that couples a tuning block
to each residual block call; this module is the shared backbone. Input
(N, H, W, C) in [0, 1]; output the same shape. With ``adafm_kernel`` set, an AdaFM slot follows
every conv except the last (the FTN paper's setup).

Super-resolution (``upscale`` s = 2, 3 or 4; CFSNet-30 is the paper's x4 network): the input is the
low-resolution image (N, h, w, C) and the last conv follows a pixel-shuffle up-sampler,
``out = end(upsample(body + head))`` of shape (N, h s, w s, C), with no input skip.
"""

from __future__ import annotations

import flax.linen as nn

from ctl_jax.nets.adafm_net import Conv3x3, residual_block
from ctl_jax.nets.layers import (PixelShuffleUpsampler, check_adafm_kernel, check_image_batch, check_upscale,
                                 modulate)


class CFSNetMain(nn.Module):
    """CFSNet main branch; see the module docstring."""

    channels: int = 3
    features: int = 64
    blocks: int = 10
    adafm_kernel: int | None = None
    upscale: int = 1

    @nn.compact
    def __call__(self, x):
        check_image_batch(x, self.channels, "CFSNetMain")
        check_adafm_kernel(self.adafm_kernel)
        k, nf = self.adafm_kernel, self.features
        head = modulate(Conv3x3(nf, use_bias=False, name="head")(x), k, "head")
        h = head
        for i in range(self.blocks):
            h = residual_block(self, f"block_{i}", nf, k)(h)
        if self.upscale == 1:
            return x - Conv3x3(self.channels, name="end")(h + head)
        check_upscale(self.upscale, "CFSNetMain")
        return Conv3x3(self.channels, name="end")(PixelShuffleUpsampler(nf, self.upscale, name="upsample")(h + head))


VARIANTS = {
    "cfsnet10": dict(blocks=10, features=64),
    "cfsnet30": dict(blocks=30, features=64),
    "small": dict(blocks=4, features=32),
    "tiny": dict(blocks=2, features=16),
}


def cfsnet_main(variant: str = "cfsnet10", **overrides) -> CFSNetMain:
    """CFSNet main branch from the ``VARIANTS`` table, with keyword overrides."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CFSNet variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return CFSNetMain(**{**VARIANTS[variant], **overrides})
