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
