"""Transform-Net (ctl_jax.nets.transform_net): shapes, the layout against hand-written equations,
parameter counts against the FTN paper's Table 3, and the tuners' invariants on the tiny variant."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.control import Control
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.nets.transform_net import VARIANTS, InstanceNorm, TransformNet, feature_tuner_specs, transform_net
from ctl_jax.testing import random_image
from ctl_jax.tuners import apply_tuned, insert_adafm_slots, make_tuner
from ctl_jax.tuners.trees import flatten

TUNERS = ["ftn", "ftn-gc16", "adafm", "dni", "dynamic-net", "cfsnet"]
EXACT_AT_INIT = {"ftn", "ftn-gc16", "adafm", "dni"}  # theta1 == theta0 (FTN(f) = f, zero slots, a copy)
# Noise that makes a tuner's phi look trained (the endpoint differs from the base by about 0.4 to 2 at
# alpha 1). FTN's biases are added to every tap of a kernel (648 of them in a 9x9x8 kernel), so small.
PHI_NOISE = {"ftn": 0.002, "ftn-gc16": 0.002, "dni": 0.01, "adafm": 0.05, "dynamic-net": 0.05, "cfsnet": 0.05}


# Random numbers come from numpy: on CPU, compiling jax.random for every parameter shape costs far
# more than the tiny networks' forward passes.

def image(shape, seed=0):
    """Uniform float32 pixels in [0, 1)."""
    return jnp.asarray(random_image(shape, seed))


def noisy(tree, scale, seed=1):
    """``tree`` plus Gaussian noise of standard deviation ``scale`` on every leaf (numpy's generator)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: a + jnp.asarray(scale * rng.standard_normal(a.shape), a.dtype), tree)


def shapes(model, hw=(256, 256)):
    """(parameter shapes, input shape struct) of ``model`` for one (H, W) image."""
    x = jax.ShapeDtypeStruct((1, *hw, model.channels), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)["params"], x


def random_params(model, x, seed=0):
    """Parameters of ``model``'s tree: conv kernels N(0, 1 / fan_in) (flax's lecun_normal without the
    truncation), conv biases 0, norm scales 1 and biases 0, AdaFM slots 0: a fresh network."""
    rng = np.random.default_rng(seed)

    def leaf(path, spec):
        names = [str(getattr(k, "key", k)) for k in path]
        if any(n.startswith("adafm") for n in names) or names[-1] == "bias":
            return jnp.zeros(spec.shape, spec.dtype)
        if names[-1] == "scale":
            return jnp.ones(spec.shape, spec.dtype)
        fan_in = int(np.prod(spec.shape[:-1]))
        return jnp.asarray(rng.standard_normal(spec.shape) / np.sqrt(fan_in), spec.dtype)

    template = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    return jax.tree_util.tree_map_with_path(leaf, template)


def count_params(tree):
    """Number of scalars in a tree of arrays or shape structs."""
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def trained_looking(params, scale=0.1):
    """A stand-in for a trained base: the instance norms' scales and biases moved away from 1 and 0,
    and the last conv scaled so that the output has an image's range (about [0, 1], not +-2.5)."""
    moved = noisy(params, scale)
    moved = jax.tree_util.tree_map_with_path(
        lambda path, a, b: b if any(str(getattr(k, "key", "")).startswith("norm") for k in path) else a, params, moved)
    out = moved["out_conv"]
    return {**moved, "out_conv": {"kernel": 0.25 * out["kernel"], "bias": out["bias"] + 0.5}}


def conv_kernels(params):
    return sorted(p for p, leaf in flatten(params).items() if p[-1] == "kernel" and leaf.ndim == 4
                  and not any(str(s).startswith("adafm") for s in p))


# -- the network ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["tiny", "small"])
@pytest.mark.parametrize("hw", [(16, 16), (8, 24)])
def test_output_shape_equals_input_shape(variant, hw):
    x = image((2, *hw, 3))
    model = transform_net(variant)
    y = model.apply({"params": random_params(model, x)}, x)
    assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))


