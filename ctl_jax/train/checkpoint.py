"""Training checkpoints: a thin wrapper over orbax-checkpoint's V0 ``CheckpointManager``.

Layout (one orbax step directory per saved step, the newest ``keep`` kept)::

    workdir/checkpoints/<step>/trainable   {name: tree} the trees this run trains (e.g. {"params": phi})
    workdir/checkpoints/<step>/frozen      {name: tree} inputs it never changes (e.g. {"theta0": base})
    workdir/checkpoints/<step>/opt_state   {name: optax state} one per trainable tree
    workdir/checkpoints/<step>/rng         {"key_data": uint32 key data of the run's data key}
    workdir/checkpoints/<step>/meta        JSON: what the run is (``ctl_jax.train.runs.RunMeta``)

This layer stores trees and metadata; it knows nothing of networks, tuners or tasks. A run folder
is self-contained: a tuned run keeps the frozen base it was trained on, so it stays loadable
whatever happens to the base's own folder later. Restores always use an abstract target
(``jax.ShapeDtypeStruct`` with an explicit sharding) built by the caller, never a bare restore.
Nothing here deletes a checkpoint except orbax's ``LatestN`` rotation after a successful save;
read-only users open the manager read-only. All orbax use is kept in this file.

Saves are synchronous: ``save`` returns when the step is committed, and a failed write (full disk,
read-only folder) raises there. Orbax's asynchronous saves were dropped because a write failing in
their background threads left non-daemon threads waiting minutes for signals that never came, so the
process hung at exit. Training waits for each write, a small cost next to the steps between checkpoints.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


# Orbax logs a warning each time a manager opens read-only, which is how every load works here.
logging.getLogger("absl").addFilter(lambda record: "Given directory is read only" not in record.getMessage())

CHECKPOINT_SUBDIR = "checkpoints"
PROBE_FILE = ".write-probe"  # written and removed by ``check_writable`` before training starts
ITEMS = ("trainable", "frozen", "opt_state", "rng", "meta")
# Meta fields that must agree before a run may continue in (or resume) a workdir.
IDENTITY_FIELDS = ("kind", "network", "tuner", "stage", "task", "target", "adversarial")


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read (corrupt, incomplete or of another layout)."""


def _shorten(error: Exception, limit: int = 400) -> str:
    """The first ``limit`` characters of an error (tensorstore errors embed whole specs)."""
    text = str(error)
    return text if len(text) <= limit else text[:limit] + " ..."


def checkpoint_dir(workdir) -> Path:
    """``workdir/checkpoints`` as an absolute path."""
    return Path(workdir).absolute() / CHECKPOINT_SUBDIR


def _ignore_closed_event_loop(previous):
    """An unraisable hook that drops tensorstore's late callbacks into a closed asyncio loop.

    After a failed read, tensorstore threads still call ``loop.call_soon_threadsafe`` on the event
    loop orbax has already closed; Python reports each as an unraisable "Event loop is closed"
    traceback, around the clear CheckpointError. They carry nothing the error does not say.
    """
    def hook(unraisable):
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        previous(unraisable)

    hook.ignores_closed_event_loop = True
    return hook


class _HeldBackErrors(logging.Filter):
    """Holds back error records that name a checkpoint directory while a save into it or a restore
    from it runs.

    A failed write makes each of orbax's writer threads log its own traceback, and a failed read
    leaves futures whose errors asyncio logs as "never retrieved", some after the call has raised.
    The CheckpointError already says what failed, so after a failure these records are dropped (also
    the late ones); after a success they are let through.
    """

    def __init__(self):
        super().__init__()
        self._watched: dict[str, list | None] = {}  # directory -> records held back (None: dropping)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not self._watched:
            return True
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info and record.exc_info[1] else "")
        if _LATE_THREAD_ERROR in text and any(held is None for held in self._watched.values()):
            return False  # an orbax thread of a failed save, failing again at exit (names no directory)
        for directory, held in list(self._watched.items()):
            if directory in text:
                if held is not None:
                    held.append(record)
                return False
        return True

    @contextlib.contextmanager
    def during_io(self, directory: Path):
        key = str(directory)
        self._watched[key] = held = []
        try:
            yield
        except BaseException:
            self._watched[key] = None
            raise
        del self._watched[key]
        for record in held:
            logging.getLogger(record.name).handle(record)


