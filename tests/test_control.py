"""The explicit control form: constructors, checks, resizing, and refusals that name the method."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.control import Control, as_control
from ctl_jax.nets.adafm_net import adafm_net
from ctl_jax.tuners import make_tuner
from ctl_jax.tuners.hyper import HyperTuner


def test_each_constructor_gives_its_documented_shape_and_kind():
    cases = [(Control.scalar(0.3), (1, 1, 1, 1), "global"),
             (Control.vector([0.2, 0.7]), (1, 1, 1, 2), "global"),
             (Control.per_sample([0.0, 0.5, 1.0]), (3, 1, 1, 1), "per-sample"),
             (Control.per_sample(np.zeros((3, 2))), (3, 1, 1, 2), "per-sample"),
             (Control.per_pixel(np.zeros((5, 7))), (1, 5, 7, 1), "per-pixel"),
             (Control.per_pixel(np.zeros((2, 5, 7, 2))), (2, 5, 7, 2), "per-pixel")]
    for control, shape, kind in cases:
        chex.assert_shape(control.values, shape)
        assert control.kind == kind and control.values.dtype == jnp.float32
    assert Control.vector([0.2, 0.7]).dim == 2
    np.testing.assert_allclose(Control.vector([0.2, 0.7]).global_value(), [0.2, 0.7])
    np.testing.assert_allclose(Control.per_pixel(np.array([[0.0, 1.0]])).per_sample_values(2), [[0.5], [0.5]])


def test_bare_values_are_taken_only_when_unambiguous():
    assert as_control(0.5).is_global and as_control(np.float32(0.5)).is_global and as_control(1).kind == "global"
    for bare in (np.zeros(3), np.zeros((4, 4)), jnp.zeros((2, 4, 4, 1))):
        with pytest.raises(TypeError, match="ambiguous"):
            as_control(bare)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            Control.scalar(bad)
    with pytest.raises(ValueError, match="finite"):
        Control.per_pixel(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="one value"):
        Control.scalar([0.1, 0.2])
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, D\)"):
        Control.per_sample(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"\(H, W\) map or \(N\|1, H, W, D\)"):
        Control.per_pixel(np.zeros((2, 5, 7)))


def test_check_names_the_method_and_the_mismatch():
    with pytest.raises(ValueError, match="ftn takes 1-dimensional control; got a 2-dimensional one"):
        Control.vector([0.1, 0.2]).check(2, 1, "ftn")
    with pytest.raises(ValueError, match="3 samples for a batch of 2"):
        Control.per_sample([0, 1, 2]).check(2, 1)
    with pytest.raises(ValueError, match="hyper cannot take a per-pixel control map"):
        Control.per_pixel(np.zeros((4, 4))).check(1, 1, "hyper", pixel=False)


def test_resized_broadcasts_and_interpolates_maps():
    np.testing.assert_array_equal(Control.scalar(0.25).resized(3, 4, 2), np.full((2, 3, 4, 1), 0.25))
    per_sample = Control.per_sample([0.0, 1.0]).resized(2, 2)
    np.testing.assert_array_equal(per_sample[:, :, :, 0], [np.zeros((2, 2)), np.ones((2, 2))])
    step = Control.per_pixel(np.repeat(np.array([[0.0, 0.0, 1.0, 1.0]]), 4, axis=0))
    half = step.resized(2, 2)
    np.testing.assert_allclose(half[0, :, :, 0], [[0.0, 1.0], [0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(Control.per_pixel(np.full((3, 5), 0.4)).resized(8, 8), 0.4, atol=1e-6)


def test_control_is_a_pytree_so_vmap_and_jit_take_it_without_retracing():
    traces = []

    @jax.jit
    def f(c):
        traces.append(1)
        return c.values.sum()

    assert float(f(Control.scalar(0.1))) == pytest.approx(0.1) and float(f(Control.scalar(0.9))) == pytest.approx(0.9)
    assert len(traces) == 1
    out = jax.vmap(lambda a: Control.scalar(a).resized(2, 2, 1))(jnp.linspace(0, 1, 3))
    chex.assert_shape(out, (3, 1, 2, 2, 1))


def test_a_hypernetwork_refuses_a_per_pixel_map_by_name_and_a_wrong_dimension():
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    model = adafm_net("tiny")
    tuner = HyperTuner(predict=("hr_conv1/kernel",))
    phi = tuner.init(jax.random.key(1), {}, model, x)
    assert tuner.apply(model, {}, phi, x, 0.5).shape == x.shape
    with pytest.raises(ValueError, match=r"hyper \(hypernetwork\) cannot take a per-pixel control map"):
        tuner.apply(model, {}, phi, x, Control.per_pixel(np.zeros((16, 16))))
    with pytest.raises(ValueError, match="takes 1-dimensional control; got a 2-dimensional one"):
        tuner.apply(model, {}, phi, x, Control.vector([0.1, 0.2]))
    with pytest.raises(ValueError, match="unknown tuning method"):
        make_tuner("ftn-gc3")
