"""Run folders: what a run is (typed metadata), and the one loader of trained models.

Every training run (a base at level A, a tuner on a frozen base, a one-stage tuner over a level
range) writes the same folder (``ctl_jax.train.checkpoint``), described by a :class:`RunMeta`.
:func:`load_run` reads any of them back as a :class:`ControllableModel`, ``(image, control) ->
image``, the only thing ``apply``, ``sweep``, the reports and the notebooks use.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.control import Control, as_control
from ctl_jax.data.images import check_unit_scale
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.train.checkpoint import Checkpointer, CheckpointError, checkpoint_dir, describe
from ctl_jax.tuners import make_tuner, tuner_to_spec
from ctl_jax.tuners.trees import param_template

STAGES = ("base", "tune")


@dataclasses.dataclass(frozen=True)
class RunMeta:
    """What a run folder holds.

    network: the network the trees apply to (``NetworkSpec`` fields; for AdaFM, the slotted one);
    tuner: the tuner's name (None for a base run); stage: "base" (theta0 at level A) or "tune"
    (phi; on a frozen theta0 for two-stage tuners); task: the task's ``to_dict()``; target: "a",
    "b" or "range" (which levels it trained at); config: the TrainConfig; input_shape: (1, h, w,
    C) of the network input in training; base: where a tuned run's theta0 came from ({"workdir",
    "step"}, provenance only: the run keeps its own copy); history: resumes that changed training
    settings, oldest first, each ``{"step": steps done before the change, "changes": {name: [old, new]}}``
    (``ctl_jax.train.loop``); imported: the file a pretrained network came from (None if trained here);
    adversarial: the settings of a GAN stage, whose run also holds a discriminator tree.
    """

    network: dict
    tuner: Any
    stage: str
    task: dict
    target: str
    config: dict
    input_shape: tuple
    base: dict | None = None
    kind: str = "ctl_jax"
    history: list = dataclasses.field(default_factory=list)
    imported: str | None = None  # the weights file of a pretrained network (ctl_jax.train.imported)
    adversarial: dict | None = None  # a GAN stage's settings (ctl_jax.train.gan.Adversarial)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}; got {self.stage!r}")
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))

    def to_dict(self) -> dict:
        """The JSON form (tuples become lists), as stored and as compared on resume."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "RunMeta":
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = {"network", "stage", "task", "target"} - set(d)
        if missing or d.get("kind") != "ctl_jax":
            raise CheckpointError(f"the checkpoint's meta is not a ctl_jax run of this version "
                                  f"(missing {sorted(missing) or 'the kind tag'}); retrain it with this version")
        return cls(**{k: v for k, v in d.items() if k in fields})

    @property
    def spec(self) -> NetworkSpec:
        return NetworkSpec.from_dict(self.network)


def normalise_meta(meta: dict) -> dict:
    """A stored meta with its network, task and GAN settings rewritten in today's form (fields added
    since it was written take their defaults), so that adding a field with a default never breaks a
    resume."""
    from ctl_jax.tasks import make_task
    from ctl_jax.train.gan import Adversarial

    out = dict(meta)
    try:
        out["network"] = NetworkSpec.from_dict(meta["network"]).to_dict()
        out["task"] = json.loads(json.dumps(make_task(meta["task"]).to_dict()))
        if meta.get("adversarial"):
            out["adversarial"] = Adversarial.from_dict(meta["adversarial"]).to_dict()
    except (KeyError, TypeError, ValueError):
        pass  # not a run of this kind: compared as stored
    return out


def task_from_dict(d: dict):
    """The task a meta or config describes ({"kind": "restoration" | "operators", ...})."""
    from ctl_jax.tasks import make_task

    return make_task(d)


def run_templates(meta: RunMeta):
    """(trainable, frozen) templates (ShapeDtypeStructs) of a run, from its meta alone."""
    model = meta.spec.build()
    x = jax.ShapeDtypeStruct(meta.input_shape, jnp.float32)
    if meta.stage == "base":
        trainable, frozen = {"params": param_template(model, x)}, {}
    else:
        tuner = make_tuner(meta.tuner)
        theta0 = param_template(model, x) if tuner.stages == 2 else {}
        phi = jax.eval_shape(lambda t, x: tuner.init(jax.random.key(0), t, model, x), theta0, x)
        trainable, frozen = {"params": phi}, ({"theta0": theta0} if tuner.stages == 2 else {})
    if meta.adversarial:
        from ctl_jax.train.gan import DISCRIMINATOR, Adversarial

        patch = int(meta.config["patch_size"])
        trainable[DISCRIMINATOR] = Adversarial.from_dict(meta.adversarial).template((1, patch, patch, model.channels))
    return trainable, frozen


