"""Neural style transfer by image optimisation (Gatys, Ecker and Bethge, "Image style transfer using
convolutional neural networks", CVPR 2016): the image itself is the trainable tree, fitted to the
content features of one image and the Gram matrices of one or several style images.

Objective (``x`` the image, features and Gram matrices from a ``LossNetwork``,
``ctl_jax.losses.perceptual``):

    total = (1 - alpha) * content_weight * C(x) + alpha * (style_weight * S(x) + tv_weight * TV(x))

- ``C``: the content loss at the network's content layers, each layer's mean squared feature error
  divided by the content features' variance there (over positions, averaged over channels): a
  relative error, about 1-1.5 between unrelated photos, whatever the network's scale;
- ``S``: the Gram style loss, per style layer ``mean((G_l(x) - T_l)^2) / mean(T_l^2)``, averaged
  over the layers. ``T_l = sum_i w_i G_l(style_i)`` is the **weighted mix of the styles' Gram
  matrices** (weights normalised to sum to 1): mixing styles mixes their feature statistics;
- ``TV``: anisotropic total variation of the pixels (``perceptual.tv_loss``), against the pixel
  noise that style matching adds (not normalised: pixels are already on the [0, 1] scale).

The normalisation by the targets makes the terms dimensionless (at the content image the style
term measured 0.5 for chicago vs candy and 2-2.5 for chicago vs starry_night, at 64-128 px), so one set of weights serves the random loss
network and VGG, whose activations are orders of magnitude apart. ``alpha`` in [0, 1] is the
control: 0 keeps the content (the objective is then minimal at the content image itself, which a
content initialisation returns), 1 synthesises the style's texture only (from the initial image).
TV is scaled by ``alpha`` with the style term, on purpose: it only exists to counter the style's
noise, and unscaled it would smooth the content at alpha 0 (measured: TV weight 0.3 moved the
alpha-0 result by 0.027 mean absolute, 7 grey levels, in 50 L-BFGS steps on a 64 px photo).

Default weights (``DEFAULT_*``): ``content_weight = 1``, ``style_weight = 3``, ``tv_weight = 0.6``,
measured on the random network with chicago + starry_night / candy at 64 and 128 px, 100-150
L-BFGS steps, alpha 0.5:

- style_weight 1 left a faint stylisation (colour tint) and, with little TV, filled smooth regions
  (sky) with per-pixel colour confetti: the content layer (relu3_1, after two poolings) does not see
  pixel-scale changes, so the optimiser matches the shallow layers' Gram statistics with noise
  there. Style weight 3 gives visible oriented strokes and the style's palette (blue/yellow for
  starry_night, red/yellow for candy) while the skyline stays readable; 10 (with TV 1, 64 px)
  laid large flat colour patches over it;
- TV (unscaled) 0.002-0.05 kept the confetti, 1 made flat axis-aligned blocks (anisotropic TV);
  0.3 at alpha 0.5, i.e. ``tv_weight = 0.6`` here, is the compromise: some confetti remains in flat
  regions with the random network (a trained VGG's smooth filters give structured strokes instead).

Artefacts seen with the random network at 160 px (chicago; starry_night, candy; alphas 0.25, 0.5,
0.75; 150 L-BFGS steps): the palette carries over clearly (blue/yellow/magenta, red/yellow) and the
skyline stays readable at every alpha; the texture is short oriented strokes and colour confetti in
flat regions rather than the painting's swirls. Because TV scales with alpha, the confetti is
densest at alpha 0.25-0.5, while alpha 0.75 shows fewer, larger blobs and TV's axis-aligned
blockiness. Candy adds a red frame along the image border (the network's zero padding makes the
border's features unlike the interior's).

Parameterisation: the image is ``x = sigmoid(z)`` with the logits ``z`` (1, H, W, 3) the trainable
tree, so every iterate lies in (0, 1) and the objective stays smooth (which L-BFGS's line search
needs: clipping in the loss would give flat directions and projected steps would break its curvature
pairs). Content initialisation starts at ``z = logit(clip(content, EPS, 1 - EPS))``, within half a
grey level of the content; noise initialisation draws ``z ~ N(0, 1)``.

Optimisers: L-BFGS (``optax.lbfgs`` with its zoom line search; the step size is the line search's,
``lr`` is ignored) and Adam (``optax.adam(lr)``; ``lr`` acts on the logits, so 0.05 moves a
mid-grey pixel by about 0.0125 per step). Steps run in a jitted ``lax.scan`` of ``progress_every``
steps, called from Python so a tqdm bar can report the loss; one compilation per (network, layers,
optimiser, chunk length), reused across alphas, weights and images of one size.
"""

