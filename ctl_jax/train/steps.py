"""Jitted training steps. Stage 2 differentiates only what it trains (DESIGN.md principle 7)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax


def l1_loss(pred, target):
    """Mean absolute error over all elements."""
    return jnp.mean(jnp.abs(pred - target))


def l2_loss(pred, target):
    """Mean squared error over all elements."""
    return jnp.mean(jnp.square(pred - target))


LOSSES = {"l1": l1_loss, "l2": l2_loss}


def make_base_step(model, optimizer: optax.GradientTransformation, loss_fn=l1_loss):
    """Stage-1 step ``(theta, opt_state, degraded, clean) -> (theta, opt_state, loss)``.

    Trains every parameter of the base network; ``theta`` and ``opt_state`` are donated.
    """

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def base_step(theta, opt_state, degraded, clean):
        def loss_of(theta):
            return loss_fn(model.apply({"params": theta}, degraded), clean)

        loss, grads = jax.value_and_grad(loss_of)(theta)
        updates, opt_state = optimizer.update(grads, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, loss

    return base_step


def make_tune_step(model, tuner, optimizer: optax.GradientTransformation, loss_fn=l1_loss):
    """Stage-2 step ``(phi, opt_state, theta0, degraded, clean) -> (phi, opt_state, loss)``.

    The tuner is trained at alpha = 1 (the endpoint network). Gradients are taken with respect to
    ``phi`` only, so the base ``theta0`` is frozen by construction: it is an input that is neither
    differentiated nor returned, and it has no optimizer state. ``phi`` and ``opt_state`` are
    donated; ``theta0`` is not.
    """

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def tune_step(phi, opt_state, theta0, degraded, clean):
        def loss_of(phi):
            theta1 = tuner.endpoint(phi, theta0)
            return loss_fn(model.apply({"params": theta1}, degraded), clean)

        loss, grads = jax.value_and_grad(loss_of)(phi)
        updates, opt_state = optimizer.update(grads, opt_state, phi)
        return optax.apply_updates(phi, updates), opt_state, loss

    return tune_step
