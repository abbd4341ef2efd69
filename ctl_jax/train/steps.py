"""Jitted training steps. Stage 2 differentiates only what it trains (DESIGN.md principle 7).

Micro-batches: a step can split each device's share of the batch into ``micro_batches`` equal
chunks and average their losses. The gradient is the full batch's (the losses are means over
equal-sized chunks, and no network here has batch statistics), but XLA now sees independent
forward/backward chains that it runs concurrently, each on cache-sized tensors, which makes
large steps faster on a CPU; chunks of fewer than about 16k pixels make weight-gradient convs
slower instead, and on GPU/TPU one large batch is better. The chunks are unrolled (one copy of the
loss per chunk in the compiled program) and XLA's compile time grows faster than the program, so
the "auto" choice also bounds the unrolled size (:func:`micro_batch_mean`). The ``ctl-jax``
trainer also runs one XLA device per CPU core (``ctl_jax.train.cpu_devices``), which gets that
concurrency without a larger program. Measurements: experiments/README.md ("Training step speed");
``python benchmarks/train_step.py --micro-batches 1 2 4 8`` measures the step,
``python benchmarks/compile_time.py --cpu-devices 1 2`` the first step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.extend
import jax.numpy as jnp
import optax

from ctl_jax.losses import check_terms, weighted_loss

MAX_AUTO_MICRO_BATCHES = 8
MIN_AUTO_CHUNK_PIXELS = 16_384  # input pixels per chunk ("auto"): smaller chunks slowed stage 1 of small nets
# "auto" unrolls at most this many equations of the traced loss (one chunk's count times the chunks,
# sub-jaxprs included): the plain AdaFM-Net loss is unrolled 8 times, the AdaFM stage-2 loss (its
# depthwise slots are shifted sums, 30x more equations) runs as one batch (benchmarks/compile_time.py).
MAX_UNROLLED_EQUATIONS = 8_000


def check_micro_batches(requested) -> None:
    """ValueError unless ``requested`` is "auto" or a positive int."""
    if requested != "auto" and (type(requested) is not int or requested < 1):
        raise ValueError(f"micro_batches must be 'auto' or a positive int; got {requested!r}")


def micro_batch_count(per_device_batch: int, sample_pixels: int, requested: int | str = "auto",
                      platform: str | None = None) -> int:
    """How many chunks a step splits each device's ``per_device_batch`` samples into.

    ``requested`` is a positive int dividing ``per_device_batch`` (ValueError otherwise) or
    ``"auto"``: 1 off CPU; on CPU the most chunks, at most 8, whose chunks still hold at least
    16,384 input pixels (``sample_pixels`` = H * W of one network input): batch 16 of 96x96 -> 8
    chunks, batch 8 of 48x48 -> 1. ``platform`` defaults to ``jax.default_backend()``.
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


def micro_batch_mean(loss_of_batch, arrays, micro_batches: int = 1, shards: int = 1,
                     max_equations: int | None = None):
    """``mean_i loss_of_batch(*chunk_i)`` over ``micro_batches`` equal chunks of ``arrays``.

    ``arrays``: a tuple of arrays sharing the leading batch axis B (B divisible by
    ``shards * micro_batches``). The batch is taken to be sharded in ``shards`` contiguous blocks
    (one per device); chunk i is the i-th contiguous sub-block of every shard, so each chunk stays
    evenly sharded and splitting needs no communication. For a loss that is a mean over the batch
    this equals ``loss_of_batch(*arrays)`` up to float rounding. The loss is traced once and its
    program repeated for every chunk.

    ``max_equations`` (the "auto" choice passes ``MAX_UNROLLED_EQUATIONS``): use the largest
    divisor of ``micro_batches`` whose chunks together hold at most this many equations of the
    traced loss (:func:`count_equations`); 1 runs the whole batch at once.
    """
    if micro_batches == 1:
        return loss_of_batch(*arrays)
    for x in arrays:
        if x.shape[0] % (shards * micro_batches):
            raise ValueError(f"a batch of {x.shape[0]} does not split into {shards} shard(s) x "
                             f"{micro_batches} micro-batches")
    if max_equations is not None:  # the loss's size does not depend on the batch: trace it as one batch
        whole, out_tree = _trace_on_chunks(loss_of_batch, arrays, 1)
        size = count_equations(whole.jaxpr)
        micro_batches = max([n for n in range(1, micro_batches + 1) if micro_batches % n == 0 and n * size <= max_equations],
                            default=1)
        if micro_batches == 1:
            return jax.tree.unflatten(out_tree, jax.extend.core.jaxpr_as_fun(whole)(*arrays))
    loss, out_tree = _trace_on_chunks(loss_of_batch, arrays, micro_batches)

    def chunk(x, i):
        per = x.shape[0] // (shards * micro_batches)
        blocks = x.reshape(shards, micro_batches, per, *x.shape[1:])
        return blocks[:, i].reshape(shards * per, *x.shape[1:])

    run = jax.extend.core.jaxpr_as_fun(loss)
    outputs = [jax.tree.unflatten(out_tree, run(*(chunk(x, i) for x in arrays))) for i in range(micro_batches)]
    return jax.tree.map(lambda *values: sum(values) / micro_batches, *outputs)


