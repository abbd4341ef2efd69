"""What a task is (DESIGN.md principle 10): how training samples become batches, the loss, the metrics.

A task turns what its sampler yields for step ``i`` into a :class:`Batch` of (input, target,
control), in two halves so that host-only work (JPEG, cached pairs) stays in the loader and
everything else runs inside the jitted step:

- ``host_arrays(sampler, step, target)`` -> a tuple of numpy arrays (deterministic in the step);
- ``device_batch(key, arrays, target)`` -> :class:`Batch`, jit-able (``key`` is the step's key).

``target`` says which levels a stage trains at: ``"a"`` (the base network, control 0), ``"b"``
(the tuner's endpoint, control 1) or ``"range"`` (levels drawn per sample over the whole range,
control = their position in it: one-stage tuners). The loss is a weighted list of terms
(``ctl_jax.losses``); ``metrics`` names what evaluation reports.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

TARGETS = ("a", "b", "range")


class Batch(NamedTuple):
    """input (N, h, w, C_in); target (N, H, W, C); control (N, D) float32 (0 = level A, 1 = level B)."""

    input: jax.Array
    target: jax.Array
    control: jax.Array


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"a stage trains at target 'a', 'b' or 'range'; got {target!r}")
    return target


class LevelIsControl:
    """For tasks whose level is the control itself (style, perceptual SR, generation): 0 = level A,
    1 = level B, values in between or beyond are the control. ``ENDPOINT_NAMES`` names 0 and 1 in
    labels."""

    level_a = (0.0,)
    level_b = (1.0,)
    dim = 1
    ENDPOINT_NAMES = ("level A", "level B")

    def check_levels(self, levels) -> np.ndarray:
        arr = np.asarray(levels, np.float64).reshape(-1, 1)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{self.name} levels (the control: 0 = {self.ENDPOINT_NAMES[0]}, 1 = "
                             f"{self.ENDPOINT_NAMES[1]}) must be finite; got {levels}")
        return arr

    def control_for(self, levels) -> np.ndarray:
        return np.asarray(levels, np.float64)

    def level_for(self, control) -> np.ndarray:
        return np.asarray(control, np.float64)

    def label(self, levels) -> str:
        value = float(np.ravel(levels)[0])
        return {0.0: self.ENDPOINT_NAMES[0], 1.0: self.ENDPOINT_NAMES[1]}.get(value, f"α={value:g}")
