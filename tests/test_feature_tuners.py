"""Feature-space tuners (CFSNet, Dynamic-Net) on unmodified base networks: the invariants of
DESIGN.md section 3 for the "feature" kind, the structure of phi, and the errors."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ctl_jax.control import Control
from ctl_jax.nets.adafm_net import adafm_net
from ctl_jax.nets.cfsnet import cfsnet_main
from ctl_jax.nets.dncnn import DnCNN
from ctl_jax.tuners import CFSNet, DynamicNet, make_tuner

NETWORKS = {"cfsnet": lambda: cfsnet_main("tiny"), "adafm_net": lambda: adafm_net("tiny")}
BASE_GAIN = {"cfsnet": 2.0, "adafm_net": 7.0}  # scales the 0.1-scaled init to outputs of about 0.1-1
METHODS = ["cfsnet", "dynamic-net"]
SHAPE = (2, 8, 8, 3)


@functools.lru_cache(maxsize=None)
def setup(net: str, method: str):
    """(model, theta0, phi, x) with a trained-looking phi (CFSNet's official init makes its coupling
    coefficients about 1e-4, which would hide mixing errors)."""
    model = NETWORKS[net]()
    x = jax.random.uniform(jax.random.key(0), SHAPE)
    theta0 = jax.tree.map(lambda p: BASE_GAIN[net] * p, model.init(jax.random.key(1), x)["params"])
    phi = make_tuner(method).init(jax.random.key(2), theta0, model, x)
    return model, theta0, trained_looking(phi), x


def trained_looking(phi, seed=3):
    """Every leaf redrawn N(0, 1/fan_in) (biases N(0, 0.01)): coupling coefficients of order 1."""
    leaves, treedef = jax.tree.flatten(phi)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    std = lambda s: 1 / math.sqrt(math.prod(s[:-1])) if len(s) > 1 else 0.1
    return treedef.unflatten([std(p.shape) * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@functools.lru_cache(maxsize=None)
def jitted(method, net):
    model = setup(net, method)[0]
    return jax.jit(lambda t, p, x, c: make_tuner(method).apply(model, t, p, x, c))


def run(method, net, control, x=None):
    """The tuned network's output under jit (x: the setup's batch unless given)."""
    _, theta0, phi, x0 = setup(net, method)
    return jitted(method, net)(theta0, phi, x0 if x is None else x, control)


def base_output(net):
    model, theta0, _, x = setup(net, "dynamic-net")
    return jax.jit(lambda t, x: model.apply({"params": t}, x))(theta0, x)


@pytest.mark.parametrize("net", NETWORKS)
@pytest.mark.parametrize("method", METHODS)
def test_control_zero_is_the_base_network_exactly(method, net):
    # The mix is (1 - 0) R + 0 T (CFSNet) or y + 0 TB(y) (Dynamic-Net): bit-identical to the base,
    # for every form of a zero control, when both run under jit (or both eagerly).
    base = base_output(net)
    for zero in (Control.scalar(0.0), Control.per_sample(jnp.zeros(2)), Control.per_pixel(jnp.zeros((5, 7)))):
        np.testing.assert_array_equal(run(method, net, zero), base)
    model, theta0, phi, x = setup(net, method)
    eager = make_tuner(method).apply(model, theta0, phi, x, 0.0)
    np.testing.assert_array_equal(eager, model.apply({"params": theta0}, x))
    assert float(jnp.abs(run(method, net, Control.scalar(1.0)) - base).max()) > 1e-3  # the branch does act


@pytest.mark.parametrize("net", NETWORKS)
@pytest.mark.parametrize("method", METHODS)
def test_constant_map_equals_global_control(method, net):
    for value in (0.3, 1.0, -0.5):
        glob = run(method, net, Control.scalar(value))
        for size in ((8, 8), (5, 7)):  # at the input resolution, and a map resized to every point
            const = run(method, net, Control.per_pixel(jnp.full(size, value)))
            np.testing.assert_allclose(const, glob, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_per_sample_and_per_sample_maps_equal_the_loop(method):
    net = "cfsnet"
    model, theta0, phi, x = setup(net, method)
    values = jnp.array([0.2, 0.9])
    per_sample = run(method, net, Control.per_sample(values))
    maps = jax.random.uniform(jax.random.key(5), (2, 4, 4, 1))
    per_pixel = run(method, net, Control.per_pixel(maps))
    for i in range(2):
        one = run(method, net, Control.scalar(values[i]), x[i:i + 1])
        np.testing.assert_allclose(per_sample[i], one[0], atol=1e-6, rtol=0)
        one_map = run(method, net, Control.per_pixel(maps[i:i + 1]), x[i:i + 1])
        np.testing.assert_allclose(per_pixel[i], one_map[0], atol=1e-6, rtol=0)
    assert float(jnp.abs(per_pixel[0] - run(method, net, Control.per_pixel(maps[1:]))[0]).max()) > 1e-4


@pytest.mark.parametrize("method", METHODS)
def test_vmap_over_controls_equals_the_loop_and_never_retraces(method):
    model, theta0, phi, x = setup("adafm_net", method)
    tuner = make_tuner(method)
    traces = []

    def one(a):
        traces.append(1)
        return tuner.apply(model, theta0, phi, x, Control.scalar(a))

    alphas = jnp.array([0.0, 0.4, 1.0])
    y_vmap = jax.vmap(one)(alphas)
    maps = jnp.stack([jnp.full((4, 4), 0.4), jnp.linspace(0, 1, 16).reshape(4, 4)])
    y_maps = jax.vmap(lambda m: tuner.apply(model, theta0, phi, x, Control.per_pixel(m)))(maps)
    jitted, traces[:] = jax.jit(one), []
    for i, a in enumerate(alphas):
        np.testing.assert_allclose(y_vmap[i], jitted(a), atol=1e-5, rtol=0)
        np.testing.assert_allclose(y_maps[i], run(method, "adafm_net", Control.per_pixel(maps[i])), atol=1e-5, rtol=0)
    assert len(traces) == 1  # new control values reuse the compiled function


@pytest.mark.parametrize("method", METHODS)
def test_stage_two_step_changes_phi_only(method):
    model = cfsnet_main("tiny")
    x = jax.random.uniform(jax.random.key(0), SHAPE)
    tuner = make_tuner(method)
    theta0 = model.init(jax.random.key(1), x)["params"]
    phi = tuner.init(jax.random.key(2), theta0, model, x)  # the official init
    target = 0.8 * model.apply({"params": theta0}, x)
    optimizer = optax.adam(1e-3)  # CFSNet's product of five matrices overshoots at 1e-2

    def loss_fn(phi, theta0, x, y):
        return jnp.mean((tuner.apply(model, theta0, phi, x, Control.scalar(1.0)) - y) ** 2)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))  # theta0 donated: a buggy step could change it
    def step(theta0, phi, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(phi, theta0, x, y)  # with respect to phi only
        updates, opt_state = optimizer.update(grads, opt_state, phi)
        return theta0, optax.apply_updates(phi, updates), opt_state, loss

    theta0_before, phi_before = jax.tree.map(np.array, theta0), jax.tree.map(np.array, phi)
    opt_state, losses = optimizer.init(phi), []
    for _ in range(4):
        theta0, phi, opt_state, loss = step(theta0, phi, opt_state, x, target)
        losses.append(float(loss))
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, theta0), theta0_before)
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(np.asarray(a), b), phi, phi_before))
    assert all(changed), "every phi leaf receives a gradient"
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_phi_structure_and_init_follow_the_official_code():
    model = adafm_net("tiny")
    x = jax.ShapeDtypeStruct(SHAPE, jnp.float32)  # shapes only, as the cost table and run folders use it
    theta0 = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    phi = jax.eval_shape(lambda t: CFSNet().init(jax.random.key(0), t, model, x), theta0)
    shapes = jax.tree.map(lambda a: a.shape, phi)
    assert shapes["control"] == {"dense_0": {"kernel": (512, 256)}, "dense_1": {"kernel": (256, 128)},
                                 "dense_2": {"kernel": (128, 16)}}
    assert sorted(shapes["points"]) == ["block_0", "block_1"]  # the blocks, not the convs inside them
    assert shapes["points"]["block_0"] == {
        "adaptive": {"dense_0": {"kernel": (16, 16)}, "dense_1": {"kernel": (16, 16)}},
        "tuning": {"conv_0": {"kernel": (3, 3, 16, 16)}, "conv_1": {"kernel": (3, 3, 16, 16)}}}  # no biases
    x = jnp.zeros(SHAPE)
    theta0 = model.init(jax.random.key(0), x)["params"]
    cfs = CFSNet().init(jax.random.key(1), theta0, model, x)
    coeff = jnp.ones(512) @ cfs["control"]["dense_0"]["kernel"] @ cfs["control"]["dense_1"]["kernel"] \
        @ cfs["control"]["dense_2"]["kernel"] @ cfs["points"]["block_0"]["adaptive"]["dense_0"]["kernel"] \
        @ cfs["points"]["block_0"]["adaptive"]["dense_1"]["kernel"]
    assert 0 < float(jnp.abs(coeff).max()) < 1e-2  # five 0.1-scaled Kaiming matrices: about 1e-4
    dyn = DynamicNet().init(jax.random.key(1), theta0, model, x)["points"]
    assert sorted(dyn["block_1"]) == ["conv_0", "conv_1", "conv_2"]
    bound = 1 / math.sqrt(9 * 16)  # PyTorch's Conv2d default
    for conv in dyn["block_1"].values():
        assert conv["kernel"].shape == (3, 3, 16, 16) and conv["bias"].shape == (16,)
        assert 0.5 * bound < float(jnp.abs(conv["kernel"]).max()) <= bound
    dcgan = DynamicNet(init_std=0.02).init(jax.random.key(1), theta0, model, x)["points"]["block_0"]["conv_0"]
    assert float(jnp.abs(dcgan["bias"]).max()) == 0 and 0.01 < float(jnp.std(dcgan["kernel"])) < 0.03


def test_chosen_layers_other_than_blocks():
    model, theta0, _, x = setup("adafm_net", "dynamic-net")
    tuner = DynamicNet(layers=("fea_conv", "block_1"))
    phi = tuner.init(jax.random.key(2), theta0, model, x)
    assert sorted(phi["points"]) == ["block_1", "fea_conv"]
    np.testing.assert_array_equal(tuner.apply(model, theta0, phi, x, 0.0), model.apply({"params": theta0}, x))
    assert float(jnp.abs(tuner.apply(model, theta0, phi, x, 1.0) - model.apply({"params": theta0}, x)).max()) > 0


@pytest.mark.parametrize("method", METHODS)
def test_clear_errors(method):
    tuner = make_tuner(method)
    assert (tuner.kind, tuner.stages, tuner.pixel, tuner.control_dim) == ("feature", 2, True, 1)
    dncnn = DnCNN(channels=3, depth=3, features=8)
    x = jnp.zeros(SHAPE)
    with pytest.raises(ValueError, match=r"no submodule matching .*block_\*.*conv_0"):
        tuner.init(jax.random.key(0), dncnn.init(jax.random.key(0), x)["params"], dncnn, x)
    model, theta0, phi, x = setup("cfsnet", method)
    with pytest.raises(ValueError, match="2-dimensional"):
        tuner.apply(model, theta0, phi, x, Control.vector([0.2, 0.4]))
    with pytest.raises(ValueError, match="3 samples for a batch of 2"):
        tuner.apply(model, theta0, phi, x, Control.per_sample([0.1, 0.2, 0.3]))
    deeper = cfsnet_main("tiny", blocks=3)
    with pytest.raises(ValueError, match="no parameters for mixing point 'block_2'"):
        tuner.apply(deeper, deeper.init(jax.random.key(0), x)["params"], phi, x, 0.5)


@pytest.mark.parametrize("variant, middle, places", [("tiny", 2, ["conv_1", "conv_2", "conv_3"]),
                                                     ("s", 15, ["conv_4", "conv_8", "conv_12"])])
def test_dncnn_feature_tuner_specs_name_every_middle_conv_and_three_places(variant, middle, places):
    from ctl_jax.nets.dncnn import dncnn, feature_tuner_specs

    net = dncnn(variant)
    x = jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32)
    theta0 = jax.eval_shape(net.init, jax.random.key(0), x)["params"]
    cfsnet, dynamic = (make_tuner(spec) for spec in feature_tuner_specs(variant))
    assert sorted(cfsnet.points(net, theta0, x), key=lambda k: int(k.split("_")[1])) == \
        [f"conv_{i}" for i in range(1, middle + 1)]
    assert sorted(dynamic.points(net, theta0, x)) == sorted(places)