def test_paper_parameter_count_is_the_ftn_papers_1_68_million():
    params, _ = shapes(transform_net("paper"))
    n = count_params(params)
    assert abs(n - 1.68e6) / 1.68e6 < 0.02
    # by layer: convs (k*k*C_in*C_out + C_out) and instance norms (2 C) of the module docstring
    conv = lambda k, c_in, c_out: k * k * c_in * c_out + c_out
    by_layer = (conv(9, 3, 32) + conv(3, 32, 64) + conv(3, 64, 128) + 5 * 2 * conv(3, 128, 128)
                + conv(3, 128, 64) + conv(3, 64, 32) + conv(9, 32, 3) + 2 * (32 + 64 + 128 + 5 * 2 * 128 + 64 + 32))
    assert n == by_layer == 1_679_235
    assert params["down_0"]["conv"]["kernel"].shape == (9, 9, 3, 32)
    assert params["down_2"]["conv"]["kernel"].shape == (3, 3, 64, 128)
    assert params["up_0"]["conv"]["kernel"].shape == (3, 3, 128, 64)
    assert params["out_conv"]["kernel"].shape == (9, 9, 32, 3)
    assert sorted(k for k in params if k.startswith("block_")) == [f"block_{i}" for i in range(5)]


def test_tuned_parameter_counts_match_the_ftn_papers_table_3():
    """Table 3, Transform-Net column (M): +AdaFM 1.72, +FTN 2.06, +FTN (G=16) 1.70, +Dynamic-Net 2.59."""
    model = transform_net("paper")
    theta0, x = shapes(model)
    slotted, _ = shapes(transform_net("paper", adafm_kernel=5))
    assert count_params(slotted) == pytest.approx(1.72e6, rel=0.01)
    for method, table in (("ftn", 2.06e6), ("ftn-gc16", 1.70e6)):
        phi = jax.eval_shape(lambda t: make_tuner(method).init(None, t), theta0)
        assert count_params(theta0) + count_params(phi) == pytest.approx(table, rel=0.01), method
    dynamic = make_tuner(feature_tuner_specs("paper")[1])
    assert dynamic.layers == ("block_1", "block_4", "up_1")  # before res3, before the upsampling, before the 9x9
    phi = jax.eval_shape(lambda t: dynamic.init(jax.random.key(0), t, model, x), theta0)
    assert {k: v["conv_0"]["kernel"].shape[-1] for k, v in phi["points"].items()} == {
        "block_1": 128, "block_4": 128, "up_1": 32}
    assert count_params(theta0) + count_params(phi) == pytest.approx(2.59e6, rel=0.01)


def test_instance_norm_matches_a_hand_written_one():
    # variance about 1e-5 per channel: epsilon 1e-5 (not flax's default 1e-6) changes the result
    rng = np.random.default_rng(0)
    x = jnp.asarray(1.0 + 3e-3 * rng.standard_normal((2, 6, 5, 4)) * np.arange(1, 5), jnp.float32)
    scale, bias = (jnp.asarray(rng.standard_normal(4), jnp.float32) for _ in range(2))
    y = InstanceNorm().apply({"params": {"scale": scale, "bias": bias}}, x)
    xd = np.asarray(x, np.float64)
    mean = xd.mean(axis=(1, 2), keepdims=True)
    var = ((xd - mean) ** 2).mean(axis=(1, 2), keepdims=True)  # biased, per sample and channel
    expected = (xd - mean) / np.sqrt(var + 1e-5) * np.asarray(scale) + np.asarray(bias)
    np.testing.assert_allclose(y, expected, atol=2e-4)
    wrong_eps = (xd - mean) / np.sqrt(var + 1e-6) * np.asarray(scale) + np.asarray(bias)
    assert np.abs(np.asarray(y) - wrong_eps).max() > 1e-2