from __future__ import annotations

import functools
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.losses import perceptual

DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 3.0
DEFAULT_TV_WEIGHT = 0.6
DEFAULT_ADAM_LR = 0.05
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
EPS = 0.5 / 255.0
MIN_SIDE = 16  # the loss networks pool 3-4 times before their deepest default layer


# -- inputs ---------------------------------------------------------------------------------------

def as_rgb(image, what: str = "the image", *, warn_grey: bool = False) -> np.ndarray:
    """A float image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) in [0, 1] -> float32 (H, W, 3).

    Grey is replicated into R, G and B (with a warning when ``warn_grey``); a fourth channel
    (alpha) is dropped with a warning. Raises ValueError for other shapes, integer arrays, NaN or
    infinite values, values outside [0, 1] and images smaller than MIN_SIDE pixels.
    """
    x = np.asarray(image)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what} must be a float image in [0, 1]; got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{what} must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or infinite values")
    from ctl_jax.data.images import check_unit_scale

    check_unit_scale(x, what)
    if min(x.shape[:2]) < MIN_SIDE:
        raise ValueError(f"{what} is {x.shape[0]}x{x.shape[1]}; the loss networks need at least "
                         f"{MIN_SIDE}x{MIN_SIDE} pixels")
    if x.shape[-1] == 4:
        warnings.warn(f"{what} has an alpha channel; it is dropped (RGB kept)", stacklevel=3)
        x = x[..., :3]
    if x.shape[-1] == 1:
        if warn_grey:
            warnings.warn(f"{what} is grey; it is replicated to RGB and the result takes its colours "
                          f"from the style", stacklevel=3)
        x = np.repeat(x, 3, axis=-1)
    return x.astype(np.float32)


def style_mix_weights(n_styles: int, style_weights=None) -> np.ndarray:
    """The styles' mixing weights, normalised to sum to 1 (default: equal). ValueError for a count
    that does not match the styles, negative or non-finite weights, or weights summing to 0."""
    if n_styles < 1:
        raise ValueError("give at least one style image")
    if style_weights is None:
        return np.full(n_styles, 1.0 / n_styles)
    w = np.asarray(style_weights, np.float64).ravel()
    if w.size != n_styles:
        raise ValueError(f"{w.size} style weight(s) for {n_styles} style image(s); give one per style")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"style weights must be finite, >= 0 and not all 0; got {w.tolist()}")
    return w / w.sum()


def _check_layers(net, layers, what):
    layers = tuple(layers)
    if not layers:
        raise ValueError(f"give at least one {what} layer")
    unknown = [l for l in layers if l not in net.layers]
    if unknown:
        raise ValueError(f"the {net.name} loss network has no {what} layer {unknown}; its layers are "
                         f"{', '.join(net.layers)}")
    return layers


# -- targets and objective -----------------------------------------------------------------------

def mixed_style_grams(net, styles: Sequence, weights, layers: Sequence[str]) -> dict:
    """{layer: (1, C, C)}: ``sum_i weights[i] * G_layer(styles[i])`` (styles (H_i, W_i, 3) in [0, 1],
    each at its own size; weights as given, not renormalised)."""
    mix = {}
    for w, style in zip(weights, styles):
        for layer, g in perceptual.style_grams(net, jnp.asarray(style), layers).items():
            mix[layer] = mix.get(layer, 0.0) + float(w) * g
    return mix


