"""Invariants of the continuous-level methods (DESIGN.md section 3) on every base network."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ctl_jax.nets.adafm_net import adafm_net
from ctl_jax.nets.cfsnet import cfsnet_main
from ctl_jax.nets.dncnn import DnCNN
from ctl_jax.control import Control
from ctl_jax.tuners import (AdaFM, DNI, FTN, TUNERS, apply_at_alpha, apply_tuned, ftn_layer_apply, interpolate,
                            insert_adafm_slots, lerp, make_tuner)
from ctl_jax.tuners.trees import flatten

NETWORKS = {
    "adafm_net": lambda k: adafm_net("tiny", adafm_kernel=k),
    "cfsnet": lambda k: cfsnet_main("tiny", adafm_kernel=k),
    "dncnn": lambda k: DnCNN(channels=3, depth=4, features=8, adafm_kernel=k),
}
BASE_GAIN = {"adafm_net": 7.0, "cfsnet": 2.0, "dncnn": 1.0}  # gives outputs of about 0.1-1
METHODS = ["dni", "adafm", "ftn", "ftn-gc4", "ftn-gc16", "ftn-deeper", "ftn-spatial"]


def image(shape=(2, 16, 16, 3), seed=0):
    return jax.random.uniform(jax.random.key(seed), shape)


def perturb(tree, seed=1, scale=0.01):
    """A trained-looking phi: the init plus noise, so that theta1 differs from theta0."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def setup(net_name, method, x, trained=True):
    model = NETWORKS[net_name](3 if method == "adafm" else None)
    theta0 = model.init(jax.random.key(0), x)["params"]
    if trained:  # scale the init so outputs are O(1), like a trained base; AdaFM slots stay 0
        gain = BASE_GAIN[net_name]
        theta0 = {k: v if k.startswith("adafm") else jax.tree.map(lambda w: gain * w, v) for k, v in theta0.items()}
    tuner = make_tuner(method)
    phi = tuner.init(jax.random.key(1), theta0)
    return model, tuner, theta0, (perturb(phi) if trained else phi)


def assert_trees_equal(a, b):
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=str(k))


@pytest.mark.parametrize("net_name", NETWORKS)
@pytest.mark.parametrize("method", METHODS)
def test_endpoint_at_init_is_theta0(net_name, method):
    x = image()
    model, tuner, theta0, phi = setup(net_name, method, x, trained=False)
    theta1 = tuner.endpoint(phi, theta0)
    assert_trees_equal(theta1, theta0)
    np.testing.assert_array_equal(apply_tuned(model, tuner, theta0, phi, x, 1.0), model.apply({"params": theta0}, x))