def _trace_on_chunks(loss_of_batch, arrays, micro_batches: int):
    """``loss_of_batch`` traced once at the shapes of one chunk: (ClosedJaxpr, output treedef)."""
    shapes = [jax.ShapeDtypeStruct((x.shape[0] // micro_batches, *x.shape[1:]), x.dtype) for x in arrays]
    closed, out_shape = jax.make_jaxpr(loss_of_batch, return_shape=True)(*shapes)
    return closed, jax.tree.structure(out_shape)


def count_equations(jaxpr) -> int:
    """Equations of ``jaxpr``, those of the jaxprs in their parameters included: a proxy for the
    size of the compiled program."""
    return sum(1 + sum(count_equations(sub) for sub in jax.extend.core.jaxprs_in_params(eqn.params))
               for eqn in jaxpr.eqns)


def _loss_fn(loss):
    """A callable loss, or loss terms by name ("l1", [("l1", 1.0), ...]) -> callable."""
    if callable(loss):
        return loss
    terms = check_terms(loss)
    return lambda pred, target: weighted_loss(terms, pred, target)


def _update(loss_of, optimizer, params, opt_state):
    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def _max_equations(requested) -> int | None:
    """The unrolled-size bound of :func:`micro_batch_mean` for a requested count: "auto" bounds it."""
    return MAX_UNROLLED_EQUATIONS if requested == "auto" else None


def make_base_step(model, optimizer: optax.GradientTransformation, loss="l1", micro_batches: int | str = "auto",
                   shards: int = 1):
    """A jitted stage-1 step ``(theta, opt_state, degraded, clean) -> (theta, opt_state, loss)``.

    Trains every parameter of ``model``. ``loss``: a callable ``(pred, target) -> scalar`` or loss
    terms by name. ``micro_batches``: "auto" or a count dividing each device's batch (checked when
    the step first sees a batch; see :func:`micro_batch_count`). Nothing is donated: the caller's
    trees stay valid (the trainer's own step donates, ``ctl_jax.train.supervised``).
    """
    check_micro_batches(micro_batches)
    loss_fn = _loss_fn(loss)

    @jax.jit
    def base_step(theta, opt_state, degraded, clean):
        n = micro_batch_count(degraded.shape[0] // shards, degraded.shape[1] * degraded.shape[2], micro_batches)

        def loss_of(theta):
            return micro_batch_mean(lambda x, y: loss_fn(model.apply({"params": theta}, x), y),
                                    (degraded, clean), n, shards, _max_equations(micro_batches))

        return _update(loss_of, optimizer, theta, opt_state)

    return base_step


def make_tune_step(model, tuner, optimizer: optax.GradientTransformation, loss="l1",
                   micro_batches: int | str = "auto", shards: int = 1, control=1.0):
    """A jitted stage-2 step ``(phi, opt_state, theta0, degraded, clean) -> (phi, opt_state, loss)``.

    The tuner runs at ``control`` (default 1: its endpoint). Gradients are taken with respect to
    ``phi`` only, so ``theta0`` is frozen by construction: an input that is neither differentiated
    nor returned, with no optimizer state. Nothing is donated. See :func:`make_base_step` for
    ``loss`` and ``micro_batches``; :func:`start_tuning` sets everything up in one call.
    """
    check_micro_batches(micro_batches)
    loss_fn = _loss_fn(loss)

    @jax.jit
    def tune_step(phi, opt_state, theta0, degraded, clean):
        n = micro_batch_count(degraded.shape[0] // shards, degraded.shape[1] * degraded.shape[2], micro_batches)

        def loss_of(phi):
            return micro_batch_mean(lambda x, y: loss_fn(tuner.apply(model, theta0, phi, x, control), y),
                                    (degraded, clean), n, shards, _max_equations(micro_batches))

        return _update(loss_of, optimizer, phi, opt_state)

    return tune_step


class TuningSetup(NamedTuple):
    """Everything a hand-written stage-2 loop needs (:func:`start_tuning`)."""

    model: Any       # the network the tuner runs (AdaFM: with slots)
    theta0: Any      # the base's parameters for that network (AdaFM: zero slots inserted; a copy)
    phi: Any
    opt_state: Any
    step: Any        # make_tune_step(...)


def start_tuning(spec, tuner, theta0, optimizer: optax.GradientTransformation, example, key=None,
                 loss="l1", micro_batches: int | str = "auto") -> TuningSetup:
    """One call from a trained base to a ready stage-2 loop.

    spec: the base's ``NetworkSpec``; tuner: a tuner or its name; theta0: the base's parameters;
    example: an input batch (N, H, W, C). Returns :class:`TuningSetup`; then
    ``phi, opt_state, loss = setup.step(phi, opt_state, setup.theta0, degraded, clean)``.
    """
    from ctl_jax.tuners import make_tuner
    from ctl_jax.tuners.trees import param_template

    tuner = make_tuner(tuner)
    model = tuner.tuned_spec(spec).build()
    theta0 = tuner.prepare_base(jax.tree.map(jnp.array, theta0), param_template(model, example))
    phi = tuner.init(jax.random.key(0) if key is None else key, theta0, model, example)
    return TuningSetup(model, theta0, phi, optimizer.init(phi), make_tune_step(model, tuner, optimizer, loss,
                                                                                micro_batches))
