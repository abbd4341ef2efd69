"""Deep Dream (Mordvintsev, Olah and Tyka, "Inceptionism: going deeper into neural networks", 2015):
gradient ascent on the image to amplify what one layer of a loss network responds to.

Objective: the **mean squared activation** of the chosen layer, ``mean(phi_l(x)^2)`` over positions
and channels (:func:`dream_objective`; its gradient is ``2 phi_l(x) dphi_l / dx / n``, the classic
"L2" objective, which amplifies whatever the layer already sees; the plain mean activation would
push every channel up alike).

Each step (:func:`_ascend`, a jitted ``lax.scan`` over the steps of one octave):

1. **jitter**: roll the image by a random shift ``(dy, dx)``, each uniform in ``[-jitter, jitter]``
   (at most half the octave's side), so the network's fixed grid (padding, pooling phase) does not
   imprint itself on the result; the image is rolled back after the step;
2. **normalised step**: ``x += strength * g / mean(|g|)`` with ``g`` the objective's gradient: the
   step moves a pixel by ``strength`` on average whatever the layer's scale (``strength`` is in
   pixel units of [0, 1]: the default 0.005 is about 1.3 grey levels per step);
3. clip to [0, 1].

**Octaves**: the image is processed at ``octaves`` scales, ``octave_scale`` apart, from the smallest
up. At each scale the input is the resized original plus the *detail* dreamed so far (resized with
``jax.image.resize``, linear); after the steps, the detail becomes the octave's result minus the
resized original. Patterns grown at a small scale so become large structures at full size. Scales
whose shorter side would fall below ``MIN_SIDE`` pixels are skipped (with a warning).

What to expect from the random loss network (no trained detectors): the squared activations grow
fastest with contrast and saturation, so the dream mostly deepens colours (skies towards cyan, shadows
towards dark red) with faint halos and fringes along edges, not the eyes and animals of a trained
network. At the defaults (strength 0.005, 10 steps x 4 octaves) a 192 px photo stays readable; 0.01
or 30 steps per octave saturate large regions to pure colours.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.classical.gatys import MIN_SIDE, _progress_bar, as_rgb
from ctl_jax.losses import perceptual


def check_layer(net, layer: str) -> str:
    """``layer`` if the loss network has it, else a ValueError listing the network's layers."""
    if layer not in net.layers:
        raise ValueError(f"the {net.name} loss network has no layer {layer!r}; valid layers: {', '.join(net.layers)}")
    return layer


def dream_objective(x: jax.Array, net, layer: str) -> jax.Array:
    """Mean squared activation of ``layer`` for images x (N, H, W, 3) in [0, 1]."""
    return jnp.mean(jnp.square(net.features(x, [layer])[layer]))


def octave_shapes(height: int, width: int, octaves: int, octave_scale: float) -> list:
    """(h, w) of each octave, smallest first, the last (height, width); scales whose shorter side
    would be under MIN_SIDE are left out."""
    shapes = []
    for i in range(octaves):
        factor = octave_scale ** (octaves - 1 - i)
        shape = (max(1, round(height / factor)), max(1, round(width / factor)))
        if min(shape) >= MIN_SIDE or i == octaves - 1:
            shapes.append(shape)
    return shapes


@functools.partial(jax.jit, static_argnames=("net", "layer", "steps"))
def _ascend(x, key, strength, jitter, *, net, layer, steps):
    """``steps`` jittered, normalised ascent steps on x (1, h, w, 3); returns (x, objective before each step)."""
    objective = functools.partial(dream_objective, net=net, layer=layer)

    def step(x, k):
        shift = jax.random.randint(k, (2,), -jitter, jitter + 1)
        rolled = jnp.roll(x, (shift[0], shift[1]), axis=(1, 2))
        value, g = jax.value_and_grad(objective)(rolled)
        rolled = jnp.clip(rolled + strength * g / (jnp.mean(jnp.abs(g)) + 1e-12), 0.0, 1.0)
        return jnp.roll(rolled, (-shift[0], -shift[1]), axis=(1, 2)), value

    return jax.lax.scan(step, x, jax.random.split(key, steps))


def dream(image, *, loss_net=None, layer: str | None = None, strength: float = 0.005, steps: int = 10,
          octaves: int = 4, octave_scale: float = 1.4, jitter: int = 32, seed: int = 0, progress: bool = False,
          history: bool = False):
    """Deep Dream on one image (module docstring).

    Args:
      image: float (H, W, 3) in [0, 1] (grey is replicated to RGB with a warning, a 4th channel
        dropped with a warning); at least MIN_SIDE pixels on each side.
      loss_net: a ``LossNetwork`` (default: ``make_loss_network("random")``).
      layer: the layer to amplify (default: the network's deepest style layer); an unknown name
        raises a ValueError listing the network's layers.
      strength: mean step per pixel, in [0, 1] units (> 0).
      steps: ascent steps per octave (>= 0).
      octaves: number of scales (>= 1), ``octave_scale`` (> 1) apart.
      jitter: maximum random shift in pixels (>= 0; limited to half the octave's side).
      seed: seed of the shifts.
      progress: a tqdm bar over all steps, updated once per octave.
      history: also return the objective before each step, one array per octave.

    Returns:
      float32 (H, W, 3) in [0, 1]; with ``history``, ``(image, [per-octave objective arrays])``.
    """
    if loss_net is None:
        loss_net = perceptual.make_loss_network("random")
    layer = check_layer(loss_net, layer if layer is not None else loss_net.style_layers[-1])
    for name, v, ok in (("strength", strength, np.isfinite(strength) and strength > 0),
                        ("octave_scale", octave_scale, np.isfinite(octave_scale) and octave_scale > 1),
                        ("steps", steps, int(steps) == steps and steps >= 0),
                        ("octaves", octaves, int(octaves) == octaves and octaves >= 1),
                        ("jitter", jitter, int(jitter) == jitter and jitter >= 0)):
        if not ok:
            rule = {"strength": "> 0", "octave_scale": "> 1"}.get(name, ">= 1" if name == "octaves" else ">= 0")
            raise ValueError(f"{name} must be {'an integer ' if name in ('steps', 'octaves', 'jitter') else ''}{rule}; got {v}")
    base = jnp.asarray(as_rgb(image, "the image", warn_grey=True))
    height, width = base.shape[:2]
    shapes = octave_shapes(height, width, int(octaves), float(octave_scale))
    if len(shapes) < octaves:
        warnings.warn(f"{octaves - len(shapes)} of {octaves} octaves skipped: at scale 1/{octave_scale}^k a "
                      f"{height}x{width} image falls below {MIN_SIDE} px", stacklevel=2)
    bar = _progress_bar(int(steps) * len(shapes), f"dream {layer}") if progress else None
    key = jax.random.key(seed)
    detail = jnp.zeros(shapes[0] + (3,), jnp.float32)
    values = []
    try:
        for shape in shapes:
            key, sub = jax.random.split(key)
            small = jax.image.resize(base, shape + (3,), "linear", antialias=True)
            detail = jax.image.resize(detail, shape + (3,), "linear")
            x = jnp.clip(small + detail, 0.0, 1.0)[None]
            jit = min(int(jitter), min(shape) // 2)
            if steps:
                x, v = _ascend(x, sub, jnp.float32(strength), jnp.int32(jit), net=loss_net, layer=layer,
                               steps=int(steps))
                values.append(np.asarray(v, np.float64))
            detail = x[0] - small
            if bar is not None:
                bar.update(int(steps))
    finally:
        if bar is not None:
            bar.close()
    out = np.asarray(x[0], np.float32)  # the last octave is the full size
    return (out, values) if history else out
