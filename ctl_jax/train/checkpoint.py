"""Training checkpoints: a thin wrapper over orbax-checkpoint's V0 ``CheckpointManager``.

Layout (one orbax step directory per saved step, the newest ``keep`` kept)::

    workdir/checkpoints/<step>/params      the trainable tree (stage 1: theta0; stage 2: phi)
    workdir/checkpoints/<step>/opt_state   the optax state of that tree
    workdir/checkpoints/<step>/rng         {"key_data": uint32 key data of the run's data key}
    workdir/checkpoints/<step>/meta        JSON: network, method, stage, degradation, level,
                                           config, input_shape, step (and "base" for stage 2)

A stage-2 checkpoint holds only phi; its meta records where the frozen base lives
(``meta["base"]``: the stage-1 workdir, absolute and relative to this workdir, and the step used),
so ``load_params`` can put the two back together. Restores always use an abstract target
(``jax.ShapeDtypeStruct`` with an explicit sharding) built from the current state, never a bare
restore. Nothing here deletes a checkpoint except orbax's ``LatestN`` rotation after a
successful save; read-only users (stage 2 reading its base, sweeps) open the manager read-only.
All orbax use is kept in this file, so a later switch to the V1 API touches only it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from ctl_jax.nets.registry import NetworkSpec

# Orbax logs a warning each time a manager opens read-only, which is how every load works here.
logging.getLogger("absl").addFilter(lambda record: "Given directory is read only" not in record.getMessage())

CHECKPOINT_SUBDIR = "checkpoints"
ITEMS = ("params", "opt_state", "rng", "meta")
# Meta fields that must agree before a run may continue in (or resume) a workdir.
IDENTITY_FIELDS = ("network", "method", "stage", "degradation", "level")


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read (corrupt, incomplete or of another layout)."""


def _shorten(error: Exception, limit: int = 400) -> str:
    """The first ``limit`` characters of an error (tensorstore errors embed whole specs)."""
    text = str(error)
    return text if len(text) <= limit else text[:limit] + " ..."


def checkpoint_dir(workdir) -> Path:
    """``workdir/checkpoints`` as an absolute path."""
    return Path(workdir).absolute() / CHECKPOINT_SUBDIR


