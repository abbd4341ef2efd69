"""Loss networks and the perceptual losses of style transfer (Gatys et al., CVPR 2016; Johnson et
al., ECCV 2016): content, Gram-matrix style and total variation.

A loss network maps RGB images (N, H, W, 3) in [0, 1] to a dict of named activations
``{layer: (N, h, w, C)}``, named as in VGG (``relu1_1``, ``relu2_1``, ...; the deepest one asked for
ends the forward pass). :func:`make_loss_network` builds one from a spec:

- ``"random"``: the offline default, needing no download: a VGG-shaped pyramid (four stages of two
  3x3 convs + ReLU, average pooling between, 32/64/128/256 filters) with fixed random weights
  (He-normal from a seed). Random-weight networks give usable texture statistics (Ustyuzhaninov
  et al., "What does it take to generate natural textures?", ICLR 2017; He et al., "A powerful
  generative model using random weights for the deep image representation", NeurIPS 2016), but
  weaker style transfer than an ImageNet-trained VGG: strokes and colours carry over, object-level
  structure of the style does not.
- ``"vgg16:PATH"`` / ``"vgg19:PATH"``: VGG with the weights in PATH (``ctl_jax.nets.vgg``).

Losses (``feats`` are loss-network outputs; all means, so they do not grow with the image):

- content: mean over the content layers of ``mean((phi_l(pred) - phi_l(content))^2)``;
- Gram: ``G_l = F_l^T F_l / (h w C)`` with F_l the (h w, C) activations (Johnson et al.'s
  normalisation), (N, C, C);
- style: sum over the style layers of ``mean((G_l(pred) - G_l(style))^2)`` (Frobenius, averaged
  over the C^2 entries and the batch);
- total variation: mean absolute difference of vertical and horizontal neighbours (anisotropic).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# ImageNet statistics (torchvision's convention): every loss network normalises its input with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RANDOM_WIDTHS = (32, 64, 128, 256)
RANDOM_LAYERS = tuple(f"relu{s + 1}_{c + 1}" for s in range(len(RANDOM_WIDTHS)) for c in range(2))


def imagenet_normalise(x: jax.Array) -> jax.Array:
    """(N, H, W, 3) RGB in [0, 1] -> (x - mean) / std per channel."""
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"a loss network takes RGB batches (N, H, W, 3); got shape {x.shape}")
    return (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)


class RandomPyramid(nn.Module):
    """The offline loss network: stages of two 3x3 conv + ReLU, 2x2 average pooling between.

    Returns ``{relu{s}_{c}: (N, H / 2^(s-1), W / 2^(s-1), widths[s-1])}`` up to ``last`` (inclusive).
    """

    widths: Sequence[int] = RANDOM_WIDTHS
    last: str = RANDOM_LAYERS[-1]

    @nn.compact
    def __call__(self, x):
        h = imagenet_normalise(x)
        out = {}
        for s, width in enumerate(self.widths):
            if s:
                h = nn.avg_pool(h, (2, 2), (2, 2))
            for c in range(2):
                name = f"relu{s + 1}_{c + 1}"
                h = nn.relu(nn.Conv(width, (3, 3), padding="SAME", kernel_init=nn.initializers.he_normal(),
                                    name=f"conv{s + 1}_{c + 1}")(h))
                out[name] = h
                if name == self.last:
                    return out
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class LossNetwork:
    """A frozen feature extractor and its default layers (hash and equality by identity, so a task
    holding one can key a compile cache).

    module.apply({"params": params}, x) -> {layer: (N, h, w, C)}; layers: every name it can return,
    shallow to deep; content_layers / style_layers: the defaults of the literature for it.
    """

    name: str
    module: nn.Module
    params: Any
    layers: tuple
    content_layers: tuple
    style_layers: tuple

    def features(self, x: jax.Array, layers: Sequence[str] | None = None) -> dict:
        """{layer: activations} of RGB images x (N, H, W, 3) in [0, 1] for ``layers`` (default: all)."""
        wanted = tuple(layers) if layers is not None else self.layers
        unknown = [name for name in wanted if name not in self.layers]
        if unknown:
            raise ValueError(f"{self.name} has no layer {unknown}; its layers are {list(self.layers)}")
        last = max(wanted, key=self.layers.index)
        out = self.module.clone(last=last).apply({"params": self.params}, x)
        return {name: out[name] for name in wanted}


def random_loss_network(seed: int = 0) -> LossNetwork:
    """The offline default: :class:`RandomPyramid` with weights drawn from ``seed``."""
    module = RandomPyramid()
    params = module.init(jax.random.key(seed), jnp.zeros((1, 16, 16, 3), jnp.float32))["params"]
    return LossNetwork("random", module, params, RANDOM_LAYERS, content_layers=("relu3_1",),
                       style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1"))


def make_loss_network(spec: str = "random") -> LossNetwork:
    """"random", "random:SEED", "vgg16:PATH" or "vgg19:PATH" (a torchvision .pth or a Keras .h5)."""
    kind, _, arg = str(spec).partition(":")
    if kind == "random":
        return random_loss_network(int(arg) if arg else 0)
    if kind in ("vgg16", "vgg19"):
        if not arg:
            raise ValueError(f"{kind} needs its weights: '{kind}:PATH' (a torchvision .pth or Keras .h5 file)")
        from ctl_jax.nets.vgg import vgg_loss_network

        return vgg_loss_network(kind, arg)
    raise ValueError(f"unknown loss network {spec!r}; choose 'random', 'random:SEED', 'vgg16:PATH' or 'vgg19:PATH'")


# -- the losses ----------------------------------------------------------------------------------

def gram_matrix(f: jax.Array) -> jax.Array:
    """(N, h, w, C) activations -> (N, C, C) Gram matrices F^T F / (h w C)."""
    n, h, w, c = f.shape
    flat = f.reshape(n, h * w, c)
    return jnp.einsum("npc,npd->ncd", flat, flat) / (h * w * c)


def _per_sample_mean(x: jax.Array) -> jax.Array:
    """(N, ...) -> (N,): the mean of each sample's entries."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def _batch(per_sample_values: jax.Array, per_sample: bool) -> jax.Array:
    return per_sample_values if per_sample else jnp.mean(per_sample_values)


