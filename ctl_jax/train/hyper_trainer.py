"""Training and loading decoupled-learning models (one stage, on operator pairs).

Two methods share the loop of ``trainer.py`` (checkpoints, resume after a kill, NaN stop, metrics,
progress, data parallelism):

- ``hyper``: the weight-learning network's psi; every sample of a batch gets the base-network
  weights of its own gamma (``apply_hyper``);
- ``baseline18``: Chen et al.'s baseline [18], the base network with gamma as constant input
  channels, trained directly.

``sampler.batch(i) -> (inputs, targets, gammas)`` as ``OperatorPairSampler`` gives them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.train.checkpoint import Checkpointer, CheckpointError, describe
from ctl_jax.train.steps import LOSSES, micro_batch_mean
from ctl_jax.train.trainer import CompiledStage, TrainConfig, optimizer_of, train_loop
from ctl_jax.tuners.gamma import GammaSpace
from ctl_jax.tuners.hyper import Hypernet, apply_hyper, hyper_head, hyper_trunk

METHODS = ("hyper", "baseline18")


@dataclasses.dataclass(frozen=True)
class _HyperStage:
    """Everything the jitted functions depend on (hashable: it keys the compile cache)."""

    spec: NetworkSpec
    hyper: Hypernet | None     # None: baseline [18]
    gamma_dim: int
    input_shape: tuple         # (1, P, P, C)
    optimizer: tuple
    loss: str
    per_sample: str
    micro_batches: int


def _network(spec: NetworkSpec, hyper: Hypernet | None, gamma_space: GammaSpace) -> NetworkSpec:
    if spec.name != "decouple_net":
        raise ValueError(f"decoupled learning runs on the decouple_net network; got {spec.name!r}")
    want = 0 if hyper is not None else gamma_space.dim
    return dataclasses.replace(spec, condition_channels=want)


def train_hyper(spec: NetworkSpec, hyper: Hypernet | None, gamma_space: GammaSpace, sampler, workdir,
                config: TrainConfig, per_sample: str = "map"):
    """Train ``hyper``'s psi (or, with ``hyper=None``, baseline [18]) in ``workdir``; returns the
    trained tree. Resumes from the latest checkpoint when there is one.

    per_sample: how a batch's gammas reach the weights: "map" / "vmap" (each sample its own
    weights, see ``apply_hyper``), or "shared" (one gamma per batch; needs a sampler with
    ``shared_gamma=True``, several times faster).
    """
    if per_sample not in ("map", "vmap", "shared"):
        raise ValueError(f"per_sample must be 'map', 'vmap' or 'shared'; got {per_sample!r}")
    if (per_sample == "shared") != bool(getattr(sampler, "shared_gamma", False)):
        raise ValueError("per_sample='shared' and a sampler with shared_gamma=True go together")
    spec = _network(spec, hyper, gamma_space)
    if hyper is not None and hyper.gamma_dim != gamma_space.dim:
        raise ValueError(f"the hypernetwork takes gamma of length {hyper.gamma_dim}, but operators "
                         f"{list(gamma_space.operators)} give gamma of length {gamma_space.dim}")
    input_shape = (1, config.patch_size, config.patch_size, spec.channels)
    stage = _HyperStage(spec, hyper, gamma_space.dim, input_shape, config.optimizer_settings(), config.loss,
                        per_sample, config.micro_batch_count(input_shape))
    meta = {"network": spec.to_dict(), "method": "hyper" if hyper else "baseline18", "stage": "operator",
            "hyper": dataclasses.asdict(hyper) if hyper else None, "gamma_space": gamma_space.to_dict(),
            "config": config.to_dict(), "input_shape": list(stage.input_shape)}
    return train_loop(functools.partial(_compile, stage), functools.partial(_pair_feed, sampler, config),
                      None, meta, workdir, config)


def _pair_feed(sampler, config: TrainConfig, batch_sharding):
    def feed(i):
        inputs, targets, gammas = sampler.batch(i)
        if inputs.shape[0] != config.batch_size or inputs.shape[1] != config.patch_size:
            raise ValueError(f"sampler batches are {inputs.shape}; the config asks for batch_size "
                             f"{config.batch_size} and patch_size {config.patch_size}")
        return tuple(jax.device_put(np.asarray(a, np.float32), batch_sharding) for a in (inputs, targets, gammas))

    return feed


def _init_fn(spec: NetworkSpec, hyper: Hypernet | None, gamma_dim: int, input_shape: tuple):
    """key -> a fresh trainable tree: psi of ``hyper``, or baseline [18]'s network parameters."""
    model = spec.build()
    x = jnp.zeros(input_shape, jnp.float32)
    if hyper is None:
        return lambda key: model.init(key, x, jnp.zeros((1, gamma_dim)))["params"]

    def init(key):
        base_key, fc_key = jax.random.split(key)
        return hyper.init(fc_key, model.init(base_key, x)["params"])

    return init


