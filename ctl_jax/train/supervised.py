"""Supervised stages of every tuner and task on the one loop (``ctl_jax.train.loop``).

- :func:`train_base`: the base network at the task's level A (control 0); trains ``{"params": theta0}``.
- :func:`train_tuner`: a tuner's phi. Two-stage tuners (parameter and feature space) train at level
  B (control 1) on the frozen theta0 of a base run, which the tuned run keeps in its own folder;
  one-stage tuners (hypernetwork, conditional) train over the task's whole level range, each
  sample's control being its level's position in the range.

The data flow of one step is :func:`predict` and :func:`stage_loss`:
image -> task.device_batch (degradation at the step's levels) -> tuner.apply(net, theta0, phi, x,
control) -> task loss. Gradients are taken with respect to the trainable tree only (DESIGN.md
principle 7), so theta0 is frozen by construction.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ctl_jax.control import Control
from ctl_jax.losses import weighted_loss
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.train.checkpoint import Checkpointer, checkpoint_dir, latest_meta
from ctl_jax.train.loop import CompiledStage, TrainConfig, optimizer_of, train_loop
from ctl_jax.train.runs import RunMeta, load_run, normalise_meta
from ctl_jax.train.steps import MAX_UNROLLED_EQUATIONS, micro_batch_mean
from ctl_jax.tuners import Tuner, make_tuner, tuner_to_spec
from ctl_jax.tuners.trees import param_template


@dataclasses.dataclass(frozen=True)
class Stage:
    """Everything the jitted functions of a stage depend on (hashable: it keys the compile cache)."""

    spec: NetworkSpec
    tuner: Any                  # None: the base stage
    task: Any
    target: str                 # "a", "b" or "range"
    input_shape: tuple          # network input (1, h, w, C)
    optimizer: tuple            # TrainConfig.optimizer_settings()
    loss: tuple                 # (name, weight) terms
    micro_batches: int
    shared_control: bool = False  # one control per batch (the first sample's): hypernetworks' fast path
    max_equations: int | None = None  # micro_batch_mean's bound on the unrolled loss ("auto" micro-batches)

    @classmethod
    def of(cls, spec, tuner, task, target, config: TrainConfig, shared_control=False) -> "Stage":
        input_shape = task.input_shape(config.patch_size, spec.channels, target)
        return cls(spec, tuner, task, target, input_shape, config.optimizer_settings(), config.loss or task.loss,
                   config.micro_batch_count(input_shape), shared_control,
                   MAX_UNROLLED_EQUATIONS if config.micro_batches == "auto" else None)

    def meta(self, config: TrainConfig, base: dict | None = None, adversarial=None) -> dict:
        return RunMeta(network=self.spec.to_dict(), tuner=tuner_to_spec(self.tuner) if self.tuner else None,
                       stage="tune" if self.tuner else "base", task=self.task.to_dict(), target=self.target,
                       config=config.to_dict(), input_shape=self.input_shape, base=base,
                       adversarial=adversarial.to_dict() if adversarial else None).to_dict()


def stage_control(stage: Stage, control: jax.Array) -> Control:
    """The control a training batch runs at: 1 for a tuner's endpoint stage, else the batch's levels."""
    if stage.target == "b":
        return Control.vector(jnp.ones((stage.tuner.control_dim,), jnp.float32))
    if stage.shared_control:
        return Control.vector(control[0])
    return Control.per_sample(control)


def predict(stage: Stage, model, params, frozen: dict, x, control):
    """The network's output in a training step: the plain base, or the tuner at the batch's control."""
    if stage.tuner is None:
        return model.apply({"params": params}, x)
    return stage.tuner.apply(model, frozen.get("theta0", {}), params, x, stage_control(stage, control))


def stage_loss(stage: Stage, model, params, frozen: dict, batch, shards: int = 1):
    """The stage's loss on one batch (micro-batched, ``ctl_jax.train.steps.micro_batch_mean``)."""
    task_loss = getattr(stage.task, "batch_loss", None)  # a task whose loss needs the input or control

    def one(x, y, c):
        pred = predict(stage, model, params, frozen, x, c)
        return task_loss(pred, x, y, c) if task_loss else weighted_loss(stage.loss, pred, y)

    return micro_batch_mean(one, (batch.input, batch.target, batch.control), stage.micro_batches, shards,
                            stage.max_equations)


