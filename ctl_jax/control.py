"""The control value in one explicit form (DESIGN.md principle 6).

A :class:`Control` holds a float32 array of shape ``(B, H, W, D)``:

- ``D``: the number of control dimensions (1 for alpha; 2 for noise + JPEG, ...);
- ``B``: 1 (the same for every sample) or N (one per sample);
- ``H, W``: 1 x 1 (the same for every pixel) or a per-pixel map at any resolution; each layer or
  mixing point sees the map resized to its own resolution (:meth:`Control.resized`).

So a global alpha is ``(1, 1, 1, 1)``, per-sample alphas ``(N, 1, 1, 1)``, a per-pixel map
``(N|1, H, W, 1)``. The constructors say which form is meant; nothing is inferred from the rank of
a bare array. A Python or 0-d scalar is the one bare value accepted (:func:`as_control`): it can
only mean one global alpha. Values outside [0, 1] extrapolate; concrete values must be finite.

``Control`` is a pytree with one leaf, so ``jax.vmap`` over a grid of controls and ``jax.jit`` with a
control argument work, and a new value never recompiles (only a new shape does).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def _check_finite(values: jax.Array, what: str) -> None:
    if not isinstance(values, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(values))):
        shown = np.asarray(values).ravel()[:6]
        raise ValueError(f"{what} must be finite; got values such as {shown} (NaN or inf)")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Control:
    """A control value of shape (B, H, W, D); build it with the class methods, not directly."""

    values: jax.Array

    def __post_init__(self):
        if getattr(self.values, "ndim", None) != 4:
            raise ValueError(f"Control values must be (B, H, W, D); got shape {jnp.shape(self.values)}: "
                             "use Control.scalar, .vector, .per_sample or .per_pixel")

    # -- constructors ----------------------------------------------------------------------------

    @classmethod
    def scalar(cls, alpha) -> "Control":
        """One alpha for every sample and pixel (D = 1)."""
        a = jnp.asarray(alpha, jnp.float32)
        if a.ndim:
            raise ValueError(f"Control.scalar takes one value; got shape {a.shape} "
                             "(per-sample: Control.per_sample; D values: Control.vector)")
        _check_finite(a, "alpha")
        return cls(a.reshape(1, 1, 1, 1))

    @classmethod
    def vector(cls, values) -> "Control":
        """One D-dimensional control (D,) for every sample and pixel, e.g. (noise, JPEG)."""
        v = jnp.asarray(values, jnp.float32)
        if v.ndim != 1 or v.shape[0] < 1:
            raise ValueError(f"Control.vector takes a (D,) vector; got shape {v.shape}")
        _check_finite(v, "control")
        return cls(v.reshape(1, 1, 1, -1))

    @classmethod
    def per_sample(cls, values) -> "Control":
        """One control per sample: (N,) for D = 1, or (N, D)."""
        v = jnp.asarray(values, jnp.float32)
        if v.ndim == 1:
            v = v[:, None]
        if v.ndim != 2 or v.shape[0] < 1:
            raise ValueError(f"Control.per_sample takes (N,) or (N, D); got shape {v.shape}")
        _check_finite(v, "control")
        return cls(v[:, None, None, :])

    @classmethod
    def per_pixel(cls, values) -> "Control":
        """A control map: (H, W) for one D = 1 map shared by the batch, or (N|1, H, W, D)."""
        v = jnp.asarray(values, jnp.float32)
        if v.ndim == 2:
            v = v[None, :, :, None]
        if v.ndim != 4 or min(v.shape) < 1:
            raise ValueError(f"Control.per_pixel takes an (H, W) map or (N|1, H, W, D); got shape {v.shape}")
        _check_finite(v, "alpha map")
        return cls(v)

    # -- queries ---------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """D, the number of control dimensions."""
        return self.values.shape[-1]

    @property
    def is_pixel(self) -> bool:
        """True for a map with more than one pixel."""
        return self.values.shape[1:3] != (1, 1)

    @property
    def is_global(self) -> bool:
        """True when one value holds for every sample and pixel."""
        return self.values.shape[:3] == (1, 1, 1)

    @property
    def kind(self) -> str:
        """"global", "per-sample" or "per-pixel" (for messages)."""
        return "per-pixel" if self.is_pixel else "global" if self.is_global else "per-sample"

    def check(self, batch: int, dim: int, method: str = "this model", pixel: bool = True) -> "Control":
        """ValueError unless this control suits a batch of ``batch`` images and a D=``dim`` model."""
        if self.dim != dim:
            raise ValueError(f"{method} takes {dim}-dimensional control; got a {self.dim}-dimensional one")
        if self.values.shape[0] not in (1, batch):
            raise ValueError(f"control has {self.values.shape[0]} samples for a batch of {batch} images")
        if self.is_pixel and not pixel:
            raise ValueError(f"{method} cannot take a per-pixel control map; give a global or per-sample value")
        return self

    def global_value(self) -> jax.Array:
        """The (D,) value of a global control (ValueError otherwise)."""
        if not self.is_global:
            raise ValueError(f"a global control was needed; got a {self.kind} one {self.values.shape}")
        return self.values[0, 0, 0]

    def per_sample_values(self, batch: int) -> jax.Array:
        """(N, D) per-sample values; a per-pixel map gives its mean over pixels."""
        v = jnp.mean(self.values, axis=(1, 2)) if self.is_pixel else self.values[:, 0, 0]
        return jnp.broadcast_to(v, (batch, self.dim))

    def resized(self, height: int, width: int, batch: int | None = None) -> jax.Array:
        """The values as (B, height, width, D) (B = ``batch`` when given): bilinear resizing of a map
        (half-pixel centres, no antialiasing), broadcasting of a global or per-sample value."""
        v = self.values
        b = v.shape[0] if batch is None else batch
        if self.is_pixel and v.shape[1:3] != (height, width):
            v = jax.image.resize(v, (v.shape[0], height, width, v.shape[-1]), method="linear", antialias=False)
        return jnp.broadcast_to(v, (b, height, width, v.shape[-1]))

    def component(self, d: int) -> "Control":
        """The D = 1 control of dimension ``d``."""
        return Control(self.values[..., d:d + 1])


def as_control(control) -> Control:
    """A :class:`Control`, or a Python / 0-d scalar taken as one global alpha. Arrays of other ranks
    are refused: say which form is meant with ``Control.per_sample`` / ``.per_pixel`` / ``.vector``."""
    if isinstance(control, Control):
        return control
    if np.ndim(control) == 0:
        return Control.scalar(control)
    raise TypeError(f"a bare array of shape {np.shape(control)} is ambiguous as a control: wrap it with "
                    "ctl.Control.per_sample(...), ctl.Control.per_pixel(...) or ctl.Control.vector(...)")
