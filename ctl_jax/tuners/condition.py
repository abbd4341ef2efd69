"""The conditional tuner kind: the level is an input map of the network (DESIGN.md principle 5).

The network takes ``(x, cond)`` and is trained over a range of levels in one stage, so there is no
base tree (``theta0 = {}``) and ``phi`` is the whole network's parameters. Examples: FFDNet (its
noise-level map M, ``ctl_jax.nets.ffdnet``) and decoupled learning's baseline [18]
(``DecoupleNet(condition_channels=D)``, gamma as input channels).

The condition map is an affine function of the control, per dimension d::

    cond[n, h, w, d] = offset[d] + scale[d] * control.resized(H, W, N)[n, h, w, d]

so a control of any form (global, per-sample, a per-pixel map at any resolution) becomes the
(N, H, W, D) map at the input's resolution; a per-pixel map is native, not an approximation.
``Conditional.level_range`` covers the usual case: control 0..1 spans levels ``low..high`` and the
network sees ``level / unit``; FFDNet over sigma 0..75 is ``Conditional.level_range(0, 75)``
(the map holds sigma / 255, the paper's M). Control 0 is then the bottom of the trained range and
control 1 its top (the protocol's convention for one-stage tuners); outside [0, 1] extrapolates.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.tuners.base import Tuner
from ctl_jax.tuners.trees import Params


def _per_dim(values, dim: int, what: str) -> tuple[float, ...]:
    """A float or sequence as a D-tuple of finite floats (one value is repeated)."""
    v = tuple(float(a) for a in np.ravel(values))
    if len(v) == 1:
        v = v * dim
    if len(v) != dim or not all(math.isfinite(a) for a in v):
        raise ValueError(f"{what} needs 1 or {dim} finite values (control_dim={dim}); got {values!r}")
    return v


@dataclasses.dataclass(frozen=True)
class Conditional(Tuner):
    """Conditional tuner; see the module docstring.

    control_dim: D, the control dimensions (the network's condition channels);
    scale, offset: the affine map from control to the network's units, one value or D values.
    """

    name: str = "conditional"
    control_dim: int = 1
    scale: tuple[float, ...] = (1.0,)
    offset: tuple[float, ...] = (0.0,)

    kind = "conditional"
    stages = 1
    pixel = True

    def __post_init__(self):
        if self.control_dim < 1:
            raise ValueError(f"control_dim must be >= 1; got {self.control_dim}")
        object.__setattr__(self, "scale", _per_dim(self.scale, self.control_dim, "scale"))
        object.__setattr__(self, "offset", _per_dim(self.offset, self.control_dim, "offset"))

    @classmethod
    def level_range(cls, low, high, unit: float = 255.0, **kw) -> "Conditional":
        """Control 0..1 -> level ``low..high`` (one value or D values each); the network sees
        ``level / unit``. FFDNet over sigma 0..75: ``level_range(0, 75)``."""
        dim = kw.get("control_dim", 1)
        lo, hi = _per_dim(low, dim, "low"), _per_dim(high, dim, "high")
        return cls(scale=tuple((h - l) / unit for l, h in zip(lo, hi)), offset=tuple(l / unit for l in lo), **kw)

    def condition(self, control, x: jax.Array) -> jax.Array:
        """The (N, H, W, D) condition map for images x (N, H, W, C) at ``control`` (float32)."""
        n, h, w = x.shape[:3]
        values = self.check_control(control, n).resized(h, w, n)
        return jnp.asarray(self.offset, jnp.float32) + jnp.asarray(self.scale, jnp.float32) * values

    def init(self, key: jax.Array, theta0: Params, model: nn.Module | None = None, x=None) -> Params:
        """phi = the network's parameters, initialised on ``x`` (N, H, W, C) with a zero condition map."""
        if theta0:
            raise ValueError("the conditional tuner is one-stage: it has no base tree; pass theta0 = {}")
        if model is None or x is None:
            raise ValueError("Conditional.init needs the network and an example input batch x")
        return model.init(key, x, jnp.zeros(x.shape[:3] + (self.control_dim,), jnp.float32))["params"]

    def apply(self, model: nn.Module, theta0: Params, phi: Params, x: jax.Array, control) -> jax.Array:
        """``model(x, cond(control))`` with phi; theta0 is unused (``{}``)."""
        del theta0
        return model.apply({"params": phi}, x, self.condition(control, x))
