"""AdaIN: arbitrary style transfer in real time (Huang and Belongie, ICCV 2017), seed document ``000_*``.

An encoder f (a frozen loss network, :mod:`ctl_jax.losses.perceptual`) maps the content image c and
the style image s to features at one layer (``relu4_1`` by default); adaptive instance
normalisation gives the content features the style's channel statistics (paper Eq. 8)::

    AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)      mu, sigma: per sample and channel over (h, w)

and a decoder g, trained here, maps t = AdaIN(f(c), f(s)) back to an image. Training loss (Eq. 11-13):
L = L_c + lambda L_s, with L_c = mean (f(g(t)) - t)^2 and L_s the sum over the style layers of
mean (mu(phi_i(g(t))) - mu(phi_i(s)))^2 + mean (sigma(phi_i(g(t))) - sigma(phi_i(s)))^2.

Optionally (``identity_weight`` > 0) an identity term mu * mean |g(f(c)) - c|: the decoder also
learns to give the content back from its own features, the pixel half of SANet's identity loss
(Park and Lee 2019). The paper's loss has no such term; it only matters when the decoder is trained
briefly or the encoder is weak (the offline random one), where alpha = 0 otherwise does not return
the photo.

Test-time controls (paper Sec. 7.1):

- content-style trade-off: g((1 - alpha) f(c) + alpha t), alpha in [0, 1] (0: the content
  reconstructed, 1: full style);
- style interpolation: t = sum_k w_k AdaIN(f(c), f(s_k)), weights w_k >= 0 summing to 1.

The decoder mirrors the encoder up to its layer: for ``relu{S}_1`` with stage widths w_1..w_S, at
each stage s = S..2 a 3x3 conv to w_{s-1} + ReLU, nearest x2 upsampling, a 3x3 conv + ReLU; then
a 3x3 conv to RGB (no activation; the output is in the [0, 1] image scale, clipped for display).
Reflection padding everywhere (the paper's fix for border artefacts). Inputs: (N, H, W, 3) in
[0, 1], H and W multiples of 2^(S-1) (8 for relu4_1).

Training runs on the project's loop (``ctl_jax.train.loop``: resumable checkpoints, interruption,
progress bars); a run folder is loaded back with :func:`load_adain`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ctl_jax.losses.perceptual import LossNetwork, make_loss_network

EPSILON = 1e-5
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def channel_stats(f: jax.Array, eps: float = EPSILON) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation of (N, h, w, C) features per sample and channel: (N, 1, 1, C) each."""
    mean = jnp.mean(f, axis=(1, 2), keepdims=True)
    return mean, jnp.sqrt(jnp.var(f, axis=(1, 2), keepdims=True) + eps)


def adain(content_feats: jax.Array, style_feats: jax.Array, eps: float = EPSILON) -> jax.Array:
    """Paper Eq. 8: content features (N, h, w, C) with the channel statistics of style features
    (N or 1, h', w', C)."""
    mu_c, sigma_c = channel_stats(content_feats, eps)
    mu_s, sigma_s = channel_stats(style_feats, eps)
    return sigma_s * (content_feats - mu_c) / sigma_c + mu_s


def _reflect_conv(h, features: int, name: str):
    h = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    return nn.Conv(features, (3, 3), padding="VALID", name=name)(h)


class AdaINDecoder(nn.Module):
    """The decoder g for encoder stage widths ``widths`` = (w_1, ..., w_S): (N, h, w, w_S) features
    at 1/2^(S-1) resolution -> (N, h 2^(S-1), w 2^(S-1), 3) images."""

    widths: tuple

    @property
    def scale(self) -> int:
        """2^(S-1): the upsampling factor, and what the input image's sides must be multiples of."""
        return 2 ** (len(self.widths) - 1)

    @nn.compact
    def __call__(self, t):
        h = t
        for s in range(len(self.widths) - 1, 0, -1):
            h = nn.relu(_reflect_conv(h, self.widths[s - 1], f"stage{s + 1}_reduce"))
            n, hh, ww, c = h.shape
            h = jax.image.resize(h, (n, 2 * hh, 2 * ww, c), "nearest")
            h = nn.relu(_reflect_conv(h, self.widths[s - 1], f"stage{s}_conv"))
        return _reflect_conv(h, 3, "to_rgb")