def make_targets(net, content, styles, weights, content_layers, style_layers) -> dict:
    """The fixed side of the objective: content features and mixed Gram targets with their scales."""
    feats = net.features(jnp.asarray(content)[None], content_layers)
    grams = mixed_style_grams(net, styles, weights, style_layers)
    tiny = jnp.float32(1e-12)
    return {"content": feats,
            "content_scale": {l: jnp.maximum(jnp.mean(jnp.var(f, axis=(1, 2))), tiny) for l, f in feats.items()},
            "grams": grams,
            "gram_scale": {l: jnp.maximum(jnp.mean(jnp.square(g)), tiny) for l, g in grams.items()}}


def loss_terms(x, targets, net, content_layers, style_layers):
    """(content, style, tv) of images x (1, H, W, 3) in [0, 1] (module docstring: normalised terms)."""
    feats = net.features(x, tuple(dict.fromkeys(content_layers + style_layers)))
    content = sum(perceptual.content_loss(feats, targets["content"], [l]) / targets["content_scale"][l]
                  for l in content_layers) / len(content_layers)
    style = sum(perceptual.style_loss(feats, targets["grams"], [l]) / targets["gram_scale"][l]
                for l in style_layers) / len(style_layers)
    return content, style, perceptual.tv_loss(x)


def _total(z, targets, coeffs, net, content_layers, style_layers):
    """coeffs: (alpha, content_weight, style_weight, tv_weight), traced (no recompilation)."""
    alpha, cw, sw, tvw = coeffs[0], coeffs[1], coeffs[2], coeffs[3]
    c, s, tv = loss_terms(jax.nn.sigmoid(z["logits"]), targets, net, content_layers, style_layers)
    return (1.0 - alpha) * cw * c + alpha * (sw * s + tvw * tv)


def _optimizer(spec):
    import optax

    name, lr = spec
    return optax.lbfgs() if name == "lbfgs" else optax.adam(lr)


@functools.partial(jax.jit, static_argnames=("net", "content_layers", "style_layers", "opt", "n"))
def _run_chunk(z, state, targets, coeffs, *, net, content_layers, style_layers, opt, n):
    """``n`` optimiser steps; returns (z, state, the loss before each step)."""
    from ctl_jax.classical.descent import scan_steps

    optimizer = _optimizer(opt)

    def value(params):
        return _total(params, targets, coeffs, net, content_layers, style_layers)

    return scan_steps(value, optimizer, z, state, n, lbfgs=opt[0] == "lbfgs")


@functools.partial(jax.jit, static_argnames=("net", "content_layers", "style_layers"))
def _value(z, targets, coeffs, *, net, content_layers, style_layers):
    return _total(z, targets, coeffs, net, content_layers, style_layers)


# -- the method -----------------------------------------------------------------------------------