@functools.lru_cache(maxsize=16)
def compile_stage(stage: Stage, replicated, batch_sharding) -> CompiledStage:
    """The jitted init, optimizer init and step of ``stage``; cached, so repeated runs reuse them.

    step: ``(trainable, opt_state, frozen, arrays, data_key, index) -> (trainable, opt_state, loss)``
    with ``trainable = {"params": tree}``; the batch of step ``index`` is made on device from the
    loader's ``arrays`` with the key ``fold_in(data_key, index)``. trainable and opt_state are donated.
    """
    model = stage.spec.build()
    optimizer = optimizer_of(stage.optimizer)
    shards = batch_sharding.mesh.size

    def init(key, frozen):
        x = jnp.zeros(stage.input_shape, jnp.float32)
        if stage.tuner is None:
            return {"params": model.init(key, x)["params"]}
        return {"params": stage.tuner.init(key, frozen.get("theta0", {}), model, x)}

    def step(trainable, opt_state, frozen, arrays, data_key, index):
        batch = stage.task.device_batch(jax.random.fold_in(data_key, index), arrays, stage.target)
        batch = batch._replace(input=jax.lax.with_sharding_constraint(batch.input, batch_sharding))
        loss, grads = jax.value_and_grad(lambda p: stage_loss(stage, model, p, frozen, batch, shards))(
            trainable["params"])
        updates, state = optimizer.update(grads, opt_state["params"], trainable["params"])
        return {"params": optax.apply_updates(trainable["params"], updates)}, {"params": state}, loss

    opt_init = lambda trainable: {name: optimizer.init(tree) for name, tree in trainable.items()}
    return CompiledStage(
        init=jax.jit(init, out_shardings=replicated),
        opt_init=jax.jit(opt_init, out_shardings=replicated),
        step=jax.jit(step, donate_argnums=(0, 1), out_shardings=(replicated, replicated, replicated)),
        opt_state_shape=lambda template: jax.eval_shape(opt_init, template),
    )


def _feed(stage: Stage, sampler, config: TrainConfig, batch_sharding):
    def feed(i):
        arrays = stage.task.host_arrays(sampler, i, stage.target, config.seed)
        first = arrays[0]
        want = (config.batch_size, config.patch_size, config.patch_size)
        if getattr(first, "dtype", None) != np.float32 or tuple(first.shape[:3]) != want:
            raise ValueError(f"the sampler must give float32 batches of {config.batch_size} crops of "
                             f"{config.patch_size}x{config.patch_size} (the config's batch_size and patch_size); "
                             f"got {getattr(first, 'dtype', type(first))} {getattr(first, 'shape', '')}")
        return jax.device_put(arrays, batch_sharding)

    return feed


def _run(stage: Stage, sampler, frozen: dict, workdir, config: TrainConfig, base: dict | None = None,
         adversarial=None):
    if adversarial is None:
        compile_fns = functools.partial(compile_stage, stage)
    else:
        from ctl_jax.train.gan import compile_gan_stage

        target_shape = (1, config.patch_size, config.patch_size, stage.spec.channels)
        compile_fns = functools.partial(compile_gan_stage, stage, adversarial, target_shape)
    return train_loop(compile_fns, functools.partial(_feed, stage, sampler, config),
                      frozen, stage.meta(config, base, adversarial), workdir, config, normalise_meta)


def train_base(spec: NetworkSpec, task, sampler, workdir, config: TrainConfig, adversarial=None):
    """Stage 1: the base network ``spec`` at the task's level A; returns ``{"params": theta0}``
    (and ``"discriminator"`` with ``adversarial``, a ``ctl_jax.train.gan.Adversarial``: a GAN).

    ``sampler.batch(i)`` yields the step's training samples (clean crops (B, P, P, C) float32 in
    [0, 1] for restoration). Resumes from ``workdir``'s latest checkpoint when there is one
    (ValueError if it holds another run).
    """
    if spec.adafm_kernel is not None:
        raise ValueError("stage 1 trains the basic network: build the spec without adafm_kernel "
                         "(tuning with method 'adafm' inserts zero-initialised slots)")
    return _run(Stage.of(spec, None, task, "a", config), sampler, {}, workdir, config, adversarial=adversarial)


