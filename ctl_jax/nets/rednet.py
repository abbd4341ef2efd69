"""RED-Net: a symmetric convolution / deconvolution denoiser with symmetric skip connections.

Mao, Shen and Yang, "Image Restoration Using Very Deep Convolutional Encoder-Decoder Networks with
Symmetric Skip Connections" (NIPS 2016), the network the seed document 003 (its denoising part,
after Zhao's 10-layer model) describes. NHWC, C channels (1 grey or 3 RGB), L layers (L even),
n = L / 2, F features, every layer 3x3, stride 1, 'SAME' padding, with bias.

Encoder (``conv_0 .. conv_{n-1}``), feature levels e_0 .. e_n::

    e_0 = x                                               (N, H, W, C)
    e_{i+1} = ReLU(conv_i(g_i * e_i))                     (N, H, W, F),  i = 0 .. n-1

Decoder (``deconv_0 .. deconv_{n-1}``, 3x3 transposed convs; ``deconv_j`` mirrors ``conv_{n-1-j}``
and brings level n-j back to level l = n-j-1)::

    d_n = e_n
    d_l = ReLU(deconv_{n-1-l}(d_{l+1}) + s_l * e_l)       l in S: a symmetric skip, sum then ReLU
    d_l = ReLU(deconv_{n-1-l}(d_{l+1}))                   other l = 1 .. n-1
    y   = deconv_{n-1}(d_1) [+ x]                         (N, H, W, C), the last deconv F -> C

S, the skip levels, are the levels 1 <= l < n with l % skip_every == 0: a skip every
``skip_every`` layers from the output of conv_{l-1} to the output of its mirror deconv_{n-l}
(the paper uses 2: RED-Net 30 has 7 of them). ``residual`` adds the input image to the output
(the skip at level 0: the network learns the correction y - x, as the authors' released model
does); the image-level sum has no ReLU, so the output is not clipped.

Gating (the seed's Zhao model, ``X_i = Conv(delta X_{i-1})``, ``X'_i = Deconv(X'_{i-1} + (1 -
delta) X_i)``): with ``gate`` = delta set, a skipped feature e_l (l in S) is split between the
two paths, g_l = delta into the encoder and s_l = 1 - delta into the skip; elsewhere g = s = 1.
``gate=None`` (the default, the paper's plain sum) is g = s = 1 everywhere.

With ``adafm_kernel`` set (1, 3, 5 or 7), an AdaFM slot sits right after every conv and every
deconv but the last (before the skip sum and the ReLU): ``adafm_conv_<i>``, ``adafm_deconv_<j>``,
L - 1 slots, zero-initialised, so a fresh slotted network computes what the slot-free one does.
Every parameterised layer is a ``nn.Conv`` or ``nn.ConvTranspose`` (linear in its parameters), so
FTN transitions all L kernels (rank-4 ``kernel`` leaves, the transposed ones included) and
per-pixel control is exact.

Input: (N, H, W, C) float, any H and W (odd included). Output: (N, H, W, C).
"""

from __future__ import annotations

import flax.linen as nn

from ctl_jax.nets.layers import check_adafm_kernel, check_image_batch, modulate

# layers L (n = L/2 convs + n deconvs), features F, skip_every, residual (the input skip).
VARIANTS = {
    "red30": dict(layers=30, features=64, skip_every=2, residual=True),  # RED-Net 30, the paper's deepest
    "red20": dict(layers=20, features=64, skip_every=2, residual=True),  # RED-Net 20
    "red10": dict(layers=10, features=64, skip_every=2, residual=True),  # RED-Net 10
    # the seed's model (Zhao): 5 convs + 5 deconvs, 4 symmetric connections (every layer), no input
    # skip; the seed gives no width (64 here) and no delta (set ``gate`` to use one)
    "seed10": dict(layers=10, features=64, skip_every=1, residual=False),
    "small": dict(layers=10, features=32, skip_every=2, residual=True),  # CPU experiments
    "tiny": dict(layers=6, features=8, skip_every=2, residual=True),     # tests and smoke runs
}


def skip_levels(layers: int, skip_every: int) -> tuple[int, ...]:
    """The feature levels l (1 <= l < layers / 2) with a symmetric skip: conv_{l-1}'s output is added
    to deconv_{layers/2 - l}'s output. ``skip_every`` 0 (or less): none."""
    n = layers // 2
    return tuple(l for l in range(1, n) if skip_every > 0 and l % skip_every == 0)


class RedNet(nn.Module):
    """RED-Net; see the module docstring for the layout and the equations."""

    channels: int = 1
    layers: int = 30
    features: int = 64
    skip_every: int = 2
    residual: bool = True
    gate: float | None = None
    adafm_kernel: int | None = None

    @nn.compact
    def __call__(self, x):
        check_image_batch(x, self.channels, "RedNet")
        check_adafm_kernel(self.adafm_kernel)
        if self.layers < 2 or self.layers % 2:
            raise ValueError(f"RedNet needs an even number of layers >= 2 (n convs + n deconvs); got {self.layers}")
        if self.gate is not None and not 0.0 <= self.gate <= 1.0:
            raise ValueError(f"RedNet gate (delta) must be in [0, 1] or None; got {self.gate}")
        n, k = self.layers // 2, self.adafm_kernel
        skips = set(skip_levels(self.layers, self.skip_every))
        into_encoder = 1.0 if self.gate is None else self.gate
        into_skip = 1.0 if self.gate is None else 1.0 - self.gate

        h, saved = x, {}
        for i in range(n):  # conv_i: level i -> level i + 1
            if i in skips:
                saved[i] = h
                if into_encoder != 1.0:
                    h = into_encoder * h
            h = nn.Conv(self.features, (3, 3), padding="SAME", name=f"conv_{i}")(h)
            h = nn.relu(modulate(h, k, f"conv_{i}"))
        for j in range(n - 1):  # deconv_j: level n - j -> level l = n - j - 1 >= 1
            level = n - j - 1
            h = nn.ConvTranspose(self.features, (3, 3), padding="SAME", name=f"deconv_{j}")(h)
            h = modulate(h, k, f"deconv_{j}")
            if level in skips:
                h = h + (saved[level] if into_skip == 1.0 else into_skip * saved[level])
            h = nn.relu(h)
        out = nn.ConvTranspose(self.channels, (3, 3), padding="SAME", name=f"deconv_{n - 1}")(h)
        return out + x if self.residual else out


def rednet(variant: str | None = None, **overrides) -> RedNet:
    """A RED-Net of the ``VARIANTS`` table (None: "red30") with keyword overrides (channels,
    adafm_kernel, gate, residual, ...)."""
    variant = variant or "red30"
    if variant not in VARIANTS:
        raise ValueError(f"unknown RED-Net variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return RedNet(**{**VARIANTS[variant], **overrides})