def abstract_like(tree, sharding) -> Any:
    """The restore target of ``tree`` (arrays or ShapeDtypeStructs): same shapes and dtypes, ``sharding``."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


class Checkpointer:
    """Save and restore training state in ``workdir/checkpoints``.

    ``read_only=True`` (the default) never creates, writes or deletes anything; a writable
    checkpointer creates the directory and keeps the newest ``keep`` steps (orbax ``LatestN``).
    Saves are asynchronous: ``close`` (or leaving the ``with`` block) waits for them.
    """

    def __init__(self, workdir, keep: int = 3, read_only: bool = True):
        if keep < 1:
            raise ValueError(f"keep must be >= 1 checkpoint; got {keep}")
        self.directory = checkpoint_dir(workdir)
        self.read_only = read_only
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"no checkpoint directory {self.directory} (is {workdir} a training workdir?)")
        options = ocp.CheckpointManagerOptions(
            read_only=read_only,
            create=not read_only,
            save_interval_steps=0 if read_only else 1,  # orbax warns unless read-only managers say 0
            preservation_policy=ocp.checkpoint_managers.LatestN(keep),
        )
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:  # orbax raises several types for an unreadable directory
            raise CheckpointError(f"cannot open checkpoints in {self.directory}: {e}") from e

    # -- queries -------------------------------------------------------------------------------

    def steps(self) -> list[int]:
        """Saved (finalised) steps, ascending. Interrupted saves (orbax tmp dirs) are not listed."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def _check_step(self, step: int | None) -> int:
        steps = self.steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoints in {self.directory}")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; saved steps: {steps}")
        return step

    def _corrupt(self, step: int, what: str, error: Exception) -> CheckpointError:
        earlier = [s for s in self.steps() if s < step]
        hint = (f"move {self.directory / str(step)} aside to resume from step {earlier[-1]}" if earlier
                else "no earlier checkpoint exists")
        return CheckpointError(f"checkpoint step {step} in {self.directory} is corrupt or incomplete: "
                               f"cannot read its {what} ({type(error).__name__}: {_shorten(error)}). Nothing was "
                               f"deleted; {hint}.")

    def read_meta(self, step: int | None = None) -> dict:
        """The meta dict of ``step`` (default: the latest). FileNotFoundError if there is none."""
        step = self._check_step(step)
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:
            raise self._corrupt(step, "meta", e) from e
        if not isinstance(meta, dict):
            raise self._corrupt(step, "meta", TypeError(f"expected a JSON object, got {type(meta).__name__}"))
        return meta

    # -- save / restore ------------------------------------------------------------------------

    def save(self, step: int, params, opt_state, rng_key: jax.Array, meta: dict) -> None:
        """Start an asynchronous save of one training state at ``step`` (the number of steps done).

        The arrays are copied off the device before this returns, so they may be donated right
        after. ``meta`` must be JSON-serialisable; ``meta["step"]`` is set to ``step``.
        """
        if self.read_only:
            raise PermissionError(f"checkpointer for {self.directory} is read-only")
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            rng=ocp.args.StandardSave({"key_data": jax.random.key_data(rng_key)}),
            meta=ocp.args.JsonSave({**meta, "step": int(step)}),
        )
        if not self._manager.save(int(step), args=args, force=True):
            raise CheckpointError(f"orbax declined to save step {step} in {self.directory} "
                                  f"(saved steps: {self.steps()})")

    def restore(self, params_like, opt_state_like=None, rng_like: jax.Array | None = None,
                step: int | None = None, sharding=None, expect: dict | None = None) -> dict:
        """Restore ``step`` (default: the latest) onto targets shaped like the given trees.

        ``params_like`` / ``opt_state_like`` are trees of arrays or ``ShapeDtypeStruct``s (e.g. from
        ``jax.eval_shape``); ``rng_like`` a typed key. ``sharding`` places every restored array
        (default: replicated on the first local device). Items whose target is None are skipped.
        With ``expect`` (a meta dict of the run asking), a checkpoint of another network, method,
        stage, degradation or level is refused with a ValueError naming both. Returns {"params", "opt_state", "rng" (a typed key), "meta", "step"}.
        """
        step = self._check_step(step)
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        meta = self.read_meta(step)
        if expect is not None:
            check_compatible(meta, expect, self.directory.parent)
        targets = {"params": params_like, "opt_state": opt_state_like}
        if rng_like is not None:
            targets["rng"] = {"key_data": jax.random.key_data(rng_like)}
        items = {name: ocp.args.StandardRestore(abstract_like(tree, sharding))
                 for name, tree in targets.items() if tree is not None}
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:
            raise self._corrupt(step, "arrays (" + ", ".join(items) + ")", e) from e
        out = {"params": restored["params"], "opt_state": None, "rng": None, "meta": meta, "step": step}
        if opt_state_like is not None:
            out["opt_state"] = restored["opt_state"]
        if rng_like is not None:
            out["rng"] = jax.random.wrap_key_data(restored["rng"]["key_data"])
        return out

    # -- lifetime ------------------------------------------------------------------------------

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for pending saves, then release orbax's threads."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def latest_meta(workdir) -> dict | None:
    """The meta of the newest checkpoint in ``workdir``, or None when it holds no checkpoint."""
    if not checkpoint_dir(workdir).is_dir():
        return None
    with Checkpointer(workdir) as ckpt:
        return ckpt.read_meta() if ckpt.steps() else None


def describe(meta: dict) -> str:
    """One line naming what a meta dict holds, for error messages."""
    net = meta.get("network") or {}
    net_s = ", ".join(f"{k}={v}" for k, v in net.items() if v is not None) if isinstance(net, dict) else net
    return (f"network({net_s}) method={meta.get('method')!r} stage={meta.get('stage')} "
            f"degradation={meta.get('degradation')} level={meta.get('level')}")