@functools.lru_cache(maxsize=16)
def _compile(stage: _HyperStage, replicated, batch_sharding) -> CompiledStage:
    model = stage.spec.build()
    optimizer = optimizer_of(stage.optimizer)
    loss_fn = LOSSES[stage.loss]
    init = _init_fn(stage.spec, stage.hyper, stage.gamma_dim, stage.input_shape)

    def predict(trainable, inputs, gammas):
        if stage.hyper is None:
            return model.apply({"params": trainable}, inputs, gammas)
        if stage.per_sample == "shared":
            return apply_hyper(model, stage.hyper, trainable, inputs, gammas[0])
        return apply_hyper(model, stage.hyper, trainable, inputs, gammas, stage.per_sample)

    def step(trainable, opt_state, frozen, inputs, targets, gammas, data_key, index):
        del frozen, data_key, index
        def loss_of(t):
            return micro_batch_mean(lambda x, y, g: loss_fn(predict(t, x, g), y), (inputs, targets, gammas),
                                    stage.micro_batches, batch_sharding.mesh.size)

        loss, grads = jax.value_and_grad(loss_of)(trainable)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, loss

    return CompiledStage(
        init=jax.jit(lambda key, frozen: init(key), out_shardings=replicated),
        opt_init=jax.jit(optimizer.init, out_shardings=replicated),
        step=jax.jit(step, donate_argnums=(0, 1), out_shardings=(replicated, replicated, replicated)),
        optimizer=optimizer,
    )


@dataclasses.dataclass(frozen=True)
class OperatorModel:
    """A trained decoupled-learning model (``hyper``) or baseline [18] (``hyper is None``)."""

    spec: NetworkSpec
    hyper: Hypernet | None
    gamma_space: GammaSpace
    params: Any            # psi, or the baseline's parameters
    meta: dict

    @property
    def model(self):
        return self.spec.build()

    def gamma(self, operator: str, value, clamp: bool = False) -> np.ndarray:
        return self.gamma_space.encode(operator, value, clamp)

    def __call__(self, x, gamma):
        """Output for images x (N, H, W, C) and gamma (D,) or per-sample (N, D)."""
        gamma = self.gamma_space.check(gamma)
        if self.hyper is None:
            return self.model.apply({"params": self.params}, x, jnp.broadcast_to(gamma, (x.shape[0], gamma.shape[-1])))
        return apply_hyper(self.model, self.hyper, self.params, x, gamma)

    def trunk(self, x):
        """Cheap tuning: the features shared by every gamma (hypernetwork models only)."""
        if self.hyper is None:
            raise ValueError("baseline [18] takes gamma at its input: there is no trunk to share")
        return hyper_trunk(self.model, self.hyper, self.params, x)

    def head(self, trunk_state, gamma):
        """Cheap tuning: the output for gamma (D,) from ``trunk(x)``'s state."""
        return hyper_head(self.model, self.hyper, self.params, trunk_state, self.gamma_space.check(gamma))


def load_operator_model(workdir, step: int | None = None) -> OperatorModel:
    """Read a model trained by ``train_hyper`` (read-only). ``step`` defaults to the latest."""
    with Checkpointer(workdir) as ckpt:
        meta = ckpt.read_meta(step)
    if meta.get("stage") != "operator":
        raise CheckpointError(f"{workdir} does not hold an operator model (hyper / baseline18): {describe(meta)}")
    spec = NetworkSpec.from_dict(meta["network"])
    hyper = Hypernet(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["hyper"].items()}) \
        if meta["hyper"] else None
    gamma_space = GammaSpace.from_dict(meta["gamma_space"])
    template = jax.eval_shape(_init_fn(spec, hyper, gamma_space.dim, tuple(meta["input_shape"])), jax.random.key(0))
    with Checkpointer(workdir) as ckpt:
        params = ckpt.restore(template, step=step)["params"]
    return OperatorModel(spec, hyper, gamma_space, params, meta)

