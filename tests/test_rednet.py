"""RED-Net (ctl_jax.nets.rednet): shapes, the skip structure, and the tuners' identities at init."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.config import load_config
from ctl_jax.control import Control
from ctl_jax.nets.rednet import VARIANTS, RedNet, rednet, skip_levels
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.testing import perturb
from ctl_jax.tuners import AdaFM, FTN, apply_tuned, insert_adafm_slots, make_tuner
from ctl_jax.tuners.ftn import ftn_layer_apply
from ctl_jax.tuners.trees import flatten

CONFIG = str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "rednet.py")


def image(shape, seed=0):
    return jax.random.uniform(jax.random.key(seed), shape)


def init(model, x, seed=0):
    return model.init(jax.random.key(seed), x)["params"]


def layer_names(params, prefix):
    return sorted((k for k in params if k.startswith(prefix + "_")), key=lambda k: int(k.rsplit("_", 1)[1]))


def assert_trees_equal(a, b):
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=str(k))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hw", [(16, 16), (13, 11)])
def test_output_shape_equals_input_shape(channels, hw):
    x = image((2, *hw, channels))
    model = rednet("tiny", channels=channels)
    y = model.apply({"params": init(model, x)}, x)
    assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_layer_and_skip_structure_per_variant(variant):
    cfg = VARIANTS[variant]
    n = cfg["layers"] // 2
    params = jax.eval_shape(rednet(variant).init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    convs, deconvs = layer_names(params, "conv"), layer_names(params, "deconv")
    assert (len(convs), len(deconvs)) == (n, n) and len(params) == 2 * n
    assert params["conv_0"]["kernel"].shape == (3, 3, 1, cfg["features"])
    assert params[f"deconv_{n - 1}"]["kernel"].shape == (3, 3, cfg["features"], 1)  # back to the image
    levels = skip_levels(cfg["layers"], cfg["skip_every"])
    assert levels == tuple(range(cfg["skip_every"], n, cfg["skip_every"]))
    if variant == "red30":
        assert levels == (2, 4, 6, 8, 10, 12, 14)  # 7 symmetric skips every two layers, plus the input skip
    if variant == "seed10":
        assert levels == (1, 2, 3, 4) and not cfg["residual"]  # the seed's 4 symmetric connections


def test_skips_and_residual_change_the_output_as_the_equations_say():
    x = image((1, 12, 12, 1))
    plain = RedNet(layers=6, features=8, skip_every=0, residual=False)
    params = init(plain, x)  # skips and the input skip carry no parameters: one tree for all forms
    y_plain = plain.apply({"params": params}, x)
    y_res = RedNet(layers=6, features=8, skip_every=0, residual=True).apply({"params": params}, x)
    np.testing.assert_allclose(y_res, y_plain + x, atol=1e-6)
    y_skip = RedNet(layers=6, features=8, skip_every=2, residual=False).apply({"params": params}, x)
    assert float(jnp.abs(y_skip - y_plain).max()) > 1e-4
    # gate delta = 1 sends everything into the encoder and nothing into the skips: no skips at all
    gated = RedNet(layers=6, features=8, skip_every=2, residual=False, gate=1.0).apply({"params": params}, x)
    np.testing.assert_allclose(gated, y_plain, atol=1e-6)
    with pytest.raises(ValueError, match="even number of layers"):
        RedNet(layers=5).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="1 channel"):
        rednet("tiny").init(jax.random.key(0), image((1, 8, 8, 3)))


def test_registry_builds_every_variant_and_the_adafm_slots():
    assert NetworkSpec("rednet", None, 1).build() == rednet("red30", channels=1)
    model = NetworkSpec("rednet", "tiny", 3, adafm_kernel=3).build()
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    slots = sorted(k for k in params if k.startswith("adafm"))
    assert slots == ["adafm_conv_0", "adafm_conv_1", "adafm_conv_2", "adafm_deconv_0", "adafm_deconv_1"]
    assert NetworkSpec("rednet", "seed10", 1, residual=True).build().residual  # residual adds the input skip
    with pytest.raises(ValueError, match="unknown RED-Net variant"):
        NetworkSpec("rednet", "red99", 1).build()


@pytest.mark.parametrize("method", ["ftn", "ftn-gc4", "ftn-spatial"])
def test_ftn_identity_at_init_and_every_kernel_transitioned(method):
    x = image((2, 16, 16, 1))
    model = rednet("tiny")
    theta0 = jax.tree.map(lambda w: 3.0 * w, init(model, x))  # outputs far from the input, like a trained base
    tuner = make_tuner(method)
    phi = tuner.init(jax.random.key(1), theta0)
    kernels = {p for p, leaf in flatten(theta0).items() if p[-1] == "kernel"}
    assert set(phi) == {p[0] for p in kernels} == set(layer_names(theta0, "conv") + layer_names(theta0, "deconv"))
    assert_trees_equal(tuner.endpoint(phi, theta0), theta0)
    y_base = model.apply({"params": theta0}, x)
    np.testing.assert_array_equal(apply_tuned(model, tuner, theta0, phi, x, 0.0), y_base)
    np.testing.assert_array_equal(apply_tuned(model, tuner, theta0, phi, x, 1.0), y_base)
    # a trained-looking phi changes the transposed-conv kernels too, and only the kernels
    theta1 = tuner.endpoint(perturb(phi, scale=0.1), theta0)
    for name in layer_names(theta0, "deconv"):
        assert float(jnp.abs(theta1[name]["kernel"] - theta0[name]["kernel"]).max()) > 1e-3, name
        np.testing.assert_array_equal(theta1[name]["bias"], theta0[name]["bias"])
    np.testing.assert_array_equal(apply_tuned(model, tuner, theta0, perturb(phi, scale=0.1), x, 0.0), y_base)


def test_ftn_on_a_deconv_kernel_is_the_transition_of_that_kernel():
    x = image((1, 8, 8, 1))
    theta0 = init(rednet("tiny"), x)
    phi = perturb(FTN().init(None, theta0), scale=0.1)
    theta1 = FTN().endpoint(phi, theta0)
    np.testing.assert_allclose(theta1["deconv_2"]["kernel"],
                               ftn_layer_apply(phi["deconv_2"]["kernel"], theta0["deconv_2"]["kernel"]), rtol=1e-6)


@pytest.mark.parametrize("method", ["ftn", "adafm"])
def test_constant_per_pixel_map_equals_global_alpha(method):
    x = image((1, 12, 10, 1))
    model = rednet("tiny", adafm_kernel=3 if method == "adafm" else None)
    tuner = make_tuner(method)
    theta0 = init(model, x)
    phi = perturb(tuner.init(None, theta0), scale=0.05)
    y_global = apply_tuned(model, tuner, theta0, phi, x, 0.3)
    y_map = apply_tuned(model, tuner, theta0, phi, x, Control.per_pixel(jnp.full((12, 10), 0.3)))
    np.testing.assert_allclose(y_map, y_global, atol=1e-5)  # the transposed convs are mixed too


def test_adafm_identity_at_init_through_the_slots():
    x = image((2, 15, 17, 1))
    plain, slotted = rednet("tiny"), rednet("tiny", adafm_kernel=5)
    base = jax.tree.map(lambda w: 3.0 * w, init(plain, x))
    theta0 = insert_adafm_slots(base, jax.eval_shape(slotted.init, jax.random.key(0), x)["params"])
    y_base = plain.apply({"params": base}, x)
    np.testing.assert_array_equal(slotted.apply({"params": theta0}, x), y_base)  # zero slots: the base network
    tuner = AdaFM()
    phi = tuner.init(None, theta0)
    assert len(phi) == 2 * 3 - 1  # after every conv and deconv but the last
    assert_trees_equal(tuner.endpoint(phi, theta0), theta0)
    np.testing.assert_array_equal(apply_tuned(slotted, tuner, theta0, phi, x, 1.0), y_base)
    trained = perturb(phi, scale=0.05)
    np.testing.assert_array_equal(apply_tuned(slotted, tuner, theta0, trained, x, 0.0), y_base)
    assert float(jnp.abs(apply_tuned(slotted, tuner, theta0, trained, x, 1.0) - y_base).max()) > 1e-4


def test_config_loads_and_builds_its_network():
    for preset in ("cpu", "smoke"):
        config = load_config(f"{CONFIG}:{preset}")
        assert config["network"]["name"] == "rednet" and config["methods"] == ["ftn", "adafm"]
        assert (config["task"]["level_a"], config["task"]["level_b"]) == ([15], [50])
        model = NetworkSpec(**config["network"]).build()
        x = image((1, 9, 10, 1))
        assert model.apply({"params": init(model, x)}, x).shape == x.shape
    cpu = load_config(f"{CONFIG}:cpu")
    assert cpu["data"]["train"].endswith("train400_gray") and cpu["data"]["test"].endswith("set12")
    assert load_config(f"{CONFIG}:smoke")["data"]["train"] == "bundled"  # no shared data needed
    with pytest.raises(ValueError, match="unknown preset"):
        load_config(f"{CONFIG}:paper")
