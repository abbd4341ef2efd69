"""AdaFM-Net (He, Dong and Qiao, CVPR 2019): the backbone of the FTN paper's denoising tables.

Official layout (hejingwenhejingwen/AdaFM, ``AdaResNet``), NHWC, channels C (1 grey or 3 RGB):

    fea   = conv3x3 stride 2 (C -> nf)                 the body runs at half resolution
    body  = nb x [conv3x3 -> AdaFM -> ReLU -> conv3x3 -> AdaFM, + block input]
            conv3x3 (LR_conv) -> AdaFM, + fea           trunk skip
    up    = conv3x3 (nf -> 4 nf) -> PixelShuffle x2 -> ReLU
    out   = conv3x3 (HR_conv0) -> ReLU -> conv3x3 (HR_conv1, nf -> C)

No global input skip; convs have biases, no normalisation. Input (N, H, W, C) in [0, 1] with H, W
even; output the same shape. With ``upscale`` s = 2 or 4 it is the super-resolution form: fea has
stride 1 (the body runs on the low-resolution input) and up repeats log2(s) times, so the output
is (N, sH, sW, C). ``residual=True`` (not in the paper) adds the input to the output, so the
network learns the correction only: it keeps colours the training photos rarely show and trains
faster at CPU scale. Each residual block is a :class:`ResBlock` submodule named ``block_<i>``
(a call that feature-space tuners can intercept) whose parameters keep flat names
(``block_<i>_conv_a``, ``adafm_block_<i>_a``, ...). AdaFM slots exist only when ``adafm_kernel`` is set:
``adafm_placement="official"`` puts them after the two convs of every block and after LR_conv
(33 slots for nb=16); ``"all_but_last"`` after every conv except HR_conv1 (the FTN paper's setup).
"""

from __future__ import annotations

import functools

import flax.linen as nn

from ctl_jax.nets.layers import check_adafm_kernel, check_image_batch, modulate, pixel_shuffle

# Kaiming-normal x 0.1 (fan in), the reference code's init for these residual nets without norms.
scaled_kaiming = nn.initializers.variance_scaling(2.0 * 0.1 ** 2, "fan_in", "normal")
Conv3x3 = functools.partial(nn.Conv, kernel_size=(3, 3), padding=((1, 1), (1, 1)), kernel_init=scaled_kaiming)

PLACEMENTS = ("official", "all_but_last")


class ResBlock(nn.Module):
    """``h + [AdaFM](conv3x3(ReLU([AdaFM](conv3x3(h)))))``: (N, H, W, nf) -> (N, H, W, nf).

    The residual block of AdaFM-Net and of CFSNet's main branch. Build it with
    :func:`residual_block`: it then shares its parent's parameter scope, so its parameters are
    ``<name>_conv_a``, ``<name>_conv_b`` and ``adafm_<name>_a/_b`` in the parent (the layout of
    the flat network), while the block stays one named module call (``<name>``), which is where
    feature-space tuners (CFSNet, Dynamic-Net) mix features.
    """

    features: int
    prefix: str
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, h):
        k, p = self.adafm_kernel, self.prefix
        r = modulate(Conv3x3(self.features, name=f"{p}_conv_a")(h), k, f"{p}_a")
        r = modulate(Conv3x3(self.features, name=f"{p}_conv_b")(nn.relu(r)), k, f"{p}_b")
        return h + r


def residual_block(parent: nn.Module, name: str, features: int, adafm_kernel: int | None) -> ResBlock:
    """A :class:`ResBlock` called ``name`` whose parameters live flat in ``parent``'s scope
    (call from inside ``parent``'s compact ``__call__``)."""
    block = ResBlock(features, name, adafm_kernel, name=name)
    nn.share_scope(parent, block)
    return block


class AdaFMNet(nn.Module):
    """AdaFM-Net; see the module docstring. Defaults are the paper's nb=16, nf=64."""

    channels: int = 3
    features: int = 64
    blocks: int = 16
    adafm_kernel: int | None = None
    adafm_placement: str = "official"
    upscale: int = 1
    residual: bool = False

    @nn.compact
    def __call__(self, x):
        if self.upscale not in (1, 2, 4):
            raise ValueError(f"AdaFMNet upscale must be 1, 2 or 4; got {self.upscale}")
        check_image_batch(x, self.channels, "AdaFMNet", multiple_of=2 if self.upscale == 1 else 1)
        check_adafm_kernel(self.adafm_kernel)
        if self.adafm_placement not in PLACEMENTS:
            raise ValueError(f"adafm_placement must be one of {PLACEMENTS}; got {self.adafm_placement!r}")
        every = self.adafm_placement == "all_but_last"
        k, nf = self.adafm_kernel, self.features
        optional = lambda h, name: modulate(h, k if every else None, name)

        stride = 2 if self.upscale == 1 else 1
        fea = optional(Conv3x3(nf, strides=(stride, stride), name="fea_conv")(x), "fea")
        h = fea
        for i in range(self.blocks):
            h = residual_block(self, f"block_{i}", nf, k)(h)
        h = modulate(Conv3x3(nf, name="lr_conv")(h), k, "lr") + fea
        for j in range(max(1, self.upscale.bit_length() - 1)):  # x2 per stage: 1 stage for s = 1, 2; 2 for 4
            suffix = "" if j == 0 else f"_{j}"
            h = optional(Conv3x3(4 * nf, name=f"up_conv{suffix}")(h), f"up{suffix}")
            h = nn.relu(pixel_shuffle(h, 2))
        h = nn.relu(optional(Conv3x3(nf, name="hr_conv0")(h), "hr0"))
        out = Conv3x3(self.channels, name="hr_conv1")(h)
        if self.residual:  # a global input skip (not in the paper): the net predicts output - input
            if self.upscale != 1:
                raise ValueError("AdaFMNet residual=True needs upscale=1 (the input and output sizes must match)")
            out = out + x
        return out


VARIANTS = {
    "paper": dict(blocks=16, features=64),   # 1.41 M parameters (RGB)
    "small": dict(blocks=8, features=32),    # CPU experiments
    "tiny": dict(blocks=2, features=16),     # tests and the bundled demo
}


def adafm_net(variant: str = "paper", **overrides) -> AdaFMNet:
    """AdaFM-Net from the ``VARIANTS`` table, with keyword overrides (channels, adafm_kernel, ...)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown AdaFM-Net variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return AdaFMNet(**{**VARIANTS[variant], **overrides})