@dataclasses.dataclass(frozen=True)
class ControllableModel:
    """A trained model: ``model(x, control)`` with x (N, H, W, C) in [0, 1] (0..255 floats are refused).

    control: a ``ctl_jax.Control`` (or a scalar alpha) in the run's control space: 0 = level A,
    1 = level B, per dimension. A base run ignores the control (it has one level).
    """

    network: Any          # the Flax module
    tuner: Any            # None for a base run
    theta0: Any
    phi: Any
    task: Any
    meta: RunMeta
    workdir: str = ""
    step: int = 0

    @classmethod
    def in_memory(cls, spec, task, theta0, phi=None, tuner=None, input_size: int = 32,
                  name: str = "") -> "ControllableModel":
        """A model from trees held in memory (what ``load_run`` returns for a run folder): the base
        network ``spec`` (for AdaFM, the slotted one) with ``theta0``, tuned by ``tuner`` with
        ``phi`` (a tuner name or object; None for a base model). ``input_size``: the side of the
        training crops the meta records; ``name``: what reports call it."""
        tuner = make_tuner(tuner) if isinstance(tuner, (str, dict)) else tuner
        meta = RunMeta(network=spec.to_dict(), tuner=tuner_to_spec(tuner) if tuner else None,
                       stage="tune" if tuner else "base", task=task.to_dict(),
                       target=("range" if tuner.stages == 1 else "b") if tuner else "a", config={},
                       input_shape=(1, input_size, input_size, spec.channels))
        return cls(spec.build(), tuner, theta0, phi, task, meta, workdir=name)

    @property
    def name(self) -> str:
        return Path(self.workdir).name or (self.tuner.name if self.tuner else "base")

    @property
    def control_dim(self) -> int:
        return self.tuner.control_dim if self.tuner else self.task.dim

    @property
    def channels(self) -> int:
        return self.meta.input_shape[-1]

    def __call__(self, x, control=0.0):
        if not isinstance(x, jax.core.Tracer):  # values are unknown under jit
            check_unit_scale(x, "the model input", strict=False)
        x = jnp.asarray(x, jnp.float32)
        if self.tuner is None:
            as_control(control).check(x.shape[0], self.control_dim, "this base model")
            return self.network.apply({"params": self.theta0}, x)
        return self.tuner.apply(self.network, self.theta0, self.phi, x, control)

    def control_for(self, levels) -> Control:
        """The linearly expected control of degradation levels (D,) as a global Control."""
        return Control.vector(np.asarray(self.task.control_for(np.ravel(levels)), np.float32))

    def __hash__(self):
        return id(self)


def _restore(workdir, step, meta: RunMeta):
    trainable_t, frozen_t = run_templates(meta)
    with Checkpointer(workdir) as ckpt:
        return ckpt.restore(trainable_t, frozen_t or None, step=step)


def load_run(workdir, step: int | None = None) -> ControllableModel:
    """Read any run folder (read-only) as a :class:`ControllableModel`. ``step``: default the latest.

    ValueError naming the runs inside when ``workdir`` is an experiment folder rather than a run.
    """
    workdir = Path(workdir)
    if not checkpoint_dir(workdir).is_dir():
        inside = sorted(p.name for p in workdir.glob("*") if checkpoint_dir(p).is_dir()) if workdir.is_dir() else []
        if inside:
            raise FileNotFoundError(f"{workdir} is an experiment folder, not a run; pick one of its runs: "
                                    + ", ".join(str(workdir / n) for n in inside))
        raise FileNotFoundError(f"{workdir} holds no checkpoint (not a run folder)")
    with Checkpointer(workdir) as ckpt:
        raw = ckpt.read_meta(step)
    meta = RunMeta.from_dict(raw)
    restored = _restore(workdir, step, meta)
    task = task_from_dict(meta.task)
    network = meta.spec.build()
    params = restored["trainable"]["params"]
    if meta.stage == "base":
        return ControllableModel(network, None, params, None, task, meta, str(workdir), restored["step"])
    tuner = make_tuner(meta.tuner)
    theta0 = (restored["frozen"] or {}).get("theta0", {})
    return ControllableModel(network, tuner, theta0, params, task, meta, str(workdir), restored["step"])


def describe_run(workdir) -> str:
    with Checkpointer(workdir) as ckpt:
        return describe(ckpt.read_meta())