def check_compatible(found: dict, requested: dict, workdir) -> None:
    """ValueError naming both runs unless ``found`` and ``requested`` agree on ``IDENTITY_FIELDS``."""
    differ = [f for f in IDENTITY_FIELDS if found.get(f) != requested.get(f)]
    if differ:
        raise ValueError(
            f"{workdir} holds checkpoints of a different run ({', '.join(differ)} differ):\n"
            f"  found:     {describe(found)}\n  requested: {describe(requested)}\n"
            f"use another workdir (nothing was changed in this one)")


# -- loading trained parameters ------------------------------------------------------------------

def params_template(spec: NetworkSpec, input_shape) -> Any:
    """The network's parameter tree as ShapeDtypeStructs, for an input of ``input_shape`` (N, H, W, C)."""
    model = spec.build()
    x = jax.ShapeDtypeStruct(tuple(input_shape), jax.numpy.float32)
    return jax.eval_shape(lambda k, x: model.init(k, x)["params"], jax.random.key(0), x)


def base_workdir_of(meta: dict, workdir) -> Path:
    """The stage-1 workdir a stage-2 meta points to: tried relative to ``workdir`` first, then absolute."""
    base = meta.get("base") or {}
    candidates = []
    if base.get("relpath"):
        candidates.append(Path(workdir).absolute() / base["relpath"])
    if base.get("workdir"):
        candidates.append(Path(base["workdir"]))
    for c in candidates:
        if checkpoint_dir(c).is_dir():
            return c.resolve()
    raise FileNotFoundError(f"the stage-2 run in {workdir} was tuned from the base in "
                            f"{[str(c) for c in candidates] or '(not recorded)'}, which has no checkpoints")


def _load_trainable(workdir, step, spec: NetworkSpec, meta: dict, sharding):
    """Restore only the trainable tree of ``workdir`` (no optimizer state), for stage 1 or 2."""
    template = params_template(spec, meta["input_shape"])
    if meta["stage"] == 2:
        from ctl_jax.tuners import make_tuner  # only stage-2 checkpoints need the tuners

        tuner = make_tuner(meta["method"])
        template = jax.eval_shape(tuner.init, jax.random.key(0), template)
    with Checkpointer(workdir) as ckpt:
        return ckpt.restore(template, step=step, sharding=sharding)["params"]


def load_params(workdir, step: int | None = None, sharding=None) -> tuple[NetworkSpec, dict, Any]:
    """Read a trained model, read-only: ``(spec, meta, params)``.

    Stage-1 workdir: ``params`` is the base tree theta0 of ``spec``'s network.
    Stage-2 workdir: ``params`` is ``{"theta0": ..., "phi": ...}`` where theta0 is the frozen base
    loaded from the stage-1 workdir recorded in ``meta["base"]`` (at the step stage 2 used, with
    zero AdaFM slots inserted when the base had none) and ``spec`` is the network both apply to;
    ``make_tuner(meta["method"])`` gives the tuner. ``step`` defaults to the latest checkpoint.
    """
    with Checkpointer(workdir) as ckpt:
        meta = ckpt.read_meta(step)
    spec = NetworkSpec.from_dict(meta["network"])
    if meta.get("stage") == 1:
        return spec, meta, _load_trainable(workdir, step, spec, meta, sharding)
    if meta.get("stage") != 2:
        raise CheckpointError(f"{workdir}: meta has no valid stage (1 or 2): {describe(meta)}")
    base_dir = base_workdir_of(meta, workdir)
    base_spec, base_meta, theta0 = load_params(base_dir, step=meta["base"]["step"], sharding=sharding)
    if base_meta.get("stage") != 1:
        raise CheckpointError(f"{workdir}: its base {base_dir} is not a stage-1 run ({describe(base_meta)})")
    if base_spec != spec:  # AdaFM tuned from a slot-free base: add the zero slots phi fills
        from ctl_jax.tuners import insert_adafm_slots

        theta0 = insert_adafm_slots(theta0, params_template(spec, meta["input_shape"]))
    phi = _load_trainable(workdir, step, spec, meta, sharding)
    return spec, meta, {"theta0": theta0, "phi": phi}


def relpath(target, start) -> str:
    """``target`` relative to ``start`` (both made absolute), for moving experiment trees together."""
    return os.path.relpath(Path(target).absolute(), Path(start).absolute())