def _reference_forward(p, x):
    """The module docstring's equations written out with lax convs and numpy-style padding."""
    def conv(q, h, stride=1):
        pad = q["kernel"].shape[0] // 2
        h = jnp.pad(h, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        y = jax.lax.conv_general_dilated(h, q["kernel"], (stride, stride), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + q["bias"]

    def norm(q, h):
        mean = h.mean(axis=(1, 2), keepdims=True)
        var = ((h - mean) ** 2).mean(axis=(1, 2), keepdims=True)
        return (h - mean) / jnp.sqrt(var + 1e-5) * q["scale"] + q["bias"]

    relu = jax.nn.relu
    h = relu(norm(p["down_0"]["norm"], conv(p["down_0"]["conv"], x)))
    h = relu(norm(p["down_1"]["norm"], conv(p["down_1"]["conv"], h, 2)))
    h = relu(norm(p["down_2"]["norm"], conv(p["down_2"]["conv"], h, 2)))
    for i in range(sum(k.startswith("block_") for k in p)):
        b = p[f"block_{i}"]
        r = relu(norm(b["norm_a"], conv(b["conv_a"], h)))
        h = h + norm(b["norm_b"], conv(b["conv_b"], r))
    for name in ("up_0", "up_1"):
        h = h.repeat(2, axis=1).repeat(2, axis=2)
        h = relu(norm(p[name]["norm"], conv(p[name]["conv"], h)))
    return conv(p["out_conv"], h)


def test_network_computes_the_documented_layout():
    x = image((2, 16, 12, 3))
    model = TransformNet(widths=(4, 6, 8), blocks=2)
    params = noisy(random_params(model, x), 0.3)  # every parameter moved, norm scales and biases too
    np.testing.assert_allclose(model.apply({"params": params}, x), _reference_forward(params, x), atol=1e-4)


def test_adafm_slots_after_every_conv_but_the_last_and_identity_when_zero():
    x = image((1, 16, 16, 3))
    plain, slotted = transform_net("tiny"), transform_net("tiny", adafm_kernel=3)
    base = trained_looking(random_params(plain, x))
    template = jax.eval_shape(slotted.init, jax.random.key(0), x)["params"]
    slots = sorted("/".join(p[:-2]) for p in flatten(template) if p[-2] == "depthwise" and p[-1] == "kernel")
    assert slots == ["block_0/adafm_a", "block_0/adafm_b", "down_0/adafm_conv", "down_1/adafm_conv",
                     "down_2/adafm_conv", "up_0/adafm_conv", "up_1/adafm_conv"]
    assert len(slots) == len(conv_kernels(base)) - 1
    theta0 = insert_adafm_slots(base, template)
    np.testing.assert_array_equal(slotted.apply({"params": theta0}, x), plain.apply({"params": base}, x))


def test_registry_builds_the_family():
    assert NetworkSpec("transform_net").build() == transform_net("paper")
    assert NetworkSpec("transform_net", "tiny", 3, adafm_kernel=5).build() == transform_net("tiny", adafm_kernel=5)
    with pytest.raises(ValueError, match="unknown Transform-Net variant"):
        NetworkSpec("transform_net", "huge").build()


@pytest.mark.parametrize("hw, message", [((18, 16), "divisible by 4; got 18x16"),
                                         ((16, 10), "divisible by 4; got 16x10"), ((4, 16), "at least 8")])
def test_bad_sizes_are_refused(hw, message):
    with pytest.raises(ValueError, match=message):
        transform_net("tiny").init(jax.random.key(0), image((1, *hw, 3)))


@pytest.mark.parametrize("channels, kind", [(1, "grey"), (4, "RGBA")])
def test_grey_and_rgba_inputs_are_refused(channels, kind):
    with pytest.raises(ValueError, match=f"3 channel.*{kind}"):
        transform_net("tiny").init(jax.random.key(0), image((1, 16, 16, channels)))


# -- the tuners' invariants on the tiny variant ----------------------------------------------------

@functools.lru_cache(maxsize=None)
def _setup(method):
    """(model, theta0, phi at init, x, base output) for ``method`` on the tiny variant."""
    x = image((2, 16, 16, 3))
    plain = transform_net("tiny")
    base = trained_looking(random_params(plain, x))
    y_base = plain.apply({"params": base}, x)
    tuner = make_tuner(method)
    if method == "adafm":
        model = transform_net("tiny", adafm_kernel=3)
        theta0 = tuner.prepare_base(base, jax.eval_shape(model.init, jax.random.key(0), x)["params"])
    else:
        model, theta0 = plain, base
    phi = tuner.init(jax.random.key(1), theta0, model, x)
    return model, theta0, phi, x, y_base


@pytest.mark.parametrize("method", TUNERS)
def test_alpha_0_is_the_base_exactly_and_alpha_1_at_init_as_each_tuner_promises(method):
    model, theta0, phi, x, y_base = _setup(method)
    tuner = make_tuner(method)
    np.testing.assert_array_equal(apply_tuned(model, tuner, theta0, phi, x, 0.0), y_base)
    np.testing.assert_array_equal(apply_tuned(model, tuner, theta0, noisy(phi, 0.05), x, 0.0), y_base)
    y1 = apply_tuned(model, tuner, theta0, phi, x, 1.0)
    if method in EXACT_AT_INIT:
        np.testing.assert_array_equal(y1, y_base)
    elif method == "cfsnet":  # coupling coefficients about 1e-4 at init: almost the main branch
        np.testing.assert_allclose(y1, y_base, atol=1e-3)
        assert float(jnp.abs(y1 - y_base).max()) > 0
    else:  # Dynamic-Net's tuning blocks start random (PyTorch's default init): no promise at alpha 1
        assert float(jnp.abs(y1 - y_base).max()) > 1e-3


@pytest.mark.parametrize("method", TUNERS)
def test_constant_per_pixel_map_equals_the_global_alpha(method):
    model, theta0, phi, x, y_base = _setup(method)
    tuner = make_tuner(method)
    assert tuner.pixel
    trained = noisy(phi, PHI_NOISE[method])
    y_global = apply_tuned(model, tuner, theta0, trained, x, 0.3)
    assert float(jnp.abs(apply_tuned(model, tuner, theta0, trained, x, 1.0) - y_base).max()) > 1e-2
    y_map = apply_tuned(model, tuner, theta0, trained, x, Control.per_pixel(jnp.full((16, 16), 0.3)))
    np.testing.assert_allclose(y_map, y_global, atol=1e-5)


@pytest.mark.parametrize("method", ["ftn", "ftn-gc16"])
def test_ftn_transforms_every_conv_kernel_the_upsampling_convs_included(method):
    model, theta0, phi, x, _ = _setup(method)
    kernels = conv_kernels(theta0)
    assert len(kernels) == 3 + 2 * VARIANTS["tiny"]["blocks"] + 3
    assert sorted(p[:-1] for p in flatten(phi) if p[-1] == "w_0") == kernels
    theta1 = make_tuner(method).endpoint(noisy(phi, 0.1), theta0)
    for path in kernels:  # up_0/conv and up_1/conv among them
        a, b = (functools.reduce(lambda t, k: t[k], path, tree) for tree in (theta0, theta1))
        assert float(jnp.abs(a - b).max()) > 1e-3, path
    for name in ("up_0", "up_1"):  # only the kernels: biases and norm parameters are kept
        np.testing.assert_array_equal(theta1[name]["conv"]["bias"], theta0[name]["conv"]["bias"])
        np.testing.assert_array_equal(theta1[name]["norm"]["scale"], theta0[name]["norm"]["scale"])


def test_feature_tuner_specs_per_variant():
    for variant, places in (("paper", ("block_1", "block_4", "up_1")), ("small", ("block_0", "block_2", "up_1")),
                            ("tiny", ("block_0", "up_1"))):
        cfsnet, dynamic = (make_tuner(spec) for spec in feature_tuner_specs(variant))
        assert cfsnet.layers == ("block_*",) and dynamic.layers == places, variant
    model, theta0, _, x, _ = _setup("dni")
    dynamic = make_tuner(feature_tuner_specs("tiny")[1])
    assert list(dynamic.points(model, theta0, x)) == ["block_0", "up_1"]
    assert list(make_tuner("cfsnet").points(model, theta0, x)) == ["block_0"]  # the default "block_*"
    paper = transform_net("paper")
    assert list(make_tuner("dynamic-net").points(paper, *shapes(paper))) == [f"block_{i}" for i in range(5)]
