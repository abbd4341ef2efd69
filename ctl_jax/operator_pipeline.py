"""Decoupled learning from a config: operator cache -> trained model (one stack: ``train_tuner``).

A config (``experiments/operators.py``) is a dict:

    network:   NetworkSpec fields (name "decouple_net", variant, channels)
    operators: operator names; one gives gamma (1,), several add the operator id
    method:    "hyper" (weight-learning network, ``HyperTuner``) or "baseline18" (gamma as input
               channels, the ``conditional`` tuner)
    hyper:     {"preset": a ctl_jax.tuners.hyper.PRESETS name (or "predict": [patterns], "part": ...),
                "hidden": None | int, "relu": bool}
    train:     TrainConfig fields
    values:    None, or {operator: [values]}: train only on cached pairs at these values (the
               "single" networks of Tables I-II and the fixed values of Table XIV)
    per_sample: "map" (each sample its own weights), "vmap", or "shared" (one gamma per batch;
               needs a cache made with fixed values shared by the images)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ctl_jax.data.operator_pairs import OperatorPairSampler, load_operator_cache
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.tasks.operators import OperatorImitation, evaluate_operator_model  # noqa: F401 (re-exported)
from ctl_jax.train.loop import TrainConfig
from ctl_jax.train.runs import load_run
from ctl_jax.train.supervised import train_tuner
from ctl_jax.tuners.hyper import Hypernet, HyperTuner


def tuner_of(config: dict, task: OperatorImitation):
    """The config's tuner: a ``HyperTuner`` or baseline [18]'s ``Conditional``."""
    method = config.get("method", "hyper")
    per_sample = config.get("per_sample", "map")
    if per_sample not in ("map", "vmap", "shared"):
        raise ValueError(f"per_sample must be 'map', 'vmap' or 'shared'; got {per_sample!r}")
    if method == "baseline18":
        from ctl_jax.tuners.condition import Conditional

        return Conditional(control_dim=task.dim)
    if method != "hyper":
        raise ValueError(f"method must be 'hyper' or 'baseline18'; got {method!r}")
    h = config.get("hyper", {})
    options = dict(gamma_dim=task.dim, hidden=h.get("hidden"), relu=h.get("relu", False),
                   per_sample="map" if per_sample == "shared" else per_sample)
    if h.get("predict"):  # explicit leaf patterns, e.g. ["norm13/*"] for networks numbered unlike the paper's
        return HyperTuner(tuple(h["predict"]), h.get("part", "all"), **options)
    preset = Hypernet.preset(h.get("preset", "all-convs"))  # ValueError for unknown presets
    return HyperTuner(preset.predict, preset.part, **options)


def _selected(pairs, values: dict | None):
    if not values:
        return pairs
    chosen = [p for p in pairs if any(np.isclose(p.value, v, rtol=1e-6) for v in values.get(p.operator, ()))]
    if not chosen:
        raise ValueError(f"the cache has no pairs at the requested values {values}")
    return chosen


def train_operator_model(config: dict, cache_dirs, workdir):
    """Train the config's model on the pairs in ``cache_dirs`` (one cache folder or several); resumes
    in ``workdir``. Returns the trained run as a ``ControllableModel`` (``load_run``)."""
    task = OperatorImitation(tuple(config["operators"]))
    tuner = tuner_of(config, task)
    spec = NetworkSpec(**config["network"])
    if spec.name != "decouple_net":
        raise ValueError(f"decoupled learning runs on the decouple_net network; got {spec.name!r}")
    spec = dataclasses.replace(spec, condition_channels=task.dim if tuner.kind == "conditional" else 0)
    train = TrainConfig(**config["train"])
    shared = config.get("per_sample", "map") == "shared"
    pairs = _selected(load_operator_cache(cache_dirs, task.operators), config.get("values"))
    sampler = OperatorPairSampler(pairs, task.gamma_space, train.patch_size, train.batch_size, train.seed,
                                  shared_gamma=shared)
    train_tuner(tuner, task, sampler, workdir, train, spec=spec, shared_control=shared)
    return load_run(workdir)


def with_overrides(config: dict, **changes) -> dict:
    """A copy of ``config`` with top-level keys replaced (and ``train`` merged)."""
    out = dict(config)
    for key, value in changes.items():
        out[key] = {**config[key], **value} if key == "train" else value
    return out

