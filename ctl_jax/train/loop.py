"""The one training loop: any trainable trees, resume-exact, NaN stop, metrics, data parallel.

``train_loop`` drives a :class:`CompiledStage` (jitted init, optimizer init and step) over a
``feed`` of batches. What it trains is a dict of named trees, each with its own optimizer state
(``{"params": ...}`` for supervised stages; a generator and a discriminator for a GAN); ``frozen``
is a dict of trees every step reads but never changes (a tuned run's base). ``ctl_jax.train.supervised``
builds the stages of every tuner and task on it.

Determinism and resume: the batch of step ``i`` (0-based) is ``feed(i)``, a pure function of the
step, and the step's randomness uses ``jax.random.fold_in(data_key, i)``; a checkpoint holds the
trainable trees, the frozen trees, the optimizer states and ``data_key``. A run killed at any point
and resumed from its latest checkpoint therefore reaches the same parameters as an uninterrupted run.

Data parallelism: a 1-D mesh over all devices with axis "data" of type ``AxisType.Auto``; the batch
is sharded on "data", parameters and optimizer state are replicated, and XLA (GSPMD) inserts the
gradient all-reduce. Auto rather than Explicit because the step runs arbitrary networks
(pixel shuffles, resizes, interceptors) unchanged: with Auto the compiler propagates shardings
from the inputs, whereas Explicit makes every op's sharding part of its type and asks for
annotations where a rule is ambiguous. Single process only.

Run folders: a run holds its workdir's lock (``ctl_jax.train.lock``) while it trains, so a second
run into the same folder fails at once. Ctrl-C (SIGINT) stops the loop after the step in flight
and raises :class:`TrainingInterrupted`; every checkpoint already written is complete. A resume
must use the training settings the run was started with (``TrainConfig.changes_from``);
``allow_changes=True`` accepts other ones and records them in the meta's ``history``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ctl_jax.files import write_text_atomic
from ctl_jax.losses import check_terms
from ctl_jax.train.checkpoint import Checkpointer, check_compatible, latest_meta
from ctl_jax.train.lock import WorkdirError, workdir_lock
from ctl_jax.train.steps import check_micro_batches, micro_batch_count

METRICS_FILE = "metrics.jsonl"
# TrainConfig fields a resume may change freely: none of them changes what the steps already taken
# computed, nor what the remaining steps compute. ``steps`` trains further (or stops earlier);
# log_every, ckpt_every, keep and progress are bookkeeping; micro_batches splits the same gradient
# (equal up to rounding) and "auto" differs between machines; allow_changes is this call's permission.
FREE_SETTINGS = ("steps", "log_every", "ckpt_every", "keep", "progress", "micro_batches", "allow_changes")


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT); the message says which checkpoint a re-run resumes from."""


@dataclasses.dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings of one training stage.

    Adam with a piecewise-constant (MultiStep) learning rate: ``lr`` until the first milestone,
    then multiplied by ``lr_gamma`` at every step in ``lr_milestones``. ``steps`` counts updates;
    a checkpoint is saved every ``ckpt_every`` steps and at the end (newest ``keep`` kept);
    the loss is fetched from the device and logged every ``log_every`` steps. ``loss`` overrides the
    task's loss terms for this stage (None: the task's). Each step splits
    every device's share of the batch into ``micro_batches`` chunks ("auto": on CPU, up to 8 that
    keep 16k input pixels per chunk; one elsewhere; see ``steps.micro_batch_count``); the
    gradient is the same up to rounding.

    Resuming a run with other settings is refused (``changes_from`` lists them), except those in
    ``FREE_SETTINGS``; ``allow_changes=True`` accepts them and the run's meta records each change
    in its ``history``. ``allow_changes`` is a permission for this call, not a setting of the run:
    ``to_dict`` leaves it out.
    """

    steps: int = 1000
    batch_size: int = 16
    patch_size: int = 64
    lr: float = 1e-4
    lr_milestones: list[int] = dataclasses.field(default_factory=list)
    lr_gamma: float = 0.5
    loss: Any = None
    log_every: int = 100
    ckpt_every: int = 1000
    keep: int = 3
    seed: int = 0
    progress: bool = True
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    micro_batches: int | str = "auto"
    allow_changes: bool = False

    def __post_init__(self):
        for name in ("steps", "batch_size", "patch_size", "log_every", "ckpt_every", "keep"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1; got {getattr(self, name)}")
        if self.loss is not None:
            self.loss = check_terms(self.loss)
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
        """The settings as stored in a run's meta (without ``allow_changes``)."""
        out = dataclasses.asdict(self)
        del out["allow_changes"]
        return out

    def changes_from(self, stored: dict | None) -> dict:
        """{name: (stored value, this value)} for each setting outside ``FREE_SETTINGS`` that differs
        from ``stored`` (a run's meta["config"]), compared in their JSON form; a field missing from
        ``stored`` (added since the run was written) counts as its default. {} when ``stored`` is None."""
        if stored is None:
            return {}
        defaults = _json_form(TrainConfig().to_dict())
        mine = _json_form(self.to_dict())
        return {name: (stored.get(name, defaults[name]), value) for name, value in mine.items()
                if name not in FREE_SETTINGS and _json_form(stored.get(name, defaults[name])) != value}