@pytest.mark.parametrize("net_name", NETWORKS)
@pytest.mark.parametrize("method", ["dni", "adafm", "ftn-gc16"])
def test_alpha_endpoints_and_extrapolation(net_name, method):
    x = image()
    model, tuner, theta0, phi = setup(net_name, method, x)
    theta1 = tuner.endpoint(phi, theta0)
    y_base = model.apply({"params": theta0}, x)
    y_end = model.apply({"params": theta1}, x)
    assert float(jnp.abs(y_end - y_base).max()) > 1e-3, "a trained phi must change the output"
    np.testing.assert_array_equal(apply_tuned(model, tuner, theta0, phi, x, 0.0), y_base)
    np.testing.assert_array_equal(apply_tuned(model, tuner, theta0, phi, x, 1.0), y_end)
    # alpha = 1.5 extrapolates: every parameter at theta0 + 1.5 (theta1 - theta0)
    extrapolated = jax.tree.map(lambda a, b: a + 1.5 * (b - a), theta0, theta1)
    np.testing.assert_allclose(apply_tuned(model, tuner, theta0, phi, x, 1.5),
                               model.apply({"params": extrapolated}, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("net_name", NETWORKS)
@pytest.mark.parametrize("method", ["dni", "adafm", "ftn"])
def test_constant_alpha_map_equals_global_alpha(net_name, method):
    x = image()
    model, tuner, theta0, phi = setup(net_name, method, x)
    for alpha in (0.0, 0.3, 1.0):
        y_global = apply_tuned(model, tuner, theta0, phi, x, alpha)
        for amap in (jnp.full((16, 16), alpha), jnp.full((2, 5, 7, 1), alpha)):  # any resolution
            amap = Control.per_pixel(amap)
            y_map = jax.jit(apply_tuned, static_argnums=(0, 1))(model, tuner, theta0, phi, x, amap)
            np.testing.assert_allclose(y_map, y_global, atol=1e-5)


@pytest.mark.parametrize("net_name", NETWORKS)
def test_half_half_map_matches_each_half_away_from_seam(net_name):
    x = image((1, 24, 96, 3))
    model, tuner, theta0, phi = setup(net_name, "ftn", x)
    lo, hi = 0.2, 0.9
    amap = jnp.concatenate([jnp.full((24, 48), lo), jnp.full((24, 48), hi)], axis=1)
    y = apply_tuned(model, tuner, theta0, phi, x, Control.per_pixel(amap))
    y_lo = apply_tuned(model, tuner, theta0, phi, x, lo)
    y_hi = apply_tuned(model, tuner, theta0, phi, x, hi)
    margin = 24  # beyond the tiny networks' receptive field (and the map's bilinear resizing)
    np.testing.assert_allclose(y[:, :, :48 - margin], y_lo[:, :, :48 - margin], atol=1e-5)
    np.testing.assert_allclose(y[:, :, 48 + margin:], y_hi[:, :, 48 + margin:], atol=1e-5)
    assert float(jnp.abs(y_lo - y_hi).max()) > 1e-3


@pytest.mark.parametrize("net_name,method", [("adafm_net", "ftn"), ("cfsnet", "adafm"), ("dncnn", "dni")])
def test_per_sample_alpha_equals_loop(net_name, method):
    x = image((3, 16, 16, 3))
    model, tuner, theta0, phi = setup(net_name, method, x)
    alphas = jnp.array([0.0, 0.4, 1.2])
    y = apply_tuned(model, tuner, theta0, phi, x, Control.per_sample(alphas))
    for i, a in enumerate(alphas):
        np.testing.assert_allclose(y[i], apply_tuned(model, tuner, theta0, phi, x[i:i + 1], a)[0], atol=1e-5)


def test_vmap_over_alphas_equals_loop_and_never_retraces():
    x = image()
    model, tuner, theta0, phi = setup("cfsnet", "ftn-gc4", x)
    traces = []

    @jax.jit
    def run(alpha, phi, x):
        traces.append(1)
        return apply_tuned(model, tuner, theta0, phi, x, alpha)

    alphas = jnp.linspace(0.0, 1.0, 5)
    y_vmap = jax.jit(jax.vmap(lambda a: apply_tuned(model, tuner, theta0, phi, x, Control.scalar(a))))(alphas)
    for i, a in enumerate([0.0, 0.25, 0.5, 0.75, 1.0]):
        np.testing.assert_allclose(y_vmap[i], run(Control.scalar(a), phi, x), atol=1e-5)
    run(Control.scalar(1), phi, x)  # an int, converted at the boundary
    run(Control.scalar(np.float32(0.7)), phi, x)
    assert len(traces) == 1


@pytest.mark.parametrize("method", METHODS)
def test_tuning_step_leaves_base_bit_identical(method):
    """The library's own stage-2 step, with phi and its optimizer state donated: a tuner whose phi
    aliased theta0's buffers (DNI without a copy, AdaFM slots inserted without one) would leave
    theta0 deleted, and a step that trained theta0 would change it; neither may happen."""
    from ctl_jax.nets.registry import NetworkSpec
    from ctl_jax.tasks import Restoration
    from ctl_jax.train.loop import TrainConfig, data_parallel_mesh
    from ctl_jax.train.supervised import Stage, compile_stage

    spec = NetworkSpec("adafm_net", "tiny", 3)
    tuner = make_tuner(method)
    config = TrainConfig(steps=2, batch_size=2, patch_size=16, lr=1e-2, micro_batches=1)
    stage = Stage.of(tuner.tuned_spec(spec), tuner, Restoration("noise", 20, 80), "b", config)
    _, replicated, batch_sharding = data_parallel_mesh(2)
    fns = compile_stage(stage, replicated, batch_sharding)
    base = spec.build().init(jax.random.key(0), image())["params"]
    theta0 = tuner.prepare_base(base, jax.eval_shape(lambda: stage.spec.build().init(jax.random.key(0), image())["params"]))
    frozen = {"theta0": theta0}
    base_before = jax.tree.map(np.array, theta0)
    trainable = fns.init(jax.random.key(1), frozen)
    phi_before = jax.tree.map(np.array, trainable)
    opt_state = fns.opt_init(trainable)
    arrays = (np.asarray(image(seed=5)), np.full((2, 1), 80, np.float32), None)
    for i in range(2):
        trainable, opt_state, loss = fns.step(trainable, opt_state, frozen, arrays, jax.random.key(2), np.int32(i))
    assert np.isfinite(float(loss))
    assert_trees_equal(theta0, base_before)  # raises if a buffer of theta0 was donated away
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(trainable), jax.tree.leaves(phi_before))]
    assert any(changed), "the step must train phi"


