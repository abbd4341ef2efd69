"""Training steps: micro-batches give the full batch's loss and update; the chunking and its checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ctl_jax.nets.adafm_net import AdaFMNet
from ctl_jax.losses import l2_loss
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.train.loop import TrainConfig
from ctl_jax.train.steps import (count_equations, make_base_step, make_tune_step, micro_batch_count, micro_batch_mean,
                                 start_tuning)
from ctl_jax.tuners import AdaFM, insert_adafm_slots


@pytest.mark.parametrize("batch, size, expected", [
    (16, 96, 8),   # chunks of 2 x 96^2 = 18432 pixels
    (16, 48, 2),   # 8 x 48^2
    (8, 48, 1),    # the whole batch is 18432 pixels: no room to split
    (12, 128, 6),  # 2 x 128^2; 12 has no divisor 7 or 8
    (32, 128, 8),  # capped at 8
    (4, 16, 1),    # tiny: never split
    (7, 96, 1),    # 7 is prime, and 7 chunks of one 96^2 sample would hold 9216 pixels each
])
def test_auto_micro_batches_on_cpu_keep_16k_pixels_per_chunk(batch, size, expected):
    assert micro_batch_count(batch, size * size, "auto", platform="cpu") == expected


def test_auto_micro_batches_off_cpu_is_one_and_explicit_counts_are_checked():
    assert micro_batch_count(16, 96 * 96, "auto", platform="gpu") == 1
    assert micro_batch_count(16, 96 * 96, "auto", platform="tpu") == 1
    assert micro_batch_count(16, 4, 16) == 16  # an explicit count ignores the pixel rule
    for bad in (0, -2, 2.0, True, "four"):
        with pytest.raises(ValueError, match="positive int"):
            micro_batch_count(16, 64, bad)
    with pytest.raises(ValueError, match="does not divide the 8 samples"):
        micro_batch_count(8, 64, 3)
    for bad in (0, "4", 1.5):
        with pytest.raises(ValueError, match="micro_batches"):
            TrainConfig(micro_batches=bad)
    with pytest.raises(ValueError, match="does not divide"):
        TrainConfig(batch_size=4, micro_batches=3).micro_batch_count((1, 16, 16, 3))
    assert TrainConfig(batch_size=16).micro_batch_count((1, 96, 96, 3)) == micro_batch_count(16, 96 * 96)


def test_chunks_are_contiguous_blocks_of_every_shard():
    """Chunk i is the i-th block of every shard: the mean of each chunk's first and largest values
    tells which samples each chunk held (a tree-valued loss is averaged leaf by leaf)."""
    def first_and_max(x):
        return {"first": x[0], "max": jnp.max(x)}

    x = jnp.arange(8.0)  # shard 0 holds 0..3, shard 1 holds 4..7
    two_shards = micro_batch_mean(first_and_max, (x,), micro_batches=2, shards=2)  # chunks [0 1 4 5], [2 3 6 7]
    assert float(two_shards["first"]) == 1 and float(two_shards["max"]) == 6
    one_shard = micro_batch_mean(first_and_max, (x,), micro_batches=4, shards=1)   # [0 1], [2 3], [4 5], [6 7]
    assert float(one_shard["first"]) == 3 and float(one_shard["max"]) == 4
    whole = micro_batch_mean(first_and_max, (x,), micro_batches=1, shards=4)
    assert float(whole["first"]) == 0 and float(whole["max"]) == 7
    with pytest.raises(ValueError, match="does not split into 2 shard"):
        micro_batch_mean(first_and_max, (jnp.arange(6.0),), micro_batches=2, shards=2)


def test_auto_bound_merges_chunks_of_a_large_loss():
    """With ``max_equations`` the chunks merge into the largest count whose unrolled copies of the
    traced loss fit the bound; the compiled program holds one convolution per chunk."""
    w = jax.random.normal(jax.random.key(0), (3, 3, 2, 2))

    def loss(x):
        return jnp.mean(jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))

    x = jax.random.normal(jax.random.key(1), (8, 6, 6, 2))
    size = count_equations(jax.make_jaxpr(loss)(x[:1]).jaxpr)

    def convs(max_equations):
        f = jax.jit(lambda x: micro_batch_mean(loss, (x,), 8, 1, max_equations))
        np.testing.assert_allclose(f(x), loss(x), rtol=1e-5, atol=1e-6)
        return f.lower(x).as_text().count("stablehlo.convolution")

    assert convs(None) == 8 and convs(8 * size) == 8
    assert convs(4 * size) == 4 and convs(3 * size) == 2 and convs(size) == 1 and convs(0) == 1


def test_micro_batched_steps_give_the_full_batch_update():
    x = jax.random.uniform(jax.random.key(0), (8, 16, 16, 3))
    y = jnp.clip(x + 0.1 * jax.random.normal(jax.random.key(1), x.shape), 0, 1)
    base = AdaFMNet(blocks=2, features=8)
    theta = base.init(jax.random.key(2), x)["params"]
    slotted = AdaFMNet(blocks=2, features=8, adafm_kernel=3)
    theta0 = insert_adafm_slots(theta, jax.eval_shape(slotted.init, jax.random.key(0), x)["params"])
    tuner = AdaFM()
    phi = jax.tree.map(lambda a: a + 0.01, tuner.init(None, theta0))
    opt = optax.sgd(0.5)  # plain SGD: the update is the gradient itself, so compare it directly

    def one_step(n, shards):
        theta1, _, loss1 = make_base_step(base, opt, l2_loss, n, shards)(
            jax.tree.map(jnp.copy, theta), opt.init(theta), y, x)
        phi1, _, loss2 = make_tune_step(slotted, tuner, opt, l2_loss, n, shards)(
            jax.tree.map(jnp.copy, phi), opt.init(phi), theta0, y, x)
        return (theta1, phi1), (loss1, loss2)

    reference, ref_losses = one_step(1, 1)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(reference[0]), jax.tree.leaves(theta)))
    assert moved > 1e-3, "the step must move the parameters for this test to mean anything"
    for n, shards in ((2, 1), (4, 1), (8, 1), (2, 2), (2, 4)):
        trees, losses = one_step(n, shards)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        for a, b in zip(jax.tree.leaves(trees), jax.tree.leaves(reference)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_step_makers_take_auto_check_counts_and_leave_the_callers_trees_alive():
    x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
    base = AdaFMNet(blocks=2, features=8)
    theta = base.init(jax.random.key(2), x)["params"]
    opt = optax.adam(1e-3)
    state = opt.init(theta)
    theta1, state1, loss = make_base_step(base, opt)(theta, state, x, x)  # "auto" and "l1" by default
    assert np.isfinite(float(loss))
    jax.tree.map(np.asarray, (theta, state))  # not donated: reading them must still work
    with pytest.raises(ValueError, match="micro_batches=3 does not divide the 4 samples"):
        make_base_step(base, opt, micro_batches=3)(theta, state, x, x)
    with pytest.raises(ValueError, match="micro_batches"):
        make_base_step(base, opt, micro_batches="four")


def test_start_tuning_gives_a_ready_adafm_stage_two_in_one_call():
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    spec = NetworkSpec("adafm_net", "tiny", 3)
    theta = spec.build().init(jax.random.key(1), x)["params"]
    setup = start_tuning(spec, "adafm", theta, optax.adam(1e-2), x)
    assert setup.model.adafm_kernel == AdaFM().kernel
    np.testing.assert_array_equal(setup.model.apply({"params": setup.theta0}, x),
                                  spec.build().apply({"params": theta}, x))  # zero slots: the base itself
    phi, opt_state = setup.phi, setup.opt_state
    for _ in range(2):
        phi, opt_state, loss = setup.step(phi, opt_state, setup.theta0, x, x)
    assert np.isfinite(float(loss)) and any(float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(phi))
    jax.tree.map(np.asarray, theta)  # the caller's base is still alive