# What orbax logs when one of its threads raises; after a failed save with the batch sharded over
# several devices its metadata thread raises once more at interpreter exit ("cannot schedule new
# futures after interpreter shutdown"), with a traceback that names no directory.
_LATE_THREAD_ERROR = "_SignalingThread.run() raised an exception"
_IO_ERRORS = _HeldBackErrors()
for _name in ("absl", "asyncio"):
    logging.getLogger(_name).addFilter(_IO_ERRORS)


def _install_unraisable_filter() -> None:
    if not getattr(sys.unraisablehook, "ignores_closed_event_loop", False):
        sys.unraisablehook = _ignore_closed_event_loop(sys.unraisablehook)


def check_writable(directory: Path) -> None:
    """Create ``directory`` and write a probe file into it; CheckpointError saying what to do if that fails."""
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory} is not a directory; move it aside or use another workdir")
    probe = directory / f"{PROBE_FILE}.{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoints in {directory} ({e.strerror or e}); make it writable, "
                              f"free space or use another workdir") from None


def abstract_like(tree, sharding) -> Any:
    """The restore target of ``tree`` (arrays or ShapeDtypeStructs): same shapes and dtypes, ``sharding``."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


class Checkpointer:
    """Save and restore training state in ``workdir/checkpoints``.

    ``read_only=True`` (the default) never creates, writes or deletes anything; a writable
    checkpointer creates the directory, checks that it can write there (``check_writable``) and
    keeps the newest ``keep`` steps (orbax ``LatestN``). Saves are synchronous (see the module notes).
    """

    def __init__(self, workdir, keep: int = 3, read_only: bool = True):
        if keep < 1:
            raise ValueError(f"keep must be >= 1 checkpoint; got {keep}")
        self.directory = checkpoint_dir(workdir)
        self.read_only = read_only
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"no checkpoint directory {self.directory} (is {workdir} a training workdir?)")
        if not read_only:
            check_writable(self.directory)
        _install_unraisable_filter()
        options = ocp.CheckpointManagerOptions(
            read_only=read_only,
            create=not read_only,
            enable_async_checkpointing=False,
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

    def save(self, step: int, trainable: dict, frozen: dict, opt_state: dict, rng_key: jax.Array, meta: dict) -> None:
        """Save one training state at ``step`` (the number of steps done); returns once it is committed.

        ``meta`` must be JSON-serialisable; ``meta["step"]`` is set to ``step``. A failed write
        raises CheckpointError and leaves the earlier checkpoints as they were (orbax writes into a
        temporary folder and renames it when complete).
        """
        if self.read_only:
            raise PermissionError(f"checkpointer for {self.directory} is read-only")
        trees = {"trainable": trainable, "frozen": frozen, "opt_state": opt_state,
                 "rng": {"key_data": jax.random.key_data(rng_key)}}
        args = ocp.args.Composite(  # orbax refuses empty trees: a run without frozen trees has no "frozen" item
            **{name: ocp.args.StandardSave(tree) for name, tree in trees.items() if jax.tree.leaves(tree)},
            meta=ocp.args.JsonSave({**meta, "step": int(step)}),
        )
        try:
            with _IO_ERRORS.during_io(self.directory):
                saved = self._manager.save(int(step), args=args, force=True)
        except Exception as e:  # orbax and tensorstore raise many types for one failed write
            earlier = [s for s in self.steps() if s < step]
            kept = f"the last good checkpoint is step {earlier[-1]}" if earlier else "no earlier checkpoint exists"
            raise CheckpointError(f"saving step {step} in {self.directory} failed ({type(e).__name__}: "
                                  f"{_shorten(e, 200)}); {kept}. Free space or fix permissions, then re-run "
                                  f"to resume") from e
        if not saved:
            raise CheckpointError(f"orbax declined to save step {step} in {self.directory} "
                                  f"(saved steps: {self.steps()})")

    def restore(self, trainable_like, frozen_like=None, opt_state_like=None, rng_like: jax.Array | None = None,
                step: int | None = None, sharding=None, expect: dict | None = None) -> dict:
        """Restore ``step`` (default: the latest) onto targets shaped like the given trees.

        ``trainable_like`` / ``frozen_like`` / ``opt_state_like`` are trees of arrays or
        ``ShapeDtypeStruct``s (e.g. from ``jax.eval_shape``); ``rng_like`` a typed key. ``sharding`` places every restored array
        (default: replicated on the first local device). Items whose target is None are skipped.
        With ``expect`` (a meta dict of the run asking), a checkpoint of another run (``IDENTITY_FIELDS``)
        is refused with a ValueError naming both. Returns {"trainable", "frozen", "opt_state", "rng"
        (a typed key), "meta", "step"}; skipped items are None.
        """
        step = self._check_step(step)
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        meta = self.read_meta(step)
        if expect is not None:
            check_compatible(meta, expect, self.directory.parent)
        targets = {"trainable": trainable_like, "frozen": frozen_like, "opt_state": opt_state_like}
        if rng_like is not None:
            targets["rng"] = {"key_data": jax.random.key_data(rng_like)}
        targets = {name: tree for name, tree in targets.items() if tree is not None and jax.tree.leaves(tree)}
        items = {name: ocp.args.StandardRestore(abstract_like(tree, sharding)) for name, tree in targets.items()}
        self._check_trainable_trees(step, targets.get("trainable"))
        try:
            with _IO_ERRORS.during_io(self.directory):
                restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:
            raise self._corrupt(step, "arrays (" + ", ".join(items) + ")", e) from e
        out = {name: restored[name] if name in targets else None for name in ("trainable", "frozen", "opt_state")}
        out.update(rng=None, meta=meta, step=step)
        if rng_like is not None:
            out["rng"] = jax.random.wrap_key_data(restored["rng"]["key_data"])
        return out

    def _check_trainable_trees(self, step: int, trainable_like) -> None:
        """CheckpointError naming them when the checkpoint's trainable trees (``params``,
        ``discriminator``, ...) are not the ones asked for (a GAN run without its discriminator)."""
        try:
            paths = json.loads((self.directory / str(step) / "trainable" / "_METADATA").read_text())["tree_metadata"]
            found = {ast.literal_eval(p)[0] for p in paths}
        except (OSError, ValueError, KeyError, SyntaxError, IndexError, TypeError):
            return  # unreadable here: the restore itself reports it
        wanted = set(trainable_like or {})
        if wanted and found != wanted:
            raise CheckpointError(
                f"checkpoint step {step} in {self.directory} holds the trainable trees {sorted(found)}, but this run "
                f"needs {sorted(wanted)}" + (f": its {', '.join(sorted(wanted - found))} is missing" if wanted - found
                                             else "") + "; nothing was changed")

    # -- lifetime ------------------------------------------------------------------------------

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Release orbax's resources (saves are synchronous: nothing is pending)."""
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
            return
        try:  # an error is on its way out: never let the cleanup replace it
            self.close()
        except Exception as e:
            logging.getLogger(__name__).warning("closing checkpoints in %s after an error failed: %s",
                                                self.directory, e)


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
    return (f"{meta.get('kind')} run: network({net_s}) tuner={meta.get('tuner')!r} stage={meta.get('stage')!r} "
            f"task={meta.get('task')} target={meta.get('target')!r}")


def check_compatible(found: dict, requested: dict, workdir) -> None:
    """ValueError naming both runs unless ``found`` and ``requested`` agree on ``IDENTITY_FIELDS``."""
    differ = [f for f in IDENTITY_FIELDS if found.get(f) != requested.get(f)]
    if differ:
        raise ValueError(
            f"{workdir} holds checkpoints of a different run ({', '.join(differ)} differ):\n"
            f"  found:     {describe(found)}\n  requested: {describe(requested)}\n"
            f"use another workdir (nothing was changed in this one)")


def relpath(target, start) -> str:
    """``target`` relative to ``start`` (both made absolute), for moving experiment trees together."""
    return os.path.relpath(Path(target).absolute(), Path(start).absolute())
