"""Loss terms by name, and a task's loss as a weighted list of them (DESIGN.md principle 10).

A term is ``fn(pred, target) -> scalar`` over (N, H, W, C) batches. Perceptual, style, GAN and TV
terms register here the same way (``register_loss``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax.numpy as jnp


def l1_loss(pred, target):
    """Mean absolute error over all elements."""
    return jnp.mean(jnp.abs(pred - target))


def l2_loss(pred, target):
    """Mean squared error over all elements."""
    return jnp.mean(jnp.square(pred - target))


LOSSES: dict[str, Callable] = {"l1": l1_loss, "l2": l2_loss}


def register_loss(name: str, fn: Callable) -> Callable:
    LOSSES[name] = fn
    return fn


def check_terms(terms) -> tuple[tuple[str, float], ...]:
    """A loss given as "l1", or as [("l1", 1.0), ("l2", 0.5)] -> a tuple of (name, weight) pairs."""
    if isinstance(terms, str):
        terms = ((terms, 1.0),)
    out = []
    for term in terms:
        if isinstance(term, str) or len(term) != 2:
            raise ValueError(f"a loss term is (name, weight); got {term!r}")
        name, weight = term
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
        out.append((str(name), float(weight)))
    if not out:
        raise ValueError("a loss needs at least one term")
    return tuple(out)


def weighted_loss(terms: Sequence[tuple[str, float]], pred, target):
    """sum_i w_i * LOSSES[name_i](pred, target)."""
    return sum(weight * LOSSES[name](pred, target) for name, weight in terms)


from ctl_jax.losses import gan as _gan  # noqa: E402,F401  registers "perceptual"