def encoder_widths(net: LossNetwork, layer: str) -> tuple:
    """(w_1, ..., w_S): the channels of relu1_1 .. relu{S}_1 of ``net`` for layer ``relu{S}_1``."""
    if not layer.startswith("relu") or not layer.endswith("_1") or layer not in net.layers:
        firsts = [name for name in net.layers if name.endswith("_1")]
        raise ValueError(f"the AdaIN encoder layer must be the first ReLU of a stage of {net.name}: one of {firsts}; "
                         f"got {layer!r}")
    stages = int(layer[4:-2])
    names = [f"relu{s}_1" for s in range(1, stages + 1)]
    shapes = jax.eval_shape(lambda x: net.features(x, names), jax.ShapeDtypeStruct((1, 2 ** stages, 2 ** stages, 3),
                                                                                   jnp.float32))
    return tuple(int(shapes[name].shape[-1]) for name in names)


@dataclasses.dataclass(frozen=True)
class AdaINConfig:
    """What an AdaIN model is: its encoder (a loss-network spec and layer) and the training loss's
    style weight lambda over ``style_layers`` and identity weight mu (module docstring)."""

    loss_net: str = "random"
    layer: str = "relu4_1"
    style_weight: float = 10.0
    style_layers: tuple = STYLE_LAYERS
    identity_weight: float = 0.0

    def __post_init__(self):
        if not (self.style_weight >= 0 and self.identity_weight >= 0):
            raise ValueError(f"the AdaIN loss weights must be non-negative; got style {self.style_weight}, "
                             f"identity {self.identity_weight}")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "style_layers": list(self.style_layers)}

    @classmethod
    def from_dict(cls, d: dict) -> "AdaINConfig":
        return cls(**{**d, "style_layers": tuple(d.get("style_layers", STYLE_LAYERS))})


@functools.lru_cache(maxsize=4)
def _encoder(loss_net: str) -> LossNetwork:
    return make_loss_network(loss_net)


@dataclasses.dataclass(frozen=True, eq=False)
class AdaINModel:
    """A trained AdaIN model: ``model.stylise(content, styles, weights, alpha)``."""

    config: AdaINConfig
    decoder_params: dict

    @property
    def encoder(self) -> LossNetwork:
        return _encoder(self.config.loss_net)

    @functools.cached_property
    def decoder(self) -> AdaINDecoder:
        return AdaINDecoder(encoder_widths(self.encoder, self.config.layer))

    @property
    def multiple(self) -> int:
        return self.decoder.scale

    def stylise(self, content, styles: Sequence, weights: Sequence[float] | None = None, alpha: float = 1.0):
        """content (H, W, 3) in [0, 1] (H, W multiples of ``multiple``), styles: K images (H_k, W_k, 3) in
        [0, 1] of any size; weights: K non-negative numbers (normalised to sum 1; default equal);
        alpha: the content-style trade-off. Returns (H, W, 3) float32 in [0, 1]."""
        from ctl_jax.classical.gatys import as_rgb, style_mix_weights

        content = as_rgb(content, "the content image")
        h, w = content.shape[:2]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"AdaIN with encoder layer {self.config.layer} needs sides divisible by {self.multiple}; "
                             f"got {h}x{w} (crop or pad the content image)")
        if not np.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number; got {alpha}")
        mix = style_mix_weights(len(styles), weights)
        style_feats = [self._encode(jnp.asarray(as_rgb(s, f"style image {k + 1}"))[None]) for k, s in enumerate(styles)]
        out = _stylise_jit(self.decoder, self.decoder_params, self._encode(jnp.asarray(content)[None]),
                           tuple(style_feats), jnp.asarray(mix, jnp.float32), jnp.float32(alpha))
        return np.clip(np.asarray(out)[0], 0.0, 1.0)

    def _encode(self, x):
        return self.encoder.features(x, [self.config.layer])[self.config.layer]


@functools.partial(jax.jit, static_argnums=0)
def _stylise_jit(decoder, params, content_feats, style_feats, mix, alpha):
    t = sum(m * adain(content_feats, s) for m, s in zip(mix, style_feats))
    t = alpha * t + (1 - alpha) * content_feats
    return decoder.apply({"params": params}, t)


def adain_loss(params, decoder: AdaINDecoder, encoder: LossNetwork, config: AdaINConfig, content, style):
    """Paper Eq. 11-13 on a batch: content (N, H, W, 3) and style (N, H', W', 3) crops in [0, 1].
    Returns (loss, {"content", "style", "identity"})."""
    layers = tuple(dict.fromkeys((*config.style_layers, config.layer)))
    style_feats = encoder.features(style, layers)
    content_feats = encoder.features(content, [config.layer])[config.layer]
    t = adain(content_feats, style_feats[config.layer])
    out_feats = encoder.features(decoder.apply({"params": params}, t), layers)
    content_term = jnp.mean(jnp.square(out_feats[config.layer] - t))
    style_term = 0.0
    for name in config.style_layers:
        (mu_o, sigma_o), (mu_s, sigma_s) = channel_stats(out_feats[name]), channel_stats(style_feats[name])
        style_term += jnp.mean(jnp.square(mu_o - mu_s)) + jnp.mean(jnp.square(sigma_o - sigma_s))
    identity_term = 0.0
    if config.identity_weight > 0:
        identity_term = jnp.mean(jnp.abs(decoder.apply({"params": params}, content_feats) - content))
    loss = content_term + config.style_weight * style_term + config.identity_weight * identity_term
    return loss, {"content": content_term, "style": style_term, "identity": identity_term}


