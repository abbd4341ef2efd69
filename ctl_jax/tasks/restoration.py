"""Restoration: undo a chain of degradations whose levels the control sets.

A clean crop becomes ``input = d_D(...d_1(clean, l_1)..., l_D)`` (the degradations in order, e.g.
blur -> noise -> JPEG as in CResMD) and the target is the clean crop. Each dimension d has a level
A_d (control 0) and B_d (control 1); control ``c = (L - A) / (B - A)`` per dimension (the FTN
paper's "linearly expected" alpha of level L), and values outside [0, 1] mean levels outside [A, B].
``fixed`` degradations run first, at one level that no control changes: super-resolution with a
controlled noise level is ``Restoration("noise", 5, 30, fixed=[("bicubic_lr", 2)])``, whose input is
half the target's size.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.degradations import get_kind
from ctl_jax.losses import check_terms, weighted_loss
from ctl_jax.tasks.base import Batch, check_target

METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")


def _tuple(values, name: str) -> tuple:
    values = (values,) if np.isscalar(values) else tuple(values)
    if not values:
        raise ValueError(f"{name} needs at least one value")
    return values


def level_tag(level: float) -> int:
    """An integer naming a level for ``jax.random.fold_in`` (milli-units, so 12.5 and 12 differ)."""
    return int(round(float(level) * 1000)) % (2 ** 32)


@dataclasses.dataclass(frozen=True)
class Restoration:
    """degradations: names (``ctl_jax.degradations``), applied in order; level_a / level_b: one level
    per degradation (control 0 and 1); loss: "l1", "l2" or weighted terms."""

    degradations: tuple = ("noise",)
    level_a: tuple = (20.0,)
    level_b: tuple = (80.0,)
    loss: tuple = (("l1", 1.0),)
    fixed: tuple = ()
    name: str = "restoration"
    metrics = METRICS

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("degradations", tuple(str(d) for d in _tuple(self.degradations, "degradations")))
        set_("level_a", tuple(float(v) for v in _tuple(self.level_a, "level_a")))
        set_("level_b", tuple(float(v) for v in _tuple(self.level_b, "level_b")))
        set_("loss", check_terms(self.loss))
        set_("fixed", tuple((str(n), get_kind(str(n)).check(v)) for n, v in self.fixed))
        if not len(self.degradations) == len(self.level_a) == len(self.level_b):
            raise ValueError(f"one level A and one level B per degradation: {self.degradations} with "
                             f"level_a={self.level_a}, level_b={self.level_b}")
        for kind, a, b in zip(self.kinds, self.level_a, self.level_b):
            kind.check(a), kind.check(b)
            if a == b:
                raise ValueError(f"{kind.name}: levels A and B must differ; both are {a:g}")

    # -- levels and control ------------------------------------------------------------------

    @property
    def kinds(self):
        return tuple(get_kind(d) for d in self.degradations)

    @property
    def dim(self) -> int:
        """D: one control dimension per degradation."""
        return len(self.degradations)

    def check_levels(self, levels) -> np.ndarray:
        """levels (D,) or (L, D) -> float64 array of the same shape, each valid for its degradation."""
        arr = np.asarray(levels, np.float64)
        if self.dim == 1 and arr.ndim <= 1:  # one level, or (L,) levels of a 1-D task
            arr = arr.reshape(-1, 1)
        if arr.ndim == 0 or arr.shape[-1] != self.dim or arr.ndim > 2:
            raise ValueError(f"levels must be (D,) or (L, D) with D = {self.dim} ({', '.join(self.degradations)}); "
                             f"got shape {np.shape(levels)}")
        for row in arr.reshape(-1, self.dim):
            for kind, level in zip(self.kinds, row):
                kind.check(level)
        return arr

    def control_for(self, levels) -> np.ndarray:
        """The linearly expected control of levels (..., D): (L - A) / (B - A) per dimension."""
        a, b = np.asarray(self.level_a), np.asarray(self.level_b)
        return (np.asarray(levels, np.float64) - a) / (b - a)

    def level_for(self, control) -> np.ndarray:
        """Inverse of :meth:`control_for`."""
        a, b = np.asarray(self.level_a), np.asarray(self.level_b)
        return a + np.asarray(control, np.float64) * (b - a)

    def label(self, levels) -> str:
        """"σ=20" or "σ=20, q=30"."""
        return ", ".join(k.format(v) for k, v in zip(self.kinds, np.ravel(levels)))

    @property
    def on_device(self) -> bool:
        return all(k.on_device for k in self.kinds) and all(get_kind(n).on_device for n, _ in self.fixed)

    def input_multiple(self, levels) -> int:
        """What H and W of a clean image must be multiples of so that every level (L, D) fits."""
        multiple = 1
        for name, level in self.fixed:
            if get_kind(name).same_level:
                multiple = math.lcm(multiple, int(level))
        for row in np.asarray(levels).reshape(-1, self.dim):
            for kind, level in zip(self.kinds, row):
                if kind.same_level:
                    multiple = math.lcm(multiple, int(level))
        return multiple

    # -- training batches --------------------------------------------------------------------

    def step_levels(self, seed: int, step: int, n: int, target: str) -> np.ndarray:
        """(n, D) float32 levels of step ``step``: A, B, or uniform per sample over [A, B]
        (whole numbers for integer kinds, one per batch for resizing kinds)."""
        check_target(target)
        if target != "range":
            return np.tile(np.asarray(self.level_a if target == "a" else self.level_b, np.float32), (n, 1))
        rng = np.random.default_rng([seed, step, 0x7e7e])
        cols = []
        for kind, a, b in zip(self.kinds, self.level_a, self.level_b):
            lo, hi = min(a, b), max(a, b)
            if kind.integer:
                col = rng.integers(round(lo), round(hi) + 1, size=1 if kind.same_level else n).astype(np.float32)
            else:
                col = rng.uniform(lo, hi, size=n).astype(np.float32)
            cols.append(np.broadcast_to(col, (n,)))
        return np.stack(cols, axis=1)

    def degrade(self, key, clean, levels):
        """Apply the chain to a batch: clean (N, H, W, C), levels (N, D). JAX when every kind runs on
        device (jit-able), else eagerly with the host kinds in numpy."""
        x = clean
        for name, level in self.fixed:
            kind = get_kind(name)
            key, sub = jax.random.split(key)
            x = kind.apply(sub, x if kind.on_device else np.asarray(x), np.full((x.shape[0],), level, np.float32))
        for d, kind in enumerate(self.kinds):
            key, sub = jax.random.split(key)
            x = kind.apply(sub, x if kind.on_device else np.asarray(x), levels[:, d])
        return x

    def host_arrays(self, sampler, step: int, target: str, seed: int = 0) -> tuple:
        """(clean, levels, degraded or None) of step ``step``; degraded is made here when a kind
        must run on the host (JPEG), else inside the step."""
        clean = np.asarray(sampler.batch(step), np.float32)
        levels = self.step_levels(seed, step, clean.shape[0], target)
        if self.on_device:
            return clean, levels, None
        key = jax.random.fold_in(jax.random.key(seed), step)
        return clean, levels, np.asarray(self.degrade(key, clean, levels), np.float32)

    def device_batch(self, key, arrays, target: str) -> Batch:
        clean, levels, degraded = arrays
        if target != "range":  # the stage's levels are constants: resizing kinds need them concrete
            levels = self.step_levels(0, 0, clean.shape[0], target)
        x = self.degrade(key, clean, levels) if degraded is None else degraded
        control = (levels - jnp.asarray(self.level_a, jnp.float32)) / (
            jnp.asarray(self.level_b, jnp.float32) - jnp.asarray(self.level_a, jnp.float32))
        return Batch(x, clean, control.astype(jnp.float32))

    def loss_value(self, pred, target):
        return weighted_loss(self.loss, pred, target)

    def input_shape(self, patch_size: int, channels: int, target: str = "a") -> tuple:
        """(1, h, w, C) of the network input for (1, P, P, C) crops at the target's levels."""
        levels = self.step_levels(0, 0, 1, "a" if target == "range" else target)[0]
        size = float(patch_size)
        for name, level in self.fixed:
            size *= get_kind(name).scale(level)
        for kind, level in zip(self.kinds, levels):
            size *= kind.scale(level)
        return (1, int(round(size)), int(round(size)), channels)

    # -- evaluation --------------------------------------------------------------------------

    def eval_input(self, clean: np.ndarray, levels, *, seed: int = 0, index: int = 0):
        """The degraded version of one clean (H, W, C) image at levels (D,); deterministic in
        (seed, image index, levels), not clipped (as in training)."""
        levels = self.check_levels(levels).reshape(self.dim)
        key = jax.random.key(seed)
        for value in (index, *map(level_tag, levels)):
            key = jax.random.fold_in(key, value)
        x = self.degrade(key, jnp.asarray(clean, jnp.float32)[None], jnp.asarray(levels, jnp.float32)[None])
        return jnp.asarray(x)[0]

    def to_dict(self) -> dict:
        return {"kind": "restoration", "degradations": list(self.degradations), "level_a": list(self.level_a),
                "level_b": list(self.level_b), "loss": [list(t) for t in self.loss],
                "fixed": [list(f) for f in self.fixed]}
