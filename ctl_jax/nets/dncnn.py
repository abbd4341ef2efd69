"""DnCNN denoiser (Zhang et al., "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for
Image Denoising", IEEE TIP 2017), in the KAIR layout with batch norm merged into the convolutions.
"""

from __future__ import annotations

import flax.linen as nn

from ctl_jax.nets.layers import check_adafm_kernel, check_image_batch, modulate

# Explicit PyTorch-style padding of 1 pixel on each side (same result as "SAME" for 3x3, but
# stated so that the correspondence with ``nn.Conv2d(..., padding=1)`` is obvious).
_PAD = ((1, 1), (1, 1))

# depth x features: "s" is DnCNN-S/-B and CDnCNN (the default), "3" the blind three-task DnCNN-3.
VARIANTS = {"s": dict(depth=17, features=64), "3": dict(depth=20, features=64),
            "small": dict(depth=8, features=32), "tiny": dict(depth=4, features=8)}


class DnCNN(nn.Module):
    """DnCNN with residual learning: ``y = x - net(x)``, where ``net`` predicts the noise.

    Layout (``depth`` convolutions, all 3x3 with bias, stride 1, zero padding 1)::

        conv_0: channels -> features, ReLU
        conv_1 .. conv_{depth-2}: features -> features, ReLU
        conv_{depth-1}: features -> channels   (no activation)

    Batch norm of the original paper is folded into the conv weights, as in the KAIR model zoo,
    so ``conv_i`` corresponds to the PyTorch key ``model.{2*i}``.

    With ``adafm_kernel`` set (1, 3, 5 or 7), an AdaFM slot ``adafm_<i>`` sits right after every
    conv except the last (before its ReLU); the slots are zero-initialised, so a fresh network
    with slots computes exactly what the slot-free one does with the same conv parameters.

    Input: (N, H, W, channels) float, clean range [0, 1] plus noise (not clipped).
    Output: (N, H, W, channels), the denoised estimate (not clipped).
    """

    channels: int = 1
    depth: int = 17
    features: int = 64
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, x):
        check_image_batch(x, self.channels, "DnCNN")
        check_adafm_kernel(self.adafm_kernel)
        if self.depth < 2:
            raise ValueError(f"DnCNN needs depth >= 2 (first and last conv); got {self.depth}")
        h = x
        for i in range(self.depth - 1):
            h = nn.Conv(self.features, (3, 3), padding=_PAD, name=f"conv_{i}")(h)
            h = modulate(h, self.adafm_kernel, name=str(i))
            h = nn.relu(h)
        noise = nn.Conv(self.channels, (3, 3), padding=_PAD, name=f"conv_{self.depth - 1}")(h)
        return x - noise


def dncnn(variant: str | None = None, channels: int = 1, adafm_kernel: int | None = None) -> DnCNN:
    """A DnCNN of the ``VARIANTS`` table (None: "s", the paper's 17 layers of 64 features)."""
    variant = variant or "s"
    if variant not in VARIANTS:
        raise ValueError(f"unknown DnCNN variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return DnCNN(channels=channels, adafm_kernel=adafm_kernel, **VARIANTS[variant])


def dncnn_variant(module: DnCNN) -> str:
    """The ``VARIANTS`` name of a DnCNN's depth and width (ValueError if it has none)."""
    for name, cfg in VARIANTS.items():
        if (module.depth, module.features) == (cfg["depth"], cfg["features"]):
            return name
    raise ValueError(f"a DnCNN of depth {module.depth} and {module.features} features is not in the variants "
                     f"table {VARIANTS}")


def feature_tuner_specs(variant: str | None = None) -> list[dict]:
    """CFSNet and Dynamic-Net as a config names them (``make_tuner`` specs) for a DnCNN ``variant``.

    DnCNN has no residual blocks, so their mixing points are convs: CFSNet couples a tuning block
    into every middle conv (``conv_1`` .. ``conv_{depth-2}``, its main branch being all of them);
    Dynamic-Net puts its three tuning blocks after the convs at a quarter, half and three quarters
    of the depth (its paper's three pre-defined places).
    """
    depth = dncnn(variant).depth
    last = depth - 2  # the middle convs are conv_1 .. conv_{last}, as fnmatch patterns by decimal digit
    middle = [f"conv_[1-{min(last, 9)}]"] + [f"conv_{tens}[0-{min(9, last - 10 * tens)}]"
                                            for tens in range(1, last // 10 + 1)]
    places = [f"conv_{depth * k // 4}" for k in (1, 2, 3)]
    return [{"class": "CFSNet", "name": "cfsnet", "layers": middle},
            {"class": "DynamicNet", "name": "dynamic-net", "layers": places}]
