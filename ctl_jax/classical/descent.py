"""Optimiser steps on a scalar objective inside one ``lax.scan`` (no host round-trip between steps),
shared by the image and kernel optimisations of ``ctl_jax.classical`` (Gatys, kernel estimation)."""

from __future__ import annotations

from typing import Callable

import jax
import optax


def scan_steps(value: Callable, optimizer: optax.GradientTransformation, params, state, length: int,
               *, lbfgs: bool = False):
    """``length`` steps of ``optimizer`` minimising ``value(params)`` (a scalar); call inside ``jit``.

    Returns (params, state, values): values (length,) is the objective before each step. ``lbfgs``:
    the optimizer is optax's L-BFGS, whose line search takes the value, the gradient and
    ``value_fn``; the value and gradient are reused from its state where it holds them
    (``optax.value_and_grad_from_state``).
    """
    value_and_grad = optax.value_and_grad_from_state(value) if lbfgs else None

    def step(carry, _):
        params, st = carry
        if lbfgs:
            v, g = value_and_grad(params, state=st)
            updates, st = optimizer.update(g, st, params, value=v, grad=g, value_fn=value)
        else:
            v, g = jax.value_and_grad(value)(params)
            updates, st = optimizer.update(g, st, params)
        return (optax.apply_updates(params, updates), st), v

    (params, state), values = jax.lax.scan(step, (params, state), None, length=length)
    return params, state, values