def train_tuner(tuner: Tuner | str, task, sampler, workdir, config: TrainConfig, *, base_workdir=None,
                spec: NetworkSpec | None = None, shared_control: bool = False, adversarial=None):
    """Train a tuner's phi; returns ``{"params": phi}`` (and ``"discriminator"`` with ``adversarial``).

    Two-stage tuners: on the frozen theta0 of the base run in ``base_workdir`` (its network; ``spec``,
    if given, must match), at level B. The tuned run keeps its own copy of theta0, and a resumed
    run uses that copy, so later changes to the base's folder never affect it.
    One-stage tuners: the network ``spec`` from scratch, over the task's level range.
    ``adversarial`` (a ``ctl_jax.train.gan.Adversarial``): train phi against a discriminator
    (two-stage tuners only; ``ctl_jax.train.gan``).
    """
    tuner = make_tuner(tuner)
    if adversarial is not None and tuner.stages != 2:
        raise ValueError(f"the adversarial stage tunes a trained base; {tuner.name} trains in one stage")
    if tuner.stages == 1:
        if spec is None:
            raise ValueError(f"{tuner.name} trains in one stage: give the network spec")
        stage = Stage.of(spec, tuner, task, "range", config, shared_control)
        return _run(stage, sampler, {}, workdir, config)

    found = latest_meta(workdir)
    if found is not None and found.get("stage") == "tune":
        source = load_run(workdir)  # resume on the base this run started from, kept in its folder
        base_spec, theta0, base = source.meta.spec, source.theta0, source.meta.base
        _note_if_base_moved_on(tuner.name, base, base_workdir)
    else:
        if base_workdir is None or not checkpoint_dir(base_workdir).is_dir():
            raise FileNotFoundError(f"{tuner.name} tunes a trained base: no base run in {base_workdir}")
        source = load_run(base_workdir)
        if source.meta.stage != "base":
            raise ValueError(f"{base_workdir} is not a base run ({source.meta.stage} run of {source.meta.tuner})")
        _check_base_task(source, task, base_workdir)
        base_spec, theta0 = tuner.tuned_spec(source.meta.spec), source.theta0
        base = {"workdir": str(Path(base_workdir).resolve()), "step": source.step}
    if spec is not None and tuner.tuned_spec(spec) != base_spec:
        raise ValueError(f"requested network {spec} differs from the base's {source.meta.spec}")
    stage = Stage.of(base_spec, tuner, task, "b", config)
    theta0 = tuner.prepare_base(theta0, param_template(base_spec.build(), jnp.zeros(stage.input_shape)))
    return _run(stage, sampler, {"theta0": theta0}, workdir, config, base, adversarial)


def _note_if_base_moved_on(name: str, base: dict | None, base_workdir) -> None:
    """Say (stderr) when the base folder now holds another step than the one this run was tuned from:
    the run keeps its own copy of that base, so it is unaffected, but it is not tuned from the new one."""
    if base_workdir is None or not base or not checkpoint_dir(base_workdir).is_dir():
        return
    with Checkpointer(base_workdir) as ckpt:
        now = ckpt.latest_step()
    if now is not None and now != base.get("step"):
        print(f"note: {name} keeps the base it was tuned from (step {base.get('step')} of {base.get('workdir')}); "
              f"{base_workdir} is now at step {now}: tune into a new folder to use it", file=sys.stderr, flush=True)


def _level_a(task) -> tuple:
    """What level A of a task is made of: a restoration task's degradations and levels A, or the
    task's own ``level_a_signature`` (a style task's style A, its weight and the loss)."""
    signature = getattr(task, "level_a_signature", None)
    return signature if signature is not None else (getattr(task, "degradations", None), getattr(task, "level_a", None))


def _check_base_task(base, task, base_workdir) -> None:
    if _level_a(base.task) != _level_a(task):
        raise ValueError(f"the base in {base_workdir} was trained on {base.task.to_dict()}, but this stage expects "
                         f"level A = {_level_a(task)}")