def stylize(content, styles, *, style_weights=None, alpha: float = 0.5, loss_net=None, steps: int = 200,
            optimizer: str = "lbfgs", lr: float = DEFAULT_ADAM_LR, content_weight: float = DEFAULT_CONTENT_WEIGHT,
            style_weight: float = DEFAULT_STYLE_WEIGHT, tv_weight: float = DEFAULT_TV_WEIGHT,
            init: str = "content", seed: int = 0, content_layers: Sequence[str] | None = None,
            style_layers: Sequence[str] | None = None, progress: bool = False, progress_every: int = 10):
    """Optimise an image to carry ``content``'s features and the mixed Gram statistics of ``styles``.

    Args:
      content: float (H, W, 3) in [0, 1] (grey is replicated to RGB with a warning, a 4th channel
        dropped with a warning); the result has its size.
      styles: one style image or a list of them, float (H_i, W_i, 1|3|4) in [0, 1], any sizes (the
        Gram matrices do not depend on the size, the texture scale does). Grey styles are valid.
      style_weights: one weight >= 0 per style, normalised to sum to 1 (default: equal).
      alpha: the style/content balance in [0, 1] (module docstring).
      loss_net: a ``LossNetwork`` (default: ``make_loss_network("random")``).
      steps: optimiser steps (L-BFGS steps may each evaluate the loss several times in the line search).
      optimizer: "lbfgs" or "adam"; lr: Adam's learning rate on the logits (ignored by L-BFGS).
      content_weight, style_weight, tv_weight: the weights of the objective (module docstring).
      init: "content" (start from the content image) or "noise" (from ``seed``).
      content_layers, style_layers: default the network's own.
      progress: show a tqdm bar with the loss, updated every ``progress_every`` steps.

    Returns:
      (image, history): float32 (H, W, 3) in [0, 1], and the total loss before each step and after
      the last, float64 (steps + 1,).

    Raises:
      ValueError: bad images (shape, dtype, NaN, range, too small), no styles, weights not matching
        the styles, alpha outside [0, 1], negative weights, unknown optimizer, init or layers.
      FloatingPointError: the loss became NaN or infinite.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (0 content only, 1 style only); got {alpha}")
    for name, v in (("content_weight", content_weight), ("style_weight", style_weight), ("tv_weight", tv_weight)):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and >= 0; got {v}")
    if int(steps) < 0 or int(progress_every) < 1:
        raise ValueError(f"steps must be >= 0 and progress_every >= 1; got {steps}, {progress_every}")
    if optimizer == "adam" and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0; got {lr}")
    if isinstance(styles, (np.ndarray, jax.Array)):
        styles = [styles]
    styles = list(styles)
    if not styles:
        raise ValueError("give at least one style image")
    mix = style_mix_weights(len(styles), style_weights)
    content = as_rgb(content, "the content image", warn_grey=True)
    styles = [as_rgb(s, f"style image {i + 1}") for i, s in enumerate(styles)]
    if loss_net is None:
        loss_net = perceptual.make_loss_network("random")
    content_layers = _check_layers(loss_net, content_layers or loss_net.content_layers, "content")
    style_layers = _check_layers(loss_net, style_layers or loss_net.style_layers, "style")

    targets = make_targets(loss_net, content, styles, mix, content_layers, style_layers)
    coeffs = jnp.asarray([alpha, content_weight, style_weight, tv_weight], jnp.float32)
    if init == "content":
        x0 = np.clip(content, EPS, 1.0 - EPS)
        z = {"logits": jnp.asarray(np.log(x0 / (1.0 - x0)))[None]}
    else:
        z = {"logits": jax.random.normal(jax.random.key(seed), (1,) + content.shape, jnp.float32)}
    opt = (optimizer, float(lr) if optimizer == "adam" else 0.0)  # static: L-BFGS ignores lr
    state = _optimizer(opt).init(z)
    statics = dict(net=loss_net, content_layers=content_layers, style_layers=style_layers)

    bar = _progress_bar(steps, f"gatys {optimizer} alpha={float(alpha):g}") if progress else None
    history, done = [], 0
    try:
        while done < steps:
            n = min(int(progress_every), steps - done)
            z, state, values = _run_chunk(z, state, targets, coeffs, opt=opt, n=n, **statics)
            values = np.asarray(values, np.float64)
            history.append(values)
            done += n
            if not np.all(np.isfinite(values)):
                raise FloatingPointError(f"the style-transfer loss became {values[~np.isfinite(values)][0]} "
                                         f"by step {done}; try Adam with a lower lr or a smaller style weight")
            if bar is not None:
                bar.update(n)
                bar.set_postfix(loss=f"{values[-1]:.4g}")
    finally:
        if bar is not None:
            bar.close()
    final = float(_value(z, targets, coeffs, **statics))
    history = np.concatenate(history + [np.asarray([final])])
    image = np.asarray(jax.nn.sigmoid(z["logits"][0]), np.float32)
    return image, history


def sweep_alpha(content, style, alphas: Sequence[float], **kwargs) -> list:
    """``stylize`` at each alpha (same start, same settings; ``style`` one image or a list, the
    other keywords as ``stylize``'s): a list of float32 (H, W, 3) images in [0, 1]. The compiled
    step is shared across alphas."""
    alphas = [float(a) for a in alphas]
    if not alphas:
        raise ValueError("give at least one alpha")
    bad = [a for a in alphas if not 0.0 <= a <= 1.0]
    if bad:
        raise ValueError(f"alphas must lie in [0, 1]; got {bad}")
    if kwargs.get("loss_net") is None:  # one network (and so one compilation) for every alpha
        kwargs["loss_net"] = perceptual.make_loss_network("random")
    return [stylize(content, style, alpha=a, **kwargs)[0] for a in alphas]


def _progress_bar(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)