def _json_form(value):
    return json.loads(json.dumps(value))


def describe_changes(changes: dict) -> str:
    """"lr 0.001 -> 0.01, seed 0 -> 1" for ``TrainConfig.changes_from``'s result."""
    return ", ".join(f"{name} {json.dumps(old)} -> {json.dumps(new)}" for name, (old, new) in changes.items())


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
class CompiledStage:
    """The jitted functions ``train_loop`` drives; each trainer builds them in its own ``_compile``."""

    init: Callable        # jitted (key, frozen) -> {name: fresh trainable tree} (replicated)
    opt_init: Callable    # jitted {name: tree} -> {name: optimizer state} (replicated)
    step: Callable        # jitted (trainable, opt_state, frozen, arrays, data_key, index) -> (trainable, opt_state,
    #                       loss): a scalar, or {"loss": scalar, other named scalars logged beside it}
    opt_state_shape: Callable  # trainable template -> optimizer state template (for restores)


def train_loop(compile_fns: Callable, make_feed: Callable, frozen, meta: dict, workdir, config: TrainConfig,
               normalise_meta: Callable = lambda meta: meta):
    """Train for ``config.steps`` steps in ``workdir`` (resuming if possible); returns the trainable tree.

    ``compile_fns(replicated, batch_sharding) -> CompiledStage``; ``make_feed(batch_sharding)`` returns
    ``feed(i)``, the (sharded) batch arrays of step ``i``. ``frozen``: a dict of trees every step
    reads and none changes (``{"theta0": base}`` for a tuned run, ``{}`` otherwise); it is saved in
    every checkpoint, so the run folder is self-contained. ``normalise_meta`` maps a stored meta to
    the form it is compared in before a resume (e.g. with fields added since it was written).

    Raises WorkdirError when another process trains in ``workdir``, ValueError when it holds another
    run or this run with other settings (see ``TrainConfig``), CheckpointError when a checkpoint
    cannot be read or written, FloatingPointError on a non-finite loss or state, and
    TrainingInterrupted on Ctrl-C.
    """
    _, replicated, batch_sharding = data_parallel_mesh(config.batch_size)
    workdir = Path(workdir)
    with workdir_lock(workdir), _InterruptRequest() as interrupt:
        meta = _meta_to_save(workdir, meta, config, normalise_meta)
        return _train(compile_fns, make_feed, frozen, meta, workdir, config, replicated, batch_sharding, interrupt)


def _meta_to_save(workdir: Path, meta: dict, config: TrainConfig, normalise_meta: Callable) -> dict:
    """``meta`` with this run's settings and history of setting changes; refuses a resume of another
    run (ValueError naming both) or with other settings, unless ``config.allow_changes``."""
    out = {**meta, "config": config.to_dict(), "history": []}
    found = latest_meta(workdir)
    if found is None:
        return out
    if found.get("imported"):
        raise ValueError(f"{workdir} holds a network imported from {found['imported']}, which is not trained here; "
                         f"tune from it (--base {workdir}) or train into another folder")
    check_compatible(normalise_meta(found), normalise_meta(meta), workdir)
    history = list(found.get("history") or [])
    changes = config.changes_from(found.get("config"))
    if changes and not config.allow_changes:
        raise ValueError(f"{workdir} holds this run up to step {found.get('step')}, trained with other settings: "
                         f"{describe_changes(changes)}; resume with the run's settings, use another workdir, or "
                         f"accept the change (TrainConfig(allow_changes=True); ctl-jax --allow-changed-settings), "
                         f"which the run's history records")
    if changes:
        history.append({"step": found.get("step"), "changes": {k: [old, new] for k, (old, new) in changes.items()}})
    return {**out, "history": history}


