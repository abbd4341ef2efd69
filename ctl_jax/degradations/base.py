"""What a degradation is: a corruption with one continuous level, registered by name.

Images are float32 NHWC in [0, 1]. ``apply(key, clean, levels)`` degrades a batch (N, H, W, C)
with one level per sample, ``levels`` (N,). Where each runs (DESIGN.md principle 8): ``on_device``
kinds are JAX functions that run inside the jitted training step; the others (JPEG, the real
codec) run on the host in the loader, with numpy inputs. Kinds whose output size depends on the
level (down-sampling) need one level for the whole batch (``same_level``).

Adding a degradation is one new file in this package that calls :func:`register`; the package
imports every module in it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class DegradationKind:
    """A registered degradation.

    name: its config name; parameter: what the level is ("sigma", "quality", ...); label: the
    prefix of a level in tables ("σ=" makes "σ=20"); low, high: the valid levels (inclusive);
    integer: only whole levels; on_device: ``apply`` is a JAX function (else numpy, on the host);
    same_level: one level per batch (resizing kinds); scale: level -> output size / input size;
    apply: (key, clean (N, H, W, C), levels (N,)) -> degraded, not clipped.
    """

    name: str
    parameter: str
    label: str
    low: float
    high: float
    apply: Callable
    integer: bool = False
    on_device: bool = True
    same_level: bool = False
    scale: Callable[[float], float] = lambda level: 1.0

    def check(self, level) -> float:
        """``level`` as a float; ValueError naming the valid range otherwise."""
        value = float(level)
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise ValueError(f"{self.name} {self.parameter} must lie in [{self.low:g}, {self.high:g}]; got {level}")
        if self.integer and value != round(value):
            raise ValueError(f"{self.name} {self.parameter} must be a whole number; got {level}")
        return value

    def format(self, level) -> str:
        """"σ=20", "q=10", "×2"."""
        return f"{self.label}{float(level):g}"


KINDS: dict[str, DegradationKind] = {}


def register(kind: DegradationKind) -> DegradationKind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> DegradationKind:
    """The degradation registered as ``name``; ValueError listing the known ones otherwise."""
    if name not in KINDS:
        raise ValueError(f"unknown degradation {name!r}; choose one of {sorted(KINDS)}")
    return KINDS[name]


def check_level(name: str, level) -> float:
    """ValueError unless ``level`` is valid for degradation ``name``; returns it as a float."""
    return get_kind(name).check(level)


def per_sample(levels, n: int, xp=np):
    """levels as an (n,) float32 array (a scalar is broadcast)."""
    levels = xp.asarray(levels, xp.float32)
    return xp.broadcast_to(levels.reshape(-1), (n,)) if levels.size in (1, n) else levels