def test_interpolate_precomputes_kernels():
    x = image()
    model, tuner, theta0, phi = setup("adafm_net", "ftn-gc16", x)
    params = interpolate(tuner, theta0, phi, 0.6)
    np.testing.assert_allclose(model.apply({"params": params}, x),
                               apply_tuned(model, tuner, theta0, phi, x, 0.6), atol=1e-6)
    with pytest.raises(ValueError, match="global control was needed"):
        interpolate(tuner, theta0, phi, Control.per_sample(jnp.ones(2)))


def test_ftn_hand_checked_values():
    """A 1-tap, 2-channel kernel through FTN with known weights."""
    from ctl_jax.tuners.ftn import ftn_layer_apply
    f = jnp.array([1.0, -2.0]).reshape(1, 1, 1, 2)
    params = {"w_0": jnp.array([[[2.0, 0.0], [1.0, 1.0]]]), "b_0": jnp.array([0.5, 0.0]),
              "slope_0": jnp.array([0.1, 0.1]),
              "w_1": jnp.array([[[1.0, 0.0], [0.0, 3.0]]]), "b_1": jnp.array([0.0, 1.0])}
    # h = f @ w_0 + b_0 = [1*2 + -2*1 + .5, 0 + -2*1] = [0.5, -2]; prelu -> [0.5, -0.2]
    # out = h @ w_1 + b_1 = [0.5, -0.6 + 1] = [0.5, 0.4]
    np.testing.assert_allclose(ftn_layer_apply(params, f).ravel(), [0.5, 0.4], atol=1e-6)


def test_ftn_groups_and_variants_shapes():
    theta0 = {"conv": {"kernel": jnp.ones((3, 3, 8, 16)), "bias": jnp.zeros(16)}}
    phi = FTN(groups=4).init(None, theta0)["conv"]["kernel"]
    assert phi["w_0"].shape == (4, 4, 4) and phi["slope_0"].shape == (16,) and "w_2" not in phi
    assert "w_2" in FTN(depth=3).init(None, theta0)["conv"]["kernel"]
    assert FTN(spatial=True).init(None, theta0)["conv"]["kernel"]["w_0"].shape == (3, 3, 16)
    with pytest.raises(ValueError, match="does not divide the 3 output channels of out/kernel"):
        FTN(groups=16).init(None, {"out": {"kernel": jnp.ones((3, 3, 16, 3))}})
    phi = FTN(groups=16, on_indivisible="gcd").init(None, {"out": {"kernel": jnp.ones((3, 3, 16, 3))}})
    assert phi["out"]["kernel"]["w_0"].shape == (1, 3, 3)


