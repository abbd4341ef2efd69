"""The adversarial stage (ESRGAN's recipe on the one loop): a generator tree and a discriminator tree,
each with its own optimizer, updated in one jitted step.

Per step, on the batch made by the task (LR input, HR target):

1. generator: ``L = sum_i w_i term_i(G(x), y) + weight * L_G(D(y), D(G(x)))`` (task terms such as
   L1 and ``perceptual``; ``L_G`` from ``ctl_jax.losses.gan``), gradients with respect to the
   trainable tree only (a tuner's phi: the base stays frozen, DESIGN.md principle 7);
2. discriminator: ``L_D(D(y), D(stop_gradient(G(x))))`` on the same generated batch (computed before
   the generator's update, as ESRGAN's code does), with its own Adam.

The run's trainable trees are ``{"params": phi, "discriminator": d}``; both and both optimizer
states are checkpointed, so a killed run resumes exactly. The step reports the generator's total
loss as ``loss`` and its parts (``content``, ``adversarial``, ``discriminator``) in metrics.jsonl.
Micro-batching is not used here (one batch per step).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from ctl_jax.losses import weighted_loss
from ctl_jax.losses.gan import check_kind, discriminator_loss, generator_loss
from ctl_jax.nets.discriminator import vgg_discriminator
from ctl_jax.train.loop import CompiledStage, optimizer_of

DISCRIMINATOR = "discriminator"


@dataclasses.dataclass(frozen=True)
class Adversarial:
    """kind: "ragan" or "standard"; weight: of the generator's adversarial term (ESRGAN: 5e-3 with L1
    at 1e-2 and perceptual at 1); discriminator: a ``VGGDiscriminator`` variant; lr: its Adam rate."""

    kind: str = "ragan"
    weight: float = 5e-3
    discriminator: str = "small"
    lr: float = 1e-4

    def __post_init__(self):
        check_kind(self.kind)
        if not self.weight > 0:
            raise ValueError(f"the adversarial weight must be positive; got {self.weight}")
        vgg_discriminator(self.discriminator)  # ValueError for an unknown variant

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Adversarial | None":
        return None if d is None else cls(**d)

    def network(self, channels: int):
        return vgg_discriminator(self.discriminator, channels=channels)

    def template(self, target_shape: tuple):
        """The discriminator's parameter shapes for (1, H, W, C) targets."""
        return jax.eval_shape(self.network(target_shape[-1]).init, jax.random.key(0),
                              jax.ShapeDtypeStruct(target_shape, jnp.float32))["params"]


@functools.lru_cache(maxsize=8)
def compile_gan_stage(stage, adversarial: Adversarial, target_shape: tuple, replicated, batch_sharding) -> CompiledStage:
    """The jitted init, optimizer init and two-optimizer step of ``stage`` (a ``supervised.Stage``)
    with a discriminator on (1, H, W, C) = ``target_shape`` images."""
    from ctl_jax.train.supervised import compile_stage, predict

    plain = compile_stage(stage, replicated, batch_sharding)
    model, disc = stage.spec.build(), adversarial.network(target_shape[-1])
    optimizers = {"params": optimizer_of(stage.optimizer), DISCRIMINATOR: optax.adam(adversarial.lr)}

    def init(key, frozen):
        g_key, d_key = jax.random.split(key)
        return {**plain.init(g_key, frozen),
                DISCRIMINATOR: disc.init(d_key, jnp.zeros(target_shape, jnp.float32))["params"]}

    def step(trainable, opt_state, frozen, arrays, data_key, index):
        batch = stage.task.device_batch(jax.random.fold_in(data_key, index), arrays, stage.target)
        batch = batch._replace(input=jax.lax.with_sharding_constraint(batch.input, batch_sharding))
        d_params = trainable[DISCRIMINATOR]
        critic = lambda d, images: disc.apply({"params": d}, images)

        def generator_objective(params):
            pred = predict(stage, model, params, frozen, batch.input, batch.control)
            content = weighted_loss(stage.loss, pred, batch.target)
            adversarial_term = generator_loss(critic(d_params, batch.target), critic(d_params, pred), adversarial.kind)
            return content + adversarial.weight * adversarial_term, (pred, content, adversarial_term)

        (g_loss, (pred, content, adv)), g_grads = jax.value_and_grad(generator_objective, has_aux=True)(
            trainable["params"])
        fake = jax.lax.stop_gradient(pred)
        d_loss, d_grads = jax.value_and_grad(lambda d: discriminator_loss(
            critic(d, batch.target), critic(d, fake), adversarial.kind))(d_params)
        new_trainable, new_state = {}, {}
        for name, grads in (("params", g_grads), (DISCRIMINATOR, d_grads)):
            updates, new_state[name] = optimizers[name].update(grads, opt_state[name], trainable[name])
            new_trainable[name] = optax.apply_updates(trainable[name], updates)
        return new_trainable, new_state, {"loss": g_loss, "content": content, "adversarial": adv,
                                          "discriminator": d_loss}

    opt_init = lambda trainable: {name: optimizers[name].init(tree) for name, tree in trainable.items()}
    return CompiledStage(
        init=jax.jit(init, out_shardings=replicated),
        opt_init=jax.jit(opt_init, out_shardings=replicated),
        step=jax.jit(step, donate_argnums=(0, 1), out_shardings=(replicated, replicated, replicated)),
        opt_state_shape=lambda template: jax.eval_shape(opt_init, template),
    )