def train_adain(content_sampler, style_sampler, workdir, config: AdaINConfig, train):
    """Train the decoder in ``workdir`` (resumes from its checkpoints); returns the :class:`AdaINModel`.

    content_sampler / style_sampler: ``PatchSampler``s of content crops and style crops (same batch
    size); train: a ``TrainConfig`` (steps, lr, batch_size, patch_size, ... of the content crops).
    """
    from ctl_jax.train.loop import CompiledStage, optimizer_of, train_loop

    encoder = _encoder(config.loss_net)
    decoder = AdaINDecoder(encoder_widths(encoder, config.layer))
    multiple = decoder.scale
    for name, sampler in (("content", content_sampler), ("style", style_sampler)):
        if sampler.patch_size % multiple:
            raise ValueError(f"AdaIN at {config.layer} needs crops divisible by {multiple}; the {name} crops are "
                             f"{sampler.patch_size}")
        if sampler.batch_size != train.batch_size:
            raise ValueError(f"the {name} sampler gives batches of {sampler.batch_size}; the config says {train.batch_size}")
    optimizer = optimizer_of(train.optimizer_settings())
    side = content_sampler.patch_size // multiple

    def compile_fns(replicated, batch_sharding):
        def init(key, frozen):
            del frozen
            return {"params": decoder.init(key, jnp.zeros((1, side, side, decoder.widths[-1])))["params"]}

        def step(trainable, opt_state, frozen, arrays, data_key, index):
            del frozen, data_key, index
            content, style = arrays
            (loss, parts), grads = jax.value_and_grad(
                lambda p: adain_loss(p, decoder, encoder, config, content, style), has_aux=True)(trainable["params"])
            updates, state = optimizer.update(grads, opt_state["params"], trainable["params"])
            return {"params": optax.apply_updates(trainable["params"], updates)}, {"params": state}, {"loss": loss, **parts}

        opt_init = lambda trainable: {name: optimizer.init(tree) for name, tree in trainable.items()}
        return CompiledStage(init=jax.jit(init, out_shardings=replicated),
                             opt_init=jax.jit(opt_init, out_shardings=replicated),
                             step=jax.jit(step, donate_argnums=(0, 1), out_shardings=(replicated,) * 3),
                             opt_state_shape=lambda template: jax.eval_shape(opt_init, template))

    def make_feed(batch_sharding):
        return lambda i: jax.device_put((content_sampler.batch(i), style_sampler.batch(i)), batch_sharding)

    meta = {"kind": "adain", "network": {"name": "adain_decoder", "widths": list(decoder.widths)}, "tuner": None,
            "stage": "decoder", "task": config.to_dict(), "target": None}
    params = train_loop(compile_fns, make_feed, {}, meta, workdir, train, normalise_meta=_normalise_meta)["params"]
    return AdaINModel(config, jax.device_get(params))


def _normalise_meta(meta: dict) -> dict:
    """A stored AdaIN meta with its config in today's form (settings added since take their defaults)."""
    try:
        return {**meta, "task": AdaINConfig.from_dict(meta["task"]).to_dict()}
    except (KeyError, TypeError, ValueError):
        return meta


def load_adain(workdir) -> AdaINModel:
    """The AdaIN model trained in ``workdir`` (its newest checkpoint)."""
    from ctl_jax.train.checkpoint import Checkpointer

    if not Path(workdir, "checkpoints").is_dir():
        raise FileNotFoundError(f"{workdir} holds no checkpoint; train an AdaIN decoder there first")
    with Checkpointer(workdir) as ckpt:
        meta = ckpt.read_meta()
        if meta.get("kind") != "adain":
            raise ValueError(f"{workdir} is not an AdaIN run (it holds a {meta.get('kind')!r} run)")
        config = AdaINConfig.from_dict(meta["task"])
        decoder = AdaINDecoder(tuple(meta["network"]["widths"]))
        template = jax.eval_shape(lambda: {"params": decoder.init(jax.random.key(0), jnp.zeros(
            (1, 1, 1, decoder.widths[-1])))["params"]})
        params = ckpt.restore(template)["trainable"]["params"]
    return AdaINModel(config, jax.device_get(params))
