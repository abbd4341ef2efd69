"""What an operator exposes: one continuous parameter with a valid range and a sampling scale.

Conventions shared by every operator in this package:

- an image is float32 ``(H, W, C)`` with ``C`` in {1, 3} and values in [0, 1]; operators return
  the same shape, clipped to [0, 1];
- the range ``[low, high]`` is the one the authors' training-data generation draws from
  (fqnchina/DecoupleLearning ``training_data_generation.m``, paper Table I);
- parameters are sampled uniformly in log space when ``log_scale`` (the paper's rule: when the
  upper bound is tens of times the lower one), else uniformly in linear space;
- ``normalise`` maps a value to its log or linear position in the range, in [0, 1]: the gamma
  the weight-learning network takes as input.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import jax.numpy as jnp
import numpy as np

# ITU-R BT.601 luma weights, as MATLAB's rgb2gray and rgb2ycbcr use.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def as_image(image) -> jnp.ndarray:
    """Validate an ``(H, W, C)`` image with C in {1, 3} and return it as a float32 JAX array."""
    image = jnp.asarray(image, jnp.float32)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected an (H, W, C) image with C = 1 or 3; got shape {image.shape}")
    return image


def luminance(image: jnp.ndarray) -> jnp.ndarray:
    """``(H, W, C) -> (H, W)``: the channel itself for grey, BT.601 luma for RGB."""
    if image.shape[-1] == 1:
        return image[..., 0]
    return image @ jnp.asarray(LUMA_WEIGHTS, image.dtype)


@dataclasses.dataclass(frozen=True)
class OperatorSpec:
    """A parameterised image operator and the range of its one continuous parameter.

    ``apply(image, value, ...)`` runs the operator. Filters return the filtered image (the
    training target); restoration operators return the degraded image (the training input,
    the clean image being the target) and take a third argument, a PRNG key or seed.
    ``integer`` marks parameters that only take whole values (JPEG quality, SR scale).
    """

    name: str
    kind: Literal["filter", "restoration"]
    parameter: str
    low: float
    high: float
    log_scale: bool
    default: float
    apply: Callable
    doc: str
    integer: bool = False

    def __post_init__(self):
        if self.kind not in ("filter", "restoration"):
            raise ValueError(f"{self.name}: kind must be 'filter' or 'restoration'; got {self.kind!r}")
        if not 0 < self.low < self.high:
            raise ValueError(f"{self.name}: need 0 < low < high; got [{self.low}, {self.high}]")
        if not self.low <= self.default <= self.high:
            raise ValueError(f"{self.name}: default {self.default} outside [{self.low}, {self.high}]")

    def check(self, value, clamp: bool = False) -> float:
        """Return ``value`` as a float if it lies in ``[low, high]``.

        Raises ValueError naming the operator, the parameter and the range when it does not (NaN
        included) or, for an integer parameter, when it is not whole. With ``clamp=True`` an
        out-of-range value is clipped (and an integer parameter rounded) instead; NaN still raises.
        """
        value = float(value)
        if np.isnan(value):
            raise ValueError(f"{self.name}: {self.parameter} is NaN; "
                             f"valid range is [{self.low}, {self.high}]")
        if clamp:
            value = min(max(value, self.low), self.high)
            return float(round(value)) if self.integer else value
        self._check_range(value)
        if self.integer and value != round(value):
            raise ValueError(f"{self.name}: {self.parameter} must be a whole number in "
                             f"[{self.low}, {self.high}]; got {value}")
        return value

    def _check_range(self, value: float) -> None:
        if not self.low <= value <= self.high:  # also False for NaN
            raise ValueError(f"{self.name}: {self.parameter} = {value} is outside the valid range "
                             f"[{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` values, uniform in log space if ``log_scale`` else in linear space, as float64.

        Integer parameters are uniform over the whole numbers in the range.
        """
        if self.integer:
            return rng.integers(round(self.low), round(self.high) + 1, size=n).astype(np.float64)
        if self.log_scale:
            return np.exp(rng.uniform(np.log(self.low), np.log(self.high), size=n))
        return rng.uniform(self.low, self.high, size=n)

    def grid(self, n: int) -> list[float]:
        """``n`` values evenly spaced in the sampling scale (log or linear), both ends included;
        whole numbers for integer parameters (duplicates dropped, so possibly fewer than n)."""
        if n < 1:
            raise ValueError(f"{self.name}: a grid needs n >= 1 values; got {n}")
        values = [self.denormalise(u) for u in np.linspace(0, 1, n)] if n > 1 else [self.default]
        return list(dict.fromkeys(float(round(v)) if self.integer else float(f"{v:.4g}") for v in values))

    def normalise(self, value) -> float:
        """Position of ``value`` in the range, in [0, 1]: log position if ``log_scale`` else linear.

        Whole-number parameters are mapped as continuous ones (the inverse of :meth:`denormalise`).
        """
        value = float(value)
        self._check_range(value)
        if self.log_scale:
            return float(np.log(value / self.low) / np.log(self.high / self.low))
        return (value - self.low) / (self.high - self.low)

    def denormalise(self, u) -> float:
        """Inverse of :meth:`normalise`: the parameter value at position ``u`` in [0, 1]."""
        u = float(u)
        if not 0.0 <= u <= 1.0:
            raise ValueError(f"{self.name}: normalised {self.parameter} must be in [0, 1]; got {u}")
        if self.log_scale:
            return float(self.low * (self.high / self.low) ** u)
        return self.low + u * (self.high - self.low)
