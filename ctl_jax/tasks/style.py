"""Feed-forward style transfer as a task (DESIGN.md principle 10): control 0 is style A, 1 style B.

A network maps a content image to its stylised version (Johnson et al., ECCV 2016). Its loss on a
batch of content crops x at controls c (N,) is, with the loss network's activations phi_l:

    L = w_content * content(phi(pred), phi(x))
        + w_style(c) * sum_l mean((G_l(pred) - G_l(c))^2)
        + w_tv * tv(pred),

    G_l(c) = (1 - c) G_l(style A) + c G_l(style B),   w_style(c) = (1 - c) w_A + c w_B

(``ctl_jax.losses.perceptual`` defines content, Gram and tv). Stage 1 trains at c = 0 (style A at
weight w_A), stage 2 at c = 1 (style B at w_B), one-stage methods over c in [0, 1]. Two uses:

- A -> B: two style images (FTN paper Fig. 3; Dynamic-Net's style transfer);
- objective strength (Dynamic-Net's own experiment): the same style image with a weak w_A and a
  strong w_B.

The batch's input and target are both the content crop; there is no degradation and no PSNR: the
report (``ctl_jax.eval.style``) measures style and content losses across alpha. Levels are the
control itself (0 = A, 1 = B). Style images are read in RGB (grey ones are repeated to three
channels, an alpha channel is dropped) and resized so their shorter side is ``style_size``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.losses.perceptual import content_loss, make_loss_network, style_grams, style_loss, tv_loss
from ctl_jax.tasks.base import Batch, LevelIsControl, check_target


@functools.lru_cache(maxsize=4)
def cached_loss_network(spec: str):
    """One LossNetwork per spec per process (VGG weights are read once)."""
    return make_loss_network(spec)


def read_style_image(path: str, size: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1], the shorter side resized to ``size`` (antialiased).

    path: an image file, or "bundled:NAME" for a picture shipped with scikit-image (``coffee``,
    ``astronaut``, ... : tests and the smoke preset need no download)."""
    from PIL import Image

    from ctl_jax.data.images import open_image

    if str(path).startswith("bundled:"):
        import skimage.data

        name = str(path).partition(":")[2]
        if not callable(getattr(skimage.data, name, None)):
            raise ValueError(f"no bundled picture {name!r}; try coffee, astronaut, chelsea, rocket, ...")
        image = Image.fromarray(np.asarray(getattr(skimage.data, name)()))
    else:
        image = open_image(path)
    if image.mode in ("LA", "P"):
        image = image.convert("RGBA")  # so that the palette's or grey's transparency is dropped, not applied
    image = image.convert("RGB")
    scale = size / min(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.LANCZOS)
    return np.asarray(image, np.float32) / 255.0


@functools.lru_cache(maxsize=8)
def cached_style_grams(loss_net: str, path: str, size: int, layers: tuple) -> dict:
    with jax.ensure_compile_time_eval():  # concrete even when first asked for inside a traced loss
        return style_grams(cached_loss_network(loss_net), read_style_image(path, size), layers)