def content_loss(pred_feats: Mapping[str, jax.Array], content_feats: Mapping[str, jax.Array],
                 layers: Sequence[str], per_sample: bool = False) -> jax.Array:
    """Mean over ``layers`` of the mean squared feature difference (per sample: (N,))."""
    values = sum(_per_sample_mean(jnp.square(pred_feats[l] - content_feats[l])) for l in layers) / len(layers)
    return _batch(values, per_sample)


def style_loss(pred_feats: Mapping[str, jax.Array], style_grams: Mapping[str, jax.Array],
               layers: Sequence[str], per_sample: bool = False) -> jax.Array:
    """Sum over ``layers`` of the mean squared Gram difference; style_grams: (N or 1, C, C) per layer
    (per sample: (N,))."""
    values = sum(_per_sample_mean(jnp.square(gram_matrix(pred_feats[l]) - style_grams[l])) for l in layers)
    return _batch(values, per_sample)


def tv_loss(x: jax.Array, per_sample: bool = False) -> jax.Array:
    """Anisotropic total variation of (N, H, W, C) images: mean |vertical| + mean |horizontal|
    difference (per sample: (N,))."""
    values = _per_sample_mean(jnp.abs(x[:, 1:] - x[:, :-1])) + _per_sample_mean(jnp.abs(x[:, :, 1:] - x[:, :, :-1]))
    return _batch(values, per_sample)


def style_grams(net: LossNetwork, style: jax.Array, layers: Sequence[str] | None = None) -> dict:
    """{layer: (1, C, C)} Gram targets of one style image (H, W, 3) or (1, H, W, 3) in [0, 1]."""
    style = jnp.asarray(style, jnp.float32)
    style = style[None] if style.ndim == 3 else style
    feats = net.features(style, layers or net.style_layers)
    return {name: gram_matrix(f) for name, f in feats.items()}
