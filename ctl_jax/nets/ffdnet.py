"""FFDNet (Zhang, Zuo, Zhang, "FFDNet: Toward a Fast and Flexible Solution for CNN-Based Image
Denoising", IEEE TIP 2018): a denoiser that takes the noise level as a second input, the
noise-level map M, so one network covers a range of levels and a spatially varying level.

The network, the paper's ``x = F(y, M; Theta)`` (Sec. III-A)::

    y (N, H, W, C) in [0, 1]  --2x2 pixel-unshuffle-->  (N, H/2, W/2, 4C)
    M (N, H, W, 1)            --2x2 mean pooling----->  (N, H/2, W/2, 1)
    concatenate -> (4C + 1) channels
    conv_0 .. conv_{depth-2}: 3x3 conv (bias) + ReLU, ``features`` channels
    conv_{depth-1}: 3x3 conv (bias) -> 4C channels     (no activation)
    2x2 pixel-shuffle -> (N, H, W, C): the clean image estimate (not a residual, not clipped)

M holds sigma / 255 per pixel (sigma on the 0..255 scale, so sigma = 25 -> 0.098); a constant map
is the paper's spatially invariant case. The paper's M lives at H/2 x W/2; here the map is given at
image resolution and each 2x2 block is averaged (exact for constant maps).

Deviation: the paper trains with batch norm between the middle convs and folds it into them at the
end; DESIGN.md principle 7 keeps batch norm out of trainable backbones, so every conv has a bias
and no norm follows it. That is exactly the layout of the authors' released MatConvNet files
(``FFDNet_gray.mat``, ``FFDNet_color.mat``), whose layers are SubP, concat, then ``depth``
(conv, relu) pairs without the last relu, then SubP: no batch-norm layers remain in them.

Parameter layout, for importing those files: ``conv_i/kernel`` (3, 3, C_in, C_out) and
``conv_i/bias`` (C_out,) hold the i-th conv layer of the .mat net unchanged (MatConvNet stores weights
as H x W x C_in x C_out and correlates, as ``nn.Conv`` does; h5py shows the axes reversed). The
sub-images follow the authors' ``vl_nnSubP`` (MATLAB, column-major): channel ``4c + 2j + i`` holds
pixel ``(2h + i, 2w + j)`` of colour ``c`` (PyTorch's ``PixelUnshuffle`` has ``4c + 2i + j``), and
the map is the last input channel of ``conv_0``. The released weights load into this layout with the
h5py arrays transposed (3, 2, 1, 0) and no other change: ``ctl_jax.nets.matconvnet.load_pretrained``.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from einops import rearrange

from ctl_jax.nets.layers import check_image_batch

# depth: conv layers in all; features: channels of the middle layers; channels: the image channels
# the variant is built for (None: any, the factory defaults to 3). "gray" and "color" are the
# paper's networks (and the released weights'); "small" and "tiny" are for CPU tests.
VARIANTS = {
    "gray": dict(channels=1, depth=15, features=64),
    "color": dict(channels=3, depth=12, features=96),
    "small": dict(channels=None, depth=6, features=32),
    "tiny": dict(channels=None, depth=3, features=8),
}

_PAD = ((1, 1), (1, 1))  # PyTorch / MatConvNet pad = 1


def pixel_unshuffle(x):
    """2x2 space-to-depth in the authors' order, (N, H, W, C) -> (N, H/2, W/2, 4C): channel
    ``4c + 2j + i`` holds pixel ``(2h + i, 2w + j)`` of channel ``c``."""
    return rearrange(x, "n (h i) (w j) c -> n h w (c j i)", i=2, j=2)


def pixel_shuffle(x):
    """2x2 depth-to-space, (N, H, W, 4C) -> (N, 2H, 2W, C), the inverse of :func:`pixel_unshuffle`."""
    return rearrange(x, "n h w (c j i) -> n (h i) (w j) c", i=2, j=2)


class FFDNet(nn.Module):
    """FFDNet; see the module docstring. ``__call__(x, cond)``:

    x: (N, H, W, channels) noisy image, clean range [0, 1], H and W even (ValueError otherwise);
    cond: (N or 1, H, W, D) noise-level map, sigma / 255 per pixel (D = 1 in the paper; with D > 1,
    conv_0 takes 4C + D channels). Returns (N, H, W, channels), the denoised estimate; with
    ``residual`` (not in the paper; for short CPU-scale training) the network predicts ``estimate - x``.
    """

    channels: int = 1
    depth: int = 15
    features: int = 64
    residual: bool = False

    @nn.compact
    def __call__(self, x, cond):
        check_image_batch(x, self.channels, "FFDNet", multiple_of=2)
        if self.depth < 2:
            raise ValueError(f"FFDNet needs depth >= 2 (first and last conv); got {self.depth}")
        n, h, w, _ = x.shape
        if jnp.ndim(cond) != 4 or cond.shape[0] not in (1, n) or cond.shape[1:3] != (h, w):
            raise ValueError(f"FFDNet takes a noise-level map cond of shape (N or 1, H, W, D) = ({n}, {h}, {w}, D) "
                             f"for an image batch {tuple(x.shape)}; got {jnp.shape(cond)}")
        m = jnp.broadcast_to(cond.astype(x.dtype), (n, h, w, cond.shape[-1]))
        m = rearrange(m, "n (h i) (w j) d -> n h w d (i j)", i=2, j=2).mean(-1)  # 2x2 mean pooling
        z = jnp.concatenate([pixel_unshuffle(x), m], axis=-1)
        init = nn.initializers.kaiming_normal()  # He-normal (fan-in) for the ReLU layers: our choice
        for i in range(self.depth - 1):
            z = nn.relu(nn.Conv(self.features, (3, 3), padding=_PAD, kernel_init=init, name=f"conv_{i}")(z))
        z = nn.Conv(4 * self.channels, (3, 3), padding=_PAD, name=f"conv_{self.depth - 1}")(z)
        return x + pixel_shuffle(z) if self.residual else pixel_shuffle(z)


def ffdnet(variant: str = "gray", channels: int | None = None, adafm_kernel: int | None = None,
           **kw) -> FFDNet:
    """An FFDNet of the ``VARIANTS`` table. ``channels`` defaults to the variant's (1 for "gray",
    3 for "color" and for the test variants); the paper variants refuse another channel count.
    ``adafm_kernel`` exists for the registry's signature: FFDNet has no AdaFM slots (it is controlled
    by its input map), so a value raises. ``kw`` may override ``depth``, ``features`` or ``residual``."""
    if adafm_kernel is not None:
        raise ValueError("FFDNet has no AdaFM slots (its level is the input noise map); leave adafm_kernel unset")
    if variant not in VARIANTS:
        raise ValueError(f"unknown FFDNet variant {variant!r}; choose one of {sorted(VARIANTS)}")
    cfg = dict(VARIANTS[variant])
    fixed = cfg.pop("channels")
    if channels is None:
        channels = fixed or 3
    elif fixed is not None and channels != fixed:
        raise ValueError(f"FFDNet {variant!r} is the {fixed}-channel network; got channels={channels} "
                         f"(use {'gray' if channels == 1 else 'color'!r}, or 'small' / 'tiny')")
    unknown = set(kw) - {"depth", "features", "residual"}
    if unknown:
        raise TypeError(f"ffdnet() got unexpected options {sorted(unknown)}")
    return FFDNet(channels=channels, **{**cfg, **kw})
