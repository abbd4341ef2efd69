"""Decoupled learning end to end: config -> trained operator model -> PSNR/SSIM per parameter value.

A config (``experiments/operators.py``) is a dict:

    network:   NetworkSpec fields (name "decouple_net", variant, channels)
    operators: operator names; one gives gamma (1,), several add the operator id
    method:    "hyper" (weight-learning network) or "baseline18" (gamma as input channels)
    hyper:     {"preset": a ctl_jax.tuners.hyper.PRESETS name (or "predict": [patterns], "part": ...),
                "hidden": None | int, "relu": bool}
    train:     TrainConfig fields
    values:    None, or {operator: [values]}: train only on cached pairs at these values (the
               "single" networks of Tables I-II and the fixed values of Table XIV)
    per_sample: "map" (each sample its own weights), "vmap", or "shared" (one gamma per batch;
               needs a cache made with fixed values shared by the images)
"""

from __future__ import annotations

from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.data.operator_pairs import OperatorPairSampler, load_operator_cache
from ctl_jax.eval.metrics import psnr, ssim
from ctl_jax.eval.sweep import crop_to_multiple
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.train.hyper_trainer import OperatorModel, load_operator_model, train_hyper
from ctl_jax.train.trainer import TrainConfig
from ctl_jax.tuners.gamma import GammaSpace
from ctl_jax.tuners.hyper import Hypernet


def hypernet_of(config: dict, gamma_space: GammaSpace) -> Hypernet | None:
    """The config's hypernetwork, or None for baseline [18]."""
    method = config.get("method", "hyper")
    if method == "baseline18":
        return None
    if method != "hyper":
        raise ValueError(f"method must be 'hyper' or 'baseline18'; got {method!r}")
    h = config.get("hyper", {})
    options = dict(gamma_dim=gamma_space.dim, hidden=h.get("hidden"), relu=h.get("relu", False))
    if h.get("predict"):  # explicit leaf patterns, e.g. ["norm13/*"] for networks numbered unlike the paper's
        return Hypernet(tuple(h["predict"]), h.get("part", "all"), **options)
    return Hypernet.preset(h.get("preset", "all-convs"), **options)


def _selected(pairs, values: dict | None):
    if not values:
        return pairs
    chosen = [p for p in pairs if any(np.isclose(p.value, v, rtol=1e-6) for v in values.get(p.operator, ()))]
    if not chosen:
        raise ValueError(f"the cache has no pairs at the requested values {values}")
    return chosen


def train_operator_model(config: dict, cache_dirs, workdir) -> OperatorModel:
    """Train the config's model on the pairs in ``cache_dirs`` (one cache folder or several);
    resumes in ``workdir``."""
    gamma_space = GammaSpace(tuple(config["operators"]))
    train = TrainConfig(**config["train"])
    pairs = _selected(load_operator_cache(cache_dirs, gamma_space.operators), config.get("values"))
    per_sample = config.get("per_sample", "map")
    sampler = OperatorPairSampler(pairs, gamma_space, train.patch_size, train.batch_size, train.seed,
                                  shared_gamma=per_sample == "shared")
    train_hyper(NetworkSpec(**config["network"]), hypernet_of(config, gamma_space), gamma_space, sampler, workdir,
                train, per_sample=per_sample)
    return load_operator_model(workdir)


def evaluate_operator_model(model: OperatorModel, test_cache, operator: str, values=None) -> dict:
    """Mean PSNR / SSIM (RGB, [0, 1] scale) of the model against the operator's own output.

    The test pairs come from ``test_cache`` (``prepare_operator_cache`` with fixed values); returns
    ``{value: {"psnr": dB, "ssim": float, "images": n}}`` for each value present (or in ``values``).
    """
    pairs = load_operator_cache(test_cache, [operator])
    by_value = defaultdict(list)
    for p in pairs:
        by_value[round(p.value, 6)].append(p)
    if values is not None:
        by_value = {round(float(v), 6): by_value[round(float(v), 6)] for v in values}
    apply = jax.jit(lambda x, g: model(x, g))
    results = {}
    for value, group in sorted(by_value.items()):
        if not group:
            raise ValueError(f"{test_cache} has no {operator} pairs at {value}")
        gamma = jnp.asarray(model.gamma(operator, value))
        scores = []
        for p in group:
            # the networks' stride-2 body needs even sizes
            x = crop_to_multiple(p.input.astype(np.float32) / 255, 2)
            target = crop_to_multiple(p.target.astype(np.float32) / 255, 2)
            out = np.clip(np.asarray(apply(jnp.asarray(x)[None], gamma))[0], 0, 1)
            out = np.round(out * 255) / 255  # as the saved images the paper compares
            scores.append((float(psnr(out, target)), float(ssim(out, target))))
        results[value] = {"psnr": float(np.mean([s[0] for s in scores])),
                          "ssim": float(np.mean([s[1] for s in scores])), "images": len(group)}
    return results


def with_overrides(config: dict, **changes) -> dict:
    """A copy of ``config`` with top-level keys replaced (and ``train`` merged)."""
    out = dict(config)
    for key, value in changes.items():
        out[key] = {**config[key], **value} if key == "train" else value
    return out

