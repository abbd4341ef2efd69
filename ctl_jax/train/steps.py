"""Jitted training steps. Stage 2 differentiates only what it trains (DESIGN.md principle 7).

Micro-batches: a step can split each device's share of the batch into ``micro_batches`` equal
chunks and average their losses. The gradient is the full batch's (the losses are means over
equal-sized chunks, and no network here has batch statistics), but XLA now sees independent
forward/backward chains that it runs concurrently, each on cache-sized tensors. On a 2-core CPU
this makes the AdaFM-Net step (nb=16, nf=64, batch 16 of 96x96, 8 chunks) 20-29% faster in stage
1 and 32-37% in stage 2; chunks of fewer than about 16k pixels make weight-gradient convs slower
instead. On GPU/TPU one large batch is better. ``python benchmarks/train_step.py --micro-batches 1
2 4 8`` measures it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

MAX_AUTO_MICRO_BATCHES = 8
MIN_AUTO_CHUNK_PIXELS = 16_384  # input pixels per chunk ("auto"): smaller chunks slowed stage 1 of small nets


def l1_loss(pred, target):
    """Mean absolute error over all elements."""
    return jnp.mean(jnp.abs(pred - target))


def l2_loss(pred, target):
    """Mean squared error over all elements."""
    return jnp.mean(jnp.square(pred - target))


LOSSES = {"l1": l1_loss, "l2": l2_loss}


def check_micro_batches(requested) -> None:
    """ValueError unless ``requested`` is "auto" or a positive int."""
    if requested != "auto" and (type(requested) is not int or requested < 1):
        raise ValueError(f"micro_batches must be 'auto' or a positive int; got {requested!r}")


def micro_batch_count(per_device_batch: int, sample_pixels: int, requested: int | str = "auto",
                      platform: str | None = None) -> int:
    """How many chunks a step splits each device's ``per_device_batch`` samples into.

    ``requested`` is a positive int dividing ``per_device_batch`` (ValueError otherwise) or
    ``"auto"``: 1 off CPU; on CPU the most chunks, at most 8, whose chunks still hold at least
    16,384 input pixels (``sample_pixels`` = H * W of one network input). Measured on a 2-core
    CPU (AdaFM-Net, all methods): batch 16 of 96x96 -> 8 chunks, 20-37% faster; batch 8 of
    48x48 -> 1 (4 chunks made stage 1 40% slower). ``platform`` defaults to ``jax.default_backend()``.
    """
    check_micro_batches(requested)
    if requested == "auto":
        if (platform or jax.default_backend()) != "cpu":
            return 1
        fits = [n for n in range(1, MAX_AUTO_MICRO_BATCHES + 1)
                if per_device_batch % n == 0 and per_device_batch // n * sample_pixels >= MIN_AUTO_CHUNK_PIXELS]
        return max(fits, default=1)
    if per_device_batch % requested:
        raise ValueError(f"micro_batches={requested} does not divide the {per_device_batch} samples "
                         f"each device gets per step")
    return requested


def micro_batch_mean(loss_of_batch, arrays, micro_batches: int = 1, shards: int = 1):
    """``mean_i loss_of_batch(*chunk_i)`` over ``micro_batches`` equal chunks of ``arrays``.

    ``arrays``: a tuple of arrays sharing the leading batch axis B (B divisible by
    ``shards * micro_batches``). The batch is taken to be sharded in ``shards`` contiguous blocks
    (one per device); chunk i is the i-th contiguous sub-block of every shard, so each chunk stays
    evenly sharded and splitting needs no communication. For a loss that is a mean over the batch
    this equals ``loss_of_batch(*arrays)`` up to float rounding.
    """
    if micro_batches == 1:
        return loss_of_batch(*arrays)

    def chunk(x, i):
        per = x.shape[0] // (shards * micro_batches)
        blocks = x.reshape(shards, micro_batches, per, *x.shape[1:])
        return blocks[:, i].reshape(shards * per, *x.shape[1:])

    losses = [loss_of_batch(*(chunk(x, i) for x in arrays)) for i in range(micro_batches)]
    return sum(losses) / micro_batches


def make_base_step(model, optimizer: optax.GradientTransformation, loss_fn=l1_loss, micro_batches: int = 1,
                   shards: int = 1):
    """Stage-1 step ``(theta, opt_state, degraded, clean) -> (theta, opt_state, loss)``.

    Trains every parameter of the base network; ``theta`` and ``opt_state`` are donated. The
    batch may be split into micro-batches (:func:`micro_batch_mean`).
    """

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def base_step(theta, opt_state, degraded, clean):
        def loss_of(theta):
            return micro_batch_mean(lambda x, y: loss_fn(model.apply({"params": theta}, x), y),
                                    (degraded, clean), micro_batches, shards)

        loss, grads = jax.value_and_grad(loss_of)(theta)
        updates, opt_state = optimizer.update(grads, opt_state, theta)
        return optax.apply_updates(theta, updates), opt_state, loss

    return base_step


def make_tune_step(model, tuner, optimizer: optax.GradientTransformation, loss_fn=l1_loss, micro_batches: int = 1,
                   shards: int = 1):
    """Stage-2 step ``(phi, opt_state, theta0, degraded, clean) -> (phi, opt_state, loss)``.

    The tuner is trained at alpha = 1 (the endpoint network). Gradients are taken with respect to
    ``phi`` only, so the base ``theta0`` is frozen by construction: it is an input that is neither
    differentiated nor returned, and it has no optimizer state. ``phi`` and ``opt_state`` are
    donated; ``theta0`` is not. The batch may be split into micro-batches (:func:`micro_batch_mean`).
    """

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def tune_step(phi, opt_state, theta0, degraded, clean):
        def loss_of(phi):
            theta1 = tuner.endpoint(phi, theta0)
            return micro_batch_mean(lambda x, y: loss_fn(model.apply({"params": theta1}, x), y),
                                    (degraded, clean), micro_batches, shards)

        loss, grads = jax.value_and_grad(loss_of)(phi)
        updates, opt_state = optimizer.update(grads, opt_state, phi)
        return optax.apply_updates(phi, updates), opt_state, loss

    return tune_step