def _train(compile_fns, make_feed, frozen, meta, workdir: Path, config: TrainConfig, replicated, batch_sharding,
           interrupt: "_InterruptRequest"):
    fns = compile_fns(replicated, batch_sharding)
    feed = make_feed(batch_sharding)
    init_key, data_key = jax.random.split(jax.random.key(config.seed))
    frozen = jax.device_put(frozen or {}, replicated)
    template = jax.eval_shape(fns.init, init_key, frozen)
    schedule = config.schedule()
    metrics_path = workdir / METRICS_FILE

    with Checkpointer(workdir, keep=config.keep, read_only=False) as ckpt:
        start = ckpt.latest_step() or 0
        last_saved = start or None
        progress = None
        try:
            if start:
                state = ckpt.restore(template, frozen or None, fns.opt_state_shape(template), data_key,
                                     sharding=replicated)  # the latest meta was checked above
                trainable, opt_state, data_key = state["trainable"], state["opt_state"], state["rng"]
                frozen = state["frozen"] or {}
            else:
                trainable = fns.init(init_key, frozen)
                opt_state = fns.opt_init(trainable)
            _truncate_metrics(metrics_path, start)
            progress = _Progress(config, start) if config.progress else None
            pending, window = [], []
            t0 = t_window = time.perf_counter()
            s_window = done = start
            for s in range(start + 1, config.steps + 1):  # s: number of updates done after this one
                interrupt.check(done, last_saved, ckpt.directory)
                trainable, opt_state, loss = fns.step(trainable, opt_state, frozen, feed(s - 1), data_key,
                                                      np.int32(s - 1))
                pending.append((s, loss))
                done = s
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
                    ckpt.save(s, trainable, frozen, opt_state, data_key, meta)
                    last_saved = s
                if is_log:
                    now = time.perf_counter()
                    rate = (s - s_window) / max(now - t_window, 1e-9)
                    # steps_per_s of the first interval includes compilation ("elapsed" too).
                    record = {"step": s, **{name: float(np.mean([v[name] for _, v in window])) for name in window[0][1]},
                              "lr": float(schedule(s - 1)), "steps_per_s": rate,
                              "images_per_s": rate * config.batch_size, "time": time.time(),
                              "elapsed": now - t0}
                    _append_metrics(metrics_path, record)
                    if progress:
                        progress.log(record)
                    window, t_window, s_window = [], now, s
            interrupt.check(done, last_saved, ckpt.directory)
        except KeyboardInterrupt as e:  # a second Ctrl-C, or one outside the main thread's handler
            if isinstance(e, TrainingInterrupted):
                raise
            raise TrainingInterrupted(_interrupted(None, last_saved, ckpt.directory)) from None
        finally:
            if progress:
                progress.close()
    return trainable


class _InterruptRequest:
    """Ctrl-C (SIGINT) as a request the loop honours between steps, so it never lands inside a
    checkpoint write or a library's cleanup. A second Ctrl-C raises KeyboardInterrupt at once.
    Signal handlers can only be set in the main thread; elsewhere Ctrl-C acts as usual."""

    def __init__(self):
        self.requested = False
        self._installed = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.SIG_DFL)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self, done: int, last_saved, ckpt_dir) -> None:
        """TrainingInterrupted if Ctrl-C was pressed; ``done``: the steps done so far."""
        if self.requested:
            raise TrainingInterrupted(_interrupted(done, last_saved, ckpt_dir))


def _interrupted(done, last_saved, ckpt_dir) -> str:
    after = f" after step {done}" if done is not None else ""
    if last_saved is None:
        return f"training interrupted{after}; no checkpoint was saved, so a re-run starts from scratch"
    return (f"training interrupted{after}; the last checkpoint is step {last_saved} in {ckpt_dir}: "
            f"run the same command again to resume from it")


def _schedule(lr: float, milestones: tuple, gamma: float) -> optax.Schedule:
    return optax.piecewise_constant_schedule(lr, {m: gamma for m in milestones})


def optimizer_of(settings: tuple) -> optax.GradientTransformation:
    """Adam with the MultiStep schedule of ``TrainConfig.optimizer_settings()``."""
    lr, milestones, gamma, b1, b2 = settings
    return optax.adam(_schedule(lr, milestones, gamma), b1=b1, b2=b2)


# -- helpers -----------------------------------------------------------------------------------

def _drain(pending: list, last_saved, ckpt_dir) -> list:
    """Fetch the pending device losses (one host transfer) as [(step, {name: value})], a scalar loss
    being ``{"loss": value}``; FloatingPointError at the first non-finite value."""
    steps = [s for s, _ in pending]
    values = jax.device_get([v if isinstance(v, dict) else {"loss": v} for _, v in pending])
    pending.clear()
    for s, named in zip(steps, values):
        for name, v in named.items():
            if not np.isfinite(v):
                raise FloatingPointError(f"non-finite {name} ({float(v)}) at step {s}; "
                                         f"stopping. " + _last_good(last_saved, ckpt_dir))
    return [(s, {name: float(v) for name, v in named.items()}) for s, named in zip(steps, values)]


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
    """One JSON line appended: a failed or killed write can only cut the last line short, which
    readers skip and a resume drops (:func:`_truncate_metrics`); earlier lines are never rewritten."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:
        raise WorkdirError(f"cannot write {path} ({e.strerror or e}); free space or fix permissions, then "
                           f"re-run to resume from the last checkpoint") from None


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
        write_text_atomic(path, "".join(keep))


class _Progress:
    """tqdm when installed, else one stderr line per log step."""

    def __init__(self, config: TrainConfig, start: int):
        self.total = config.steps
        devices = jax.devices()
        self.where = f"{len(devices)} {devices[0].platform} device{'s' if len(devices) > 1 else ''}"
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=config.steps, initial=start, unit="step", dynamic_ncols=True, desc=self.where)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def log(self, r: dict) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{r['loss']:.4g}", img_s=f"{r['images_per_s']:.1f}")
        else:
            print(f"step {r['step']}/{self.total}  loss {r['loss']:.4g}  lr {r['lr']:.3g}  "
                  f"{r['steps_per_s']:.2f} step/s  {r['images_per_s']:.1f} img/s  ({self.where})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
