"""The two-stage trainer: stage 1 trains the base network at level A, stage 2 a tuner at level B.

Both stages run through one loop (``train_loop``) that differs only in what is trainable:

- stage 1 (``train_base``): every base parameter, via ``make_base_step``;
- stage 2 (``train_tuner``): only the tuner's ``phi``, via ``make_tune_step``; the stage-1 base is
  read from its workdir (read-only) and passed to the step as a frozen input.

Determinism and resume: the batch of step ``i`` (0-based) is ``sampler.batch(i)``, the degradation
noise of step ``i`` uses ``jax.random.fold_in(data_key, i)``, and a checkpoint holds the trainable
tree, the optimizer state and ``data_key``. A run killed at any point and resumed from its latest
checkpoint therefore reaches the same parameters as an uninterrupted run.

Data parallelism: a 1-D mesh over all devices with axis "data" of type ``AxisType.Auto``; the batch
is sharded on "data", parameters and optimizer state are replicated, and XLA (GSPMD) inserts the
gradient all-reduce. Auto rather than Explicit because the step runs arbitrary networks
(pixel shuffles, resizes, interceptors) unchanged: with Auto the compiler propagates shardings
from the inputs, whereas Explicit makes every op's sharding part of its type and asks for
annotations where a rule is ambiguous. Single process only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ctl_jax.data.degrade import ON_DEVICE, Degradation, jpeg_compress
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.train.checkpoint import (Checkpointer, base_workdir_of, check_compatible, describe, latest_meta,
                                      load_params, params_template, relpath)
from ctl_jax.train.steps import LOSSES, check_micro_batches, make_base_step, make_tune_step, micro_batch_count
from ctl_jax.tuners import insert_adafm_slots, make_tuner

METRICS_FILE = "metrics.jsonl"
# AdaFM slot size used when stage 2 adds slots to a slot-free base and the spec names none: 5x5
# matches the FTN paper's AdaFM-Net parameter count for denoising (reference/cll_anchors.md 1.1).
DEFAULT_ADAFM_KERNEL = 5


@dataclasses.dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings of one training stage.

    Adam with a piecewise-constant (MultiStep) learning rate: ``lr`` until the first milestone,
    then multiplied by ``lr_gamma`` at every step in ``lr_milestones``. ``steps`` counts updates;
    a checkpoint is saved every ``ckpt_every`` steps and at the end (newest ``keep`` kept);
    the loss is fetched from the device and logged every ``log_every`` steps. Each step splits
    every device's share of the batch into ``micro_batches`` chunks ("auto": on CPU, up to 8 that
    keep 16k input pixels per chunk; one elsewhere; see ``steps.micro_batch_count``); the
    gradient is the same up to rounding.
    """

    steps: int = 1000
    batch_size: int = 16
    patch_size: int = 64
    lr: float = 1e-4
    lr_milestones: list[int] = dataclasses.field(default_factory=list)
    lr_gamma: float = 0.5
    loss: str = "l1"
    log_every: int = 100
    ckpt_every: int = 1000
    keep: int = 3
    seed: int = 0
    progress: bool = True
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    micro_batches: int | str = "auto"

    def __post_init__(self):
        for name in ("steps", "batch_size", "patch_size", "log_every", "ckpt_every", "keep"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1; got {getattr(self, name)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {sorted(LOSSES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive and finite; got {self.lr}")
        if not (self.lr_gamma > 0 and math.isfinite(self.lr_gamma)):
            raise ValueError(f"lr_gamma must be positive and finite; got {self.lr_gamma}")
        milestones = [int(m) for m in self.lr_milestones]
        if any(m < 1 for m in milestones) or milestones != sorted(set(milestones)):
            raise ValueError(f"lr_milestones must be increasing positive step numbers; got {self.lr_milestones}")
        self.lr_milestones = milestones
        check_micro_batches(self.micro_batches)

    def micro_batch_count(self, input_shape) -> int:
        """Micro-batches per step for network inputs of ``input_shape`` (.., H, W, C) on this
        backend (see ``steps.micro_batch_count``)."""
        return micro_batch_count(self.batch_size // jax.device_count(), input_shape[-3] * input_shape[-2],
                                 self.micro_batches)

    def optimizer_settings(self) -> tuple:
        """(lr, milestones, gamma, b1, b2): everything the optimizer depends on, hashable."""
        return (self.lr, tuple(self.lr_milestones), self.lr_gamma, self.adam_b1, self.adam_b2)

    def schedule(self) -> optax.Schedule:
        """step -> learning rate (MultiStep decay)."""
        return _schedule(*self.optimizer_settings()[:3])

    def optimizer(self) -> optax.GradientTransformation:
        return optimizer_of(self.optimizer_settings())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- public entry points -----------------------------------------------------------------------

def train_base(spec: NetworkSpec, sampler, degradation: Degradation, workdir, config: TrainConfig):
    """Stage 1: train the base network ``spec`` at ``degradation.level_a``; returns its params.

    ``sampler.batch(i)`` yields clean crops (B, P, P, C) float32 in [0, 1] for step i. Resumes
    from ``workdir``'s latest checkpoint when there is one (ValueError if it holds another run).
    """
    if spec.adafm_kernel is not None:
        raise ValueError("stage 1 trains the basic network: build the spec without adafm_kernel "
                         "(stage 2 with method 'adafm' inserts zero-initialised slots)")
    level = degradation.level_a
    stage = _Stage.of(spec, None, degradation, level, config)
    meta = _meta(stage, "base", 1, config)
    return train_loop(functools.partial(_compile, stage), functools.partial(_degradation_feed, stage, sampler, config),
                      None, meta, workdir, config)


def train_tuner(spec: NetworkSpec, method: str, base_workdir, sampler, degradation: Degradation, workdir,
                config: TrainConfig):
    """Stage 2: train tuner ``method``'s phi at ``degradation.level_b`` on the frozen stage-1 base.

    The base (theta0) is read from ``base_workdir`` and never written; gradients are taken with
    respect to phi only. ``spec`` must be the base's network; for AdaFM on a slot-free base the
    slotted network (``spec.adafm_kernel`` or ``DEFAULT_ADAFM_KERNEL``) is used, with zero slots
    inserted into theta0. DNI's phi starts as a copy of theta0. Returns phi.
    """
    tuner = make_tuner(method)
    existing = latest_meta(workdir)
    base_step = None
    if existing and existing.get("stage") == 2 and existing.get("base"):
        recorded = base_workdir_of(existing, workdir)
        if recorded != Path(base_workdir).resolve():
            raise ValueError(f"{workdir} holds a stage-2 run tuned from the base in {recorded}; "
                             f"requested base: {Path(base_workdir).resolve()}. Use another workdir.")
        base_step = existing["base"]["step"]  # resume on exactly the base the run started from
    base_spec, base_meta, theta0 = load_params(base_workdir, step=base_step)
    if base_meta.get("stage") != 1:
        raise ValueError(f"{base_workdir} is not a stage-1 (base) run: {describe(base_meta)}")
    _check_base_degradation(base_meta, degradation, base_workdir)

    stage = _Stage.of(_tuned_spec(spec, base_spec, tuner.name), tuner, degradation, degradation.level_b, config)
    if stage.spec != base_spec:
        theta0 = insert_adafm_slots(theta0, params_template(stage.spec, stage.input_shape))
    meta = _meta(stage, tuner.name, 2, config)
    meta["base"] = {"workdir": str(Path(base_workdir).resolve()), "relpath": relpath(base_workdir, workdir),
                    "step": base_meta["step"], "network": base_spec.to_dict()}
    return train_loop(functools.partial(_compile, stage), functools.partial(_degradation_feed, stage, sampler, config),
                      theta0, meta, workdir, config)


def data_parallel_mesh(batch_size: int) -> tuple[jax.sharding.Mesh, NamedSharding, NamedSharding]:
    """(mesh, replicated sharding, batch sharding) over all devices; checks batch divisibility."""
    if jax.process_count() != 1:
        raise NotImplementedError("the trainer runs in a single process (multi-host data loading is not implemented)")
    n = jax.device_count()
    if batch_size % n:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {n} devices "
                         f"({jax.devices()[0].platform}): every device gets batch_size / {n} crops; "
                         f"use a multiple of {n}")
    mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    return mesh, NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


# -- the shared loop ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Stage:
    """Everything the jitted functions of a stage depend on (hashable: it keys the compile cache)."""

    spec: NetworkSpec
    tuner: Any                  # None in stage 1
    degradation: Degradation
    level: float
    input_shape: tuple          # network input (1, h, w, C): the degraded crop
    optimizer: tuple            # TrainConfig.optimizer_settings()
    loss: str
    micro_batches: int          # TrainConfig.micro_batch_count(input_shape)

    @classmethod
    def of(cls, spec, tuner, degradation, level, config: TrainConfig) -> "_Stage":
        input_shape = _input_shape(degradation, level, config.patch_size, spec.channels)
        return cls(spec, tuner, degradation, float(level), input_shape, config.optimizer_settings(), config.loss,
                   config.micro_batch_count(input_shape))


@dataclasses.dataclass(frozen=True)
class CompiledStage:
    """The jitted functions ``train_loop`` drives; each trainer builds them in its own ``_compile``."""

    init: Callable        # jitted (key, frozen) -> fresh trainable tree (replicated)
    opt_init: Callable    # jitted trainable -> optimizer state (replicated)
    step: Callable        # jitted, see _compile
    optimizer: optax.GradientTransformation


def train_loop(compile_fns: Callable, make_feed: Callable, frozen, meta: dict, workdir, config: TrainConfig):
    """Train for ``config.steps`` steps in ``workdir`` (resuming if possible); returns the trainable tree.

    ``compile_fns(replicated, batch_sharding) -> CompiledStage``; ``make_feed(batch_sharding)`` returns
    ``feed(i)``, the tuple of (sharded) batch arrays of step ``i`` that the step takes after
    ``frozen``. ``frozen`` is an input of every step that is never differentiated (theta0 in stage
    2), or None.
    """
    _, replicated, batch_sharding = data_parallel_mesh(config.batch_size)
    workdir = Path(workdir)
    found = latest_meta(workdir)  # read-only: a refused run leaves the workdir untouched
    if found is not None:
        check_compatible(found, meta, workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    fns = compile_fns(replicated, batch_sharding)
    feed = make_feed(batch_sharding)
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    frozen = None if frozen is None else jax.device_put(frozen, replicated)
    template = jax.eval_shape(fns.init, init_key, frozen)
    schedule = config.schedule()
    metrics_path = workdir / METRICS_FILE

    with Checkpointer(workdir, keep=config.keep, read_only=False) as ckpt:
        start = ckpt.latest_step() or 0
        if start:
            state = ckpt.restore(template, jax.eval_shape(fns.optimizer.init, template), data_key,
                                 sharding=replicated, expect=meta)
            trainable, opt_state, data_key = state["params"], state["opt_state"], state["rng"]
        else:
            trainable = fns.init(init_key, frozen)
            opt_state = fns.opt_init(trainable)
        _truncate_metrics(metrics_path, start)
        progress = _Progress(config, start) if config.progress else None
        last_saved = start or None
        pending, window = [], []
        t0 = t_window = time.perf_counter()
        s_window = start
        try:
            for s in range(start + 1, config.steps + 1):  # s: number of updates done after this one
                trainable, opt_state, loss = fns.step(trainable, opt_state, frozen, *feed(s - 1), data_key,
                                                      np.int32(s - 1))
                pending.append((s, loss))
                if progress:
                    progress.advance()
                is_log = s % config.log_every == 0 or s == config.steps
                is_ckpt = s % config.ckpt_every == 0 or s == config.steps
                if not (is_log or is_ckpt):
                    continue
                window += _drain(pending, last_saved, ckpt.directory)
                if is_ckpt:
                    bad = _first_non_finite(trainable, opt_state)
                    if bad:
                        raise FloatingPointError(f"non-finite {bad} after step {s}; stopping. " +
                                                 _last_good(last_saved, ckpt.directory))
                    ckpt.save(s, trainable, opt_state, data_key, meta)
                    last_saved = s
                if is_log:
                    now = time.perf_counter()
                    rate = (s - s_window) / max(now - t_window, 1e-9)
                    # steps_per_s of the first interval includes compilation ("elapsed" too).
                    record = {"step": s, "loss": float(np.mean([v for _, v in window])),
                              "lr": float(schedule(s - 1)), "steps_per_s": rate,
                              "images_per_s": rate * config.batch_size, "time": time.time(),
                              "elapsed": now - t0}
                    _append_metrics(metrics_path, record)
                    if progress:
                        progress.log(record)
                    window, t_window, s_window = [], now, s
        finally:
            if progress:
                progress.close()
    return trainable


def _degradation_feed(stage: _Stage, sampler, config: TrainConfig, batch_sharding) -> Callable:
    """feed(i) -> (clean, degraded or None): the sampler's crops of step i; JPEG is applied here on
    the host, the on-device degradations inside the step."""
    def feed(i):
        clean_np = sampler.batch(i)
        _check_batch(clean_np, config, stage.spec.channels)
        degraded = None
        if stage.degradation.kind not in ON_DEVICE:
            degraded = jax.device_put(_jpeg_batch(clean_np, stage.level), batch_sharding)
        return jax.device_put(clean_np, batch_sharding), degraded

    return feed


@functools.lru_cache(maxsize=16)
def _compile(stage: _Stage, replicated, batch_sharding) -> CompiledStage:
    """The jitted init, optimizer init and step of ``stage``; cached so repeated runs reuse compilations.

    The step is ``(trainable, opt_state, frozen, clean, degraded, data_key, index) ->
    (trainable, opt_state, loss)``. It degrades ``clean`` on device when ``degraded`` is None
    (noise, bicubic) with the key ``fold_in(data_key, index)``; ``trainable`` and ``opt_state``
    are donated.
    """
    model = stage.spec.build()
    optimizer = optimizer_of(stage.optimizer)
    loss_fn = LOSSES[stage.loss]
    degradation, level, tuner = stage.degradation, stage.level, stage.tuner
    split = dict(micro_batches=stage.micro_batches, shards=batch_sharding.mesh.size)
    if tuner is None:
        inner = make_base_step(model, optimizer, loss_fn, **split)

        def init(key, frozen):
            del frozen
            return model.init(key, jnp.zeros(stage.input_shape, jnp.float32))["params"]
    else:
        inner = make_tune_step(model, tuner, optimizer, loss_fn, **split)
        init = tuner.init

    def step(trainable, opt_state, frozen, clean, degraded, data_key, index):
        if degraded is None:
            degraded = degradation.on_device(jax.random.fold_in(data_key, index), clean, level)
            degraded = jax.lax.with_sharding_constraint(degraded, batch_sharding)
        if tuner is None:
            return inner(trainable, opt_state, degraded, clean)
        return inner(trainable, opt_state, frozen, degraded, clean)

    return CompiledStage(
        init=jax.jit(init, out_shardings=replicated),
        opt_init=jax.jit(optimizer.init, out_shardings=replicated),
        step=jax.jit(step, donate_argnums=(0, 1), out_shardings=(replicated, replicated, replicated)),
        optimizer=optimizer,
    )


def _schedule(lr: float, milestones: tuple, gamma: float) -> optax.Schedule:
    return optax.piecewise_constant_schedule(lr, {m: gamma for m in milestones})


def optimizer_of(settings: tuple) -> optax.GradientTransformation:
    """Adam with the MultiStep schedule of ``TrainConfig.optimizer_settings()``."""
    lr, milestones, gamma, b1, b2 = settings
    return optax.adam(_schedule(lr, milestones, gamma), b1=b1, b2=b2)


# -- helpers -----------------------------------------------------------------------------------

def _meta(stage: _Stage, method: str, number: int, config: TrainConfig) -> dict:
    return {"network": stage.spec.to_dict(), "method": method, "stage": number,
            "degradation": dataclasses.asdict(stage.degradation), "level": stage.level,
            "config": config.to_dict(), "input_shape": list(stage.input_shape)}


def _input_shape(degradation: Degradation, level, patch_size: int, channels: int) -> tuple:
    """Shape (1, h, w, C) of the network input: the degraded version of a (1, P, P, C) crop."""
    clean = jax.ShapeDtypeStruct((1, patch_size, patch_size, channels), jnp.float32)
    if degradation.kind not in ON_DEVICE:
        return clean.shape
    return jax.eval_shape(lambda x: degradation.on_device(jax.random.key(0), x, level), clean).shape


def _tuned_spec(spec: NetworkSpec, base_spec: NetworkSpec, method: str) -> NetworkSpec:
    """The network stage 2 runs: the base's, plus AdaFM slots for AdaFM on a slot-free base."""
    if method == "adafm" and base_spec.adafm_kernel is None:
        if dataclasses.replace(spec, adafm_kernel=None) != base_spec:
            raise ValueError(f"requested network {spec} differs from the stage-1 base {base_spec} "
                             "(beyond adafm_kernel)")
        return dataclasses.replace(base_spec, adafm_kernel=spec.adafm_kernel or DEFAULT_ADAFM_KERNEL)
    if spec != base_spec:
        raise ValueError(f"requested network {spec} differs from the stage-1 base {base_spec}")
    return base_spec


def _check_base_degradation(base_meta: dict, degradation: Degradation, base_workdir) -> None:
    found = base_meta.get("degradation") or {}
    if found.get("kind") != degradation.kind or base_meta.get("level") != float(degradation.level_a):
        raise ValueError(f"the base in {base_workdir} was trained on {found.get('kind')} at level "
                         f"{base_meta.get('level')}, but stage 2 expects level A = {degradation.level_a} "
                         f"of {degradation.kind}")


def _check_batch(batch, config: TrainConfig, channels: int) -> None:
    want = (config.batch_size, config.patch_size, config.patch_size, channels)
    if getattr(batch, "shape", None) != want or batch.dtype != np.float32:
        raise ValueError(f"sampler.batch() must return float32 {want} (batch_size, patch, patch, channels) "
                         f"to match the config and network; got {getattr(batch, 'dtype', type(batch))} "
                         f"{getattr(batch, 'shape', '')}")


def _jpeg_batch(clean: np.ndarray, quality) -> np.ndarray:
    """JPEG-compress each crop on the host (Pillow): (B, P, P, C) float32 -> same."""
    return np.stack([jpeg_compress(patch, int(quality)) for patch in clean]).astype(np.float32)


def _drain(pending: list, last_saved, ckpt_dir) -> list:
    """Fetch the pending device losses (one host transfer); FloatingPointError at the first non-finite."""
    steps = [s for s, _ in pending]
    values = jax.device_get([v for _, v in pending])
    pending.clear()
    for s, v in zip(steps, values):
        if not np.isfinite(v):
            raise FloatingPointError(f"non-finite loss ({float(v)}) at step {s}; stopping. " +
                                     _last_good(last_saved, ckpt_dir))
    return [(s, float(v)) for s, v in zip(steps, values)]


def _last_good(last_saved, ckpt_dir) -> str:
    if last_saved is None:
        return "No checkpoint was saved by this run."
    return f"The last good checkpoint is step {last_saved} in {ckpt_dir} (non-finite states are never saved)."


@jax.jit
def _finite_flags(trees):
    return [jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(t)
                               if jnp.issubdtype(x.dtype, jnp.inexact)] or [True])) for t in trees]


def _first_non_finite(params, opt_state) -> str | None:
    """'parameters' or 'optimizer state' when that tree has a NaN/inf, else None."""
    flags = jax.device_get(_finite_flags([params, opt_state]))
    for name, ok in zip(("parameters", "optimizer state"), flags):
        if not ok:
            return name
    return None


def _append_metrics(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written by a run killed after its last checkpoint)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    if keep != lines:
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(keep))
        os.replace(tmp, path)


class _Progress:
    """tqdm when installed, else one stderr line per log step."""

    def __init__(self, config: TrainConfig, start: int):
        self.total = config.steps
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=config.steps, initial=start, unit="step", dynamic_ncols=True)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def log(self, r: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{r['loss']:.4g}", img_s=f"{r['images_per_s']:.1f}")
        else:
            print(f"step {r['step']}/{self.total}  loss {r['loss']:.4g}  lr {r['lr']:.3g}  "
                  f"{r['steps_per_s']:.2f} step/s  {r['images_per_s']:.1f} img/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