@dataclasses.dataclass(frozen=True)
class StyleTransfer(LevelIsControl):
    """style_a / style_b: image files (the same file for the objective-strength control);
    style_weight_a / _b: w_A, w_B; loss_net: ``make_loss_network`` spec ("random", "vgg19:PATH");
    content_layers / style_layers: default the loss network's."""

    style_a: str
    style_b: str
    style_weight_a: float = 1e4
    style_weight_b: float = 1e4
    content_weight: float = 1.0
    tv_weight: float = 1e-3
    loss_net: str = "random"
    style_size: int = 256
    content_layers: tuple = ()
    style_layers: tuple = ()
    name: str = "style"
    metrics = ("content", "style_a", "style_b")
    loss = (("perceptual", 1.0),)
    on_device = True
    ENDPOINT_NAMES = ("style A", "style B")

    def __post_init__(self):
        net = cached_loss_network(self.loss_net)
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("content_layers", tuple(self.content_layers) or net.content_layers)
        set_("style_layers", tuple(self.style_layers) or net.style_layers)
        for name in (*self.content_layers, *self.style_layers):
            if name not in net.layers:
                raise ValueError(f"the loss network {self.loss_net!r} has no layer {name!r}; its layers: {list(net.layers)}")
        if self.style_a == self.style_b and self.style_weight_a == self.style_weight_b:
            raise ValueError("style A and style B are the same image at the same weight: nothing to control; "
                             "give two styles, or one style with style_weight_a != style_weight_b")

    # -- what the loss sees --------------------------------------------------------------------

    @property
    def loss_network(self):
        return cached_loss_network(self.loss_net)

    def grams(self, which: str) -> dict:
        """{layer: (1, C, C)} Gram targets of style "a" or "b"."""
        path = self.style_a if which == "a" else self.style_b
        return cached_style_grams(self.loss_net, path, self.style_size, self.style_layers)

    def _features(self, pred, content) -> tuple[dict, dict]:
        """The loss network's activations of pred (content and style layers) and of content (content layers)."""
        layers = tuple(dict.fromkeys(self.content_layers + self.style_layers))
        return self.loss_network.features(pred, layers), self.loss_network.features(content, self.content_layers)

    def loss_terms(self, pred, content, control) -> dict:
        """{"content", "style", "tv"} unweighted terms per sample: pred, content (N, H, W, 3),
        control (N,) or (N, 1); "style" is against the Gram mix of each sample's control."""
        feats, content_feats = self._features(pred, content)
        c = jnp.reshape(control, (-1,))[:, None, None]
        ga, gb = self.grams("a"), self.grams("b")
        targets = {l: (1 - c) * ga[l] + c * gb[l] for l in self.style_layers}
        return {"content": content_loss(feats, content_feats, self.content_layers, per_sample=True),
                "style": style_loss(feats, targets, self.style_layers, per_sample=True),
                "tv": tv_loss(pred, per_sample=True)}

    def style_distances(self, pred, content) -> dict:
        """{"content", "style_a", "style_b"} (N,): the content loss and the style losses against
        style A and style B alone, from one pass of the loss network."""
        feats, content_feats = self._features(pred, content)
        return {"content": content_loss(feats, content_feats, self.content_layers, per_sample=True),
                "style_a": style_loss(feats, self.grams("a"), self.style_layers, per_sample=True),
                "style_b": style_loss(feats, self.grams("b"), self.style_layers, per_sample=True)}

    def batch_loss(self, pred, x, target, control):
        """The training loss of a batch (the module docstring's L, averaged over the batch)."""
        del target  # the content crop is the input itself
        terms = self.loss_terms(pred, x, control)
        c = jnp.reshape(control, (-1,))
        w_style = (1 - c) * self.style_weight_a + c * self.style_weight_b
        return jnp.mean(self.content_weight * terms["content"] + w_style * terms["style"]
                        + self.tv_weight * terms["tv"])

    @property
    def level_a_signature(self) -> tuple:
        """What a base trained at control 0 depends on (a tuned run checks its base against it)."""
        return (self.style_a, self.style_weight_a, self.content_weight, self.tv_weight, self.loss_net,
                self.style_size, self.content_layers, self.style_layers)

    # -- levels and control (the level is the control) -----------------------------------------

    def input_multiple(self, levels) -> int:
        return 4

    # -- training batches ----------------------------------------------------------------------

    def step_levels(self, seed: int, step: int, n: int, target: str) -> np.ndarray:
        check_target(target)
        if target != "range":
            return np.full((n, 1), 0.0 if target == "a" else 1.0, np.float32)
        return np.random.default_rng([seed, step, 0x5717]).uniform(0, 1, (n, 1)).astype(np.float32)

    def host_arrays(self, sampler, step: int, target: str, seed: int = 0) -> tuple:
        clean = np.asarray(sampler.batch(step), np.float32)
        if clean.shape[-1] != 3:
            raise ValueError(f"style transfer trains on RGB content crops; the sampler gave {clean.shape[-1]} channels")
        return clean, self.step_levels(seed, step, clean.shape[0], target)

    def device_batch(self, key, arrays, target: str) -> Batch:
        del key
        clean, levels = arrays
        return Batch(clean, clean, jnp.asarray(levels, jnp.float32))

    def input_shape(self, patch_size: int, channels: int, target: str = "a") -> tuple:
        return (1, patch_size, patch_size, channels)

    def eval_input(self, clean, levels, *, seed: int = 0, index: int = 0):
        """The network's input for one content image: the image itself."""
        return jnp.asarray(clean, jnp.float32)

    def to_dict(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}
        fields.update(content_layers=list(self.content_layers), style_layers=list(self.style_layers))
        return {"kind": "style", **fields}
