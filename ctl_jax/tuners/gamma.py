"""The control vector gamma of a decoupled-learning model: operator parameters, then an operator id.

Every operator's parameter is mapped to [0, 1] by its position in the operator's range (log or
linear, ``OperatorSpec.normalise``), so all operators share one numerical range; the paper rescales
to a common range for the same reason (Section 4.4). A model trained on several operators gets a
second entry, the operator id ``(i + 1) / n`` for the i-th of n operators (the paper's 0.1 .. 1.0
for ten operators). gamma is (1,) for one operator and (2,) for several.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class GammaSpace:
    """The operators a model was trained on, in order; see the module docstring."""

    operators: tuple[str, ...]

    def __post_init__(self):
        from ctl_jax.operators import get_operator

        if not self.operators:
            raise ValueError("a GammaSpace needs at least one operator")
        if len(set(self.operators)) != len(self.operators):
            raise ValueError(f"operators listed twice: {self.operators}")
        for name in self.operators:
            get_operator(name)  # ValueError for unknown names
        object.__setattr__(self, "operators", tuple(self.operators))

    @property
    def dim(self) -> int:
        return 1 if len(self.operators) == 1 else 2

    def spec(self, operator: str):
        from ctl_jax.operators import get_operator

        if operator not in self.operators:
            raise ValueError(f"this model was trained on {list(self.operators)}, not on {operator!r}")
        return get_operator(operator)

    def encode(self, operator: str, value, clamp: bool = False) -> np.ndarray:
        """gamma (dim,) float32 for ``operator`` at parameter ``value``. Out-of-range values raise
        a ValueError naming the range, or are clipped into it with ``clamp=True``."""
        spec = self.spec(operator)
        position = spec.normalise(spec.check(value, clamp=clamp))
        if self.dim == 1:
            return np.array([position], np.float32)
        return np.array([position, (self.operators.index(operator) + 1) / len(self.operators)], np.float32)

    def check(self, gamma):
        """Validate a gamma given directly: shape (dim,) or (N, dim), and finite when concrete.
        Returns it as a float32 array (traced values stay traced)."""
        gamma = jnp.asarray(gamma, jnp.float32)
        if gamma.shape[-1:] != (self.dim,) or gamma.ndim not in (1, 2):
            raise ValueError(f"gamma must have shape ({self.dim},) or (N, {self.dim}) for operators "
                             f"{list(self.operators)}; got {gamma.shape}")
        if not isinstance(gamma, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(gamma))):
            raise ValueError(f"gamma must be finite; got {gamma}")
        return gamma

    def to_dict(self) -> dict:
        return {"operators": list(self.operators)}

    @classmethod
    def from_dict(cls, d: dict) -> "GammaSpace":
        return cls(tuple(d["operators"]))