def test_ftn_transforms_transposed_conv_kernels():
    class Up(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.ConvTranspose(3, (4, 4), strides=(2, 2))(nn.Conv(4, (3, 3))(x))

    theta0 = Up().init(jax.random.key(0), image())["params"]
    phi = perturb(FTN().init(None, theta0), scale=0.1)
    assert set(phi) == {"Conv_0", "ConvTranspose_0"}
    theta1 = FTN().endpoint(phi, theta0)
    kernel0, kernel1 = theta0["ConvTranspose_0"]["kernel"], theta1["ConvTranspose_0"]["kernel"]
    assert float(jnp.abs(kernel1 - kernel0).max()) > 1e-3  # a non-identity FTN changes the kernel ...
    np.testing.assert_allclose(kernel1, ftn_layer_apply(phi["ConvTranspose_0"]["kernel"], kernel0), rtol=1e-6)
    np.testing.assert_array_equal(theta1["ConvTranspose_0"]["bias"], theta0["ConvTranspose_0"]["bias"])  # ... not the bias


def test_adafm_slots_and_insertion():
    x = image()
    plain = adafm_net("tiny")
    slotted = adafm_net("tiny", adafm_kernel=5)
    base = plain.init(jax.random.key(0), x)["params"]
    theta0 = insert_adafm_slots(base, jax.eval_shape(slotted.init, jax.random.key(0), x)["params"])
    np.testing.assert_array_equal(slotted.apply({"params": theta0}, x), plain.apply({"params": base}, x))
    phi = AdaFM().init(None, theta0)
    assert len(jax.tree.leaves(phi)) == 2 * (2 * 2 + 1)  # official: 2 per block + LR_conv, kernel and bias
    assert phi["adafm_lr"]["depthwise"]["kernel"].shape == (5, 5, 1, 16)
    # interpolation scales the slot parameters: g_alpha = I + alpha (g - I)
    phi = perturb(phi)
    p = interpolate(AdaFM(), theta0, phi, 0.3)
    np.testing.assert_allclose(p["adafm_lr"]["depthwise"]["kernel"], 0.3 * phi["adafm_lr"]["depthwise"]["kernel"], rtol=1e-6)
    with pytest.raises(ValueError, match="no AdaFM slots"):
        AdaFM().init(None, base)
    every = adafm_net("tiny", adafm_kernel=1, adafm_placement="all_but_last")
    slots = AdaFM().init(None, every.init(jax.random.key(0), x)["params"])
    assert len(slots) == 2 * 2 + 1 + 3  # + fea, up, hr0


def test_dni_endpoint_is_phi():
    theta0 = {"a": jnp.ones(3)}
    phi = DNI().init(None, theta0)
    assert phi["a"] is not theta0["a"]
    np.testing.assert_allclose(lerp(theta0, {"a": jnp.full(3, 3.0)}, 0.25)["a"], 1.5)
    with pytest.raises(ValueError, match="different parameters"):
        DNI().endpoint({"b": jnp.ones(3)}, theta0)


def test_generic_per_pixel_on_conv_transpose_dense_norm_prelu():
    class Mixed(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Conv(8, (3, 3), strides=(2, 2))(x)
            h = nn.GroupNorm(num_groups=2)(h)
            h = nn.PReLU()(h)
            h = nn.ConvTranspose(8, (4, 4), strides=(2, 2))(h)
            return nn.Dense(3)(h)

    model, x = Mixed(), image()
    theta0 = model.init(jax.random.key(0), x)["params"]
    theta1 = perturb(theta0, scale=0.3)
    for alpha in (0.0, 0.45, 1.0):
        np.testing.assert_allclose(apply_at_alpha(model, theta0, theta1, x, Control.per_pixel(jnp.full((16, 16), alpha))),
                                   apply_at_alpha(model, theta0, theta1, x, alpha), atol=1e-5)


def test_per_pixel_rejects_parameters_outside_linear_layers():
    class Custom(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Conv(3, (3, 3))(x) * self.param("gain", nn.initializers.ones, (3,))

    model, x = Custom(), image()
    theta0 = model.init(jax.random.key(0), x)["params"]
    with pytest.raises(ValueError, match="gain"):
        apply_at_alpha(model, theta0, theta0, x, Control.per_pixel(jnp.full((16, 16), 0.5)))


def test_bad_inputs_have_clear_errors():
    x = image()
    model, tuner, theta0, phi = setup("adafm_net", "ftn", x)
    with pytest.raises(ValueError, match="finite"):
        apply_tuned(model, tuner, theta0, phi, x, float("nan"))
    with pytest.raises(ValueError, match="finite"):
        apply_tuned(model, tuner, theta0, phi, x, Control.per_sample(jnp.array([0.1, jnp.inf])))
    with pytest.raises(ValueError, match="3 samples for a batch of 2"):
        apply_tuned(model, tuner, theta0, phi, x, Control.per_pixel(jnp.zeros((3, 16, 16, 1))))
    with pytest.raises(ValueError, match="takes 1-dimensional control; got a 3-dimensional one"):
        apply_tuned(model, tuner, theta0, phi, x, Control.per_pixel(jnp.zeros((2, 16, 16, 3))))
    with pytest.raises(ValueError, match="3 samples for a batch of 2"):
        apply_tuned(model, tuner, theta0, phi, x, Control.per_sample(jnp.zeros(3)))
    with pytest.raises(TypeError, match="ambiguous"):  # no guessing from the rank of a bare array
        apply_tuned(model, tuner, theta0, phi, x, jnp.zeros((16, 16)))
    with pytest.raises(ValueError, match="the input has 1 \\(grey\\)"):
        apply_tuned(model, tuner, theta0, phi, x[..., :1], 0.5)
    with pytest.raises(ValueError, match="rank 3"):
        model.apply({"params": theta0}, x[0])
    with pytest.raises(ValueError, match="divisible by 2"):
        model.apply({"params": theta0}, image((1, 15, 16, 3)))
    other = cfsnet_main("tiny").init(jax.random.key(0), x)["params"]
    with pytest.raises(ValueError, match="expected"):
        apply_at_alpha(model, other, other, x, 0.5)
    with pytest.raises(ValueError, match="1, 3, 5, 7"):
        adafm_net("tiny", adafm_kernel=4).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="unknown tuning method"):
        make_tuner("ftn-gc3")
    assert set(METHODS) <= set(TUNERS)


@pytest.mark.parametrize("k,shape,dilation", [(1, (2, 9, 11, 4), 1), (3, (3, 33, 7, 2), 1), (5, (2, 9, 11, 4), 1),
                                             (7, (1, 16, 5, 3), 1), (3, (2, 12, 10, 3), 2), (3, (1, 9, 20, 2), 4)])
def test_depthwise_conv_matches_xla_grouped_conv_and_its_gradients(k, shape, dilation):
    from ctl_jax.nets.layers import depthwise_conv
    x = image(shape)
    w = jax.random.normal(jax.random.key(3), (k, k, shape[-1]))
    ref = lambda x, w: jax.lax.conv_general_dilated(x, w[:, :, None, :], (1, 1), "SAME", rhs_dilation=(dilation,) * 2,
                                                    feature_group_count=shape[-1],
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(depthwise_conv(x, w, dilation), ref(x, w), atol=1e-5)
    g = jax.random.normal(jax.random.key(4), x.shape)
    ours = jax.grad(lambda x, w: jnp.sum(g * depthwise_conv(x, w, dilation)), argnums=(0, 1))(x, w)
    theirs = jax.grad(lambda x, w: jnp.sum(g * ref(x, w)), argnums=(0, 1))(x, w)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-4)
