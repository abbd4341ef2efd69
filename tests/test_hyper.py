"""Decoupled learning: the base network, the hypernetwork transform, trunk/head split, baseline [18]."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax import Control
from ctl_jax.nets.decouple_net import DecoupleNet, edge_map, layer_names
from ctl_jax.tuners import make_tuner, tuner_to_spec
from ctl_jax.tuners.hyper import (PRESETS, Hypernet, HyperTuner, apply_hyper, first_predicted_layer, hyper_head,
                                  hyper_trunk, template_of)
from ctl_jax.tuners.trees import flatten, path_str


def images(n=3, size=16, channels=3, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, size, size, channels))


def trained_like(hyper, base, key=1):
    """psi with every fc weight random, as after training (init zeroes the gamma-dependent part)."""
    psi = hyper.init(jax.random.key(0), base)
    leaves, tree = jax.tree.flatten(psi)
    keys = jax.random.split(jax.random.key(key), len(leaves))
    return jax.tree.unflatten(tree, [v + 0.05 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)])


@pytest.fixture(scope="module")
def tiny():
    model = DecoupleNet("tiny")
    x = images()
    return model, x, model.init(jax.random.key(2), x)["params"]


def test_paper_network_has_the_papers_parameter_counts():
    template = template_of(DecoupleNet("paper"), jnp.zeros((1, 8, 8, 3)))
    flat = flatten(template)
    conv = sum(np.prod(v.shape) for p, v in flat.items() if p[0].startswith("conv"))
    norm = sum(np.prod(v.shape) for p, v in flat.items() if p[0].startswith("norm"))
    assert (conv, norm) == (696_256, 2_432)  # Section 6.1 of the paper
    assert layer_names("paper")[:3] == ["conv1", "norm1", "conv2"] and layer_names("paper")[-1] == "conv20"
    assert flat[("conv18", "kernel")].shape == (4, 4, 64, 64)  # the transposed conv
    assert flat[("conv1", "kernel")].shape == (3, 3, 4, 64)  # RGB + edge map


def test_edge_map_by_hand():
    x = jnp.zeros((1, 2, 3, 1)).at[0, 0, 1, 0].set(1.0)
    # pixel (0,1) differs from its left, right and lower neighbours: 3 / 4; those neighbours see 1 / 4
    expect = np.array([[0.25, 0.75, 0.25], [0, 0.25, 0]])
    np.testing.assert_allclose(edge_map(x)[0, :, :, 0], expect)


@pytest.mark.parametrize("variant,layer", [("tiny", "norm1"), ("tiny", "conv5"), ("tiny", "norm9"),
                                           ("realtime", "norm26"), ("realtime", "conv14")])
def test_trunk_head_split_equals_the_full_network(variant, layer):
    model = DecoupleNet(variant)
    x = images(2)
    params = model.init(jax.random.key(0), x)["params"]
    state = model.apply({"params": params}, x, stop=layer)
    np.testing.assert_allclose(model.apply({"params": params}, state, start=layer),
                               model.apply({"params": params}, x), atol=1e-5)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_hypernet_params_match_template_and_are_affine_in_gamma(preset, tiny):
    model, x, base = tiny
    if preset in ("norm14", "norm19", "conv19", "conv19-in0", "conv19-out0"):
        model = DecoupleNet("paper")  # tiny has 10 convs; these layers exist in the paper network
        base = model.init(jax.random.key(2), x)["params"]
    hyper = Hypernet.preset(preset, gamma_dim=2)
    psi = trained_like(hyper, base)
    template = template_of(model, x[:1])
    g0, g1 = jnp.array([0.1, 0.3]), jnp.array([0.9, 0.2])
    t0, t1 = hyper.params(psi, g0, template), hyper.params(psi, g1, template)
    assert jax.tree.map(jnp.shape, t0) == jax.tree.map(lambda s: s.shape, template)
    # affine: theta at a convex combination of gammas is that combination of thetas
    tm = hyper.params(psi, 0.25 * g0 + 0.75 * g1, template)
    jax.tree.map(lambda a, b, m: np.testing.assert_allclose(m, 0.25 * a + 0.75 * b, atol=1e-5), t0, t1, tm)
    changed = {path_str(p) for p, v in flatten(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), t0, t1)).items() if v}
    predicted = {path_str(p) for p in hyper.predicted_paths(template)}
    assert changed == predicted  # exactly the predicted leaves depend on gamma


def test_partial_kernel_prediction_touches_one_channel_slice():
    model = DecoupleNet("paper")
    x = images(1)
    base = model.init(jax.random.key(0), x)["params"]
    template = template_of(model, x)
    for part, axis in (("in0", 2), ("out0", 3)):
        hyper = Hypernet(("conv19/kernel",), part)
        psi = trained_like(hyper, base)
        k0 = hyper.params(psi, jnp.array([0.0]), template)["conv19"]["kernel"]
        k1 = hyper.params(psi, jnp.array([1.0]), template)["conv19"]["kernel"]
        differs = np.any(np.asarray(k0 != k1), axis=tuple(a for a in range(4) if a != axis))
        assert differs[0] and not differs[1:].any()


def test_fresh_hypernet_is_the_base_network_for_every_gamma(tiny):
    model, x, base = tiny
    hyper = Hypernet()
    psi = hyper.init(jax.random.key(0), base)
    want = model.apply({"params": base}, x)
    for g in (0.0, 0.7):
        np.testing.assert_array_equal(apply_hyper(model, hyper, psi, x, jnp.array([g])), want)


@pytest.mark.parametrize("hidden,relu", [(None, False), (4, False), (4, True)])
@pytest.mark.parametrize("per_sample", ["map", "vmap"])
def test_per_sample_gamma_equals_a_loop(tiny, hidden, relu, per_sample):
    model, x, base = tiny
    hyper = Hypernet(hidden=hidden, relu=relu)
    psi = trained_like(hyper, base)
    gammas = jnp.array([[0.0], [0.5], [1.0]])
    batched = jax.jit(lambda psi, x, g: apply_hyper(model, hyper, psi, x, g, per_sample))(psi, x, gammas)
    loop = jnp.concatenate([apply_hyper(model, hyper, psi, x[i:i + 1], gammas[i]) for i in range(3)])
    np.testing.assert_allclose(batched, loop, atol=1e-5)
    assert float(jnp.abs(loop[0] - apply_hyper(model, hyper, psi, x[:1], gammas[2])[0]).max()) > 1e-4


def test_cheap_tuning_head_reuses_the_trunk():
    model = DecoupleNet("realtime")
    x = images(1)
    base = model.init(jax.random.key(0), x)["params"]
    hyper = Hypernet(("norm26/*",), gamma_dim=2, hidden=16, relu=True)  # the official MLP 2 -> 16 -> C
    psi = trained_like(hyper, base)
    template = template_of(model, x)
    assert first_predicted_layer(model, hyper, template) == "norm26"
    state = hyper_trunk(model, hyper, psi, x)
    for g in (jnp.array([0.2, 0.1]), jnp.array([0.8, 0.1])):
        np.testing.assert_allclose(hyper_head(model, hyper, psi, state, g),
                                   apply_hyper(model, hyper, psi, x, g), atol=1e-5)


def test_baseline_18_takes_gamma_as_input_channels():
    model = DecoupleNet("tiny", condition_channels=2)
    x = images(2)
    g = jnp.array([[0.1, 0.2], [0.9, 0.2]])
    maps = jnp.broadcast_to(g[:, None, None, :], x.shape[:3] + (2,))  # gamma as a constant (N, H, W, D) map
    params = model.init(jax.random.key(0), x, maps)["params"]
    assert params["conv1"]["kernel"].shape[2] == 3 + 1 + 2
    y = model.apply({"params": params}, x, maps)
    y_swapped = model.apply({"params": params}, x, maps[::-1])
    assert float(jnp.abs(y - y_swapped).max()) > 1e-4
    with pytest.raises(ValueError, match=r"condition map of shape \(N or 1, H, W, D\) = \(2, 16, 16, 2\)"):
        model.apply({"params": params}, x, maps[..., :1])


def test_bad_input_is_named(tiny):
    model, x, base = tiny
    hyper = Hypernet(gamma_dim=2)
    psi = hyper.init(jax.random.key(0), base)
    with pytest.raises(ValueError, match=r"gamma must have shape \(2,\)"):
        apply_hyper(model, hyper, psi, x, jnp.array([0.5]))
    with pytest.raises(ValueError, match=r"\(N, D\) = \(3, 2\)"):
        apply_hyper(model, hyper, psi, x, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="divisible by 2"):
        model.apply({"params": base}, images(1, 15))
    with pytest.raises(ValueError, match="no parameter matches"):
        Hypernet(("conv99/*",)).init(jax.random.key(0), base)
    with pytest.raises(ValueError, match="has no layer 'norm42'"):
        model.apply({"params": base}, x, stop="norm42")
    with pytest.raises(ValueError, match="unknown DecoupleNet variant"):
        DecoupleNet("huge").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="part must be"):
        Hypernet(part="middle")


# --- HyperTuner: the hypernetwork behind the one Tuner protocol ------------------------------------


def perturbed(tree, key=1):
    """tree + 0.05 N(0, 1) on every leaf: a trained-looking phi (init zeroes the gamma-dependent part)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(key), len(leaves))
    return jax.tree.unflatten(treedef, [v + 0.05 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)])


@pytest.fixture(scope="module")
def hyper_tuner(tiny):
    model, x, _ = tiny
    tuner = HyperTuner(("conv*/kernel", "norm2/*"), gamma_dim=2, hidden=4, relu=True)
    return tuner, perturbed(tuner.init(jax.random.key(3), {}, model, x))


def test_hyper_tuner_is_a_one_stage_tuner_equal_to_apply_hyper(tiny, hyper_tuner):
    model, x, _ = tiny
    tuner, phi = hyper_tuner
    assert (tuner.kind, tuner.stages, tuner.control_dim, tuner.pixel) == ("hypernetwork", 1, 2, False)
    assert tuner.hyper == Hypernet(("conv*/kernel", "norm2/*"), "all", 2, 4, True)
    g = jnp.array([0.3, 1.0])
    want = apply_hyper(model, tuner.hyper, phi, x, g)
    np.testing.assert_array_equal(tuner.apply(model, {}, phi, x, Control.vector(g)), want)
    other = tuner.apply(model, {}, phi, x, Control.vector([0.9, 1.0]))
    assert float(jnp.abs(other - want).max()) > 1e-4  # gamma matters


def test_fresh_hyper_tuner_ignores_gamma(tiny):
    model, x, _ = tiny
    tuner = HyperTuner()
    phi = tuner.init(jax.random.key(0), {}, model, x)
    outputs = [tuner.apply(model, {}, phi, x, a) for a in (0.0, 0.7, Control.scalar(1.0))]
    for y in outputs[1:]:
        np.testing.assert_array_equal(y, outputs[0])
    np.testing.assert_array_equal(outputs[0], apply_hyper(model, tuner.hyper, phi, x, jnp.array([0.0])))


@pytest.mark.parametrize("per_sample", ["map", "vmap"])
def test_hyper_tuner_per_sample_control_equals_a_loop_of_globals(tiny, hyper_tuner, per_sample):
    model, x, _ = tiny
    tuner, phi = hyper_tuner
    tuner = dataclasses.replace(tuner, per_sample=per_sample)
    gammas = jnp.array([[0.0, 1.0], [0.5, 0.0], [1.0, 1.0]])
    batched = jax.jit(lambda phi, x, c: tuner.apply(model, {}, phi, x, c))(phi, x, Control.per_sample(gammas))
    loop = jnp.concatenate([tuner.apply(model, {}, phi, x[i:i + 1], Control.vector(gammas[i])) for i in range(3)])
    np.testing.assert_allclose(batched, loop, atol=1e-5)


def test_hyper_tuner_new_gammas_never_retrace(tiny, hyper_tuner):
    model, x, _ = tiny
    tuner, phi = hyper_tuner
    traces = []

    @jax.jit
    def run(phi, x, control):
        traces.append(1)
        return tuner.apply(model, {}, phi, x, control)

    for g in ([0.1, 0.2], [0.9, 0.0], [1, 1]):
        run(phi, x, Control.vector(g))
    assert len(traces) == 1


def test_hyper_tuner_refuses_other_controls(tiny, hyper_tuner):
    model, x, _ = tiny
    tuner, phi = hyper_tuner
    with pytest.raises(ValueError, match="cannot take a per-pixel control map"):
        tuner.apply(model, {}, phi, x, Control.per_pixel(jnp.zeros((1, 16, 16, 2))))
    with pytest.raises(ValueError, match="takes 2-dimensional control; got a 1-dimensional one"):
        tuner.apply(model, {}, phi, x, 0.5)  # a bare scalar is one global alpha: D = 1
    with pytest.raises(ValueError, match="control has 2 samples for a batch of 3"):
        tuner.apply(model, {}, phi, x, Control.per_sample(jnp.zeros((2, 2))))
    with pytest.raises(TypeError, match="ambiguous"):  # rank-guessed gamma is gone: say which form
        tuner.apply(model, {}, phi, x, jnp.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="no parameter matches"):
        HyperTuner(("conv99/*",)).init(jax.random.key(0), {}, model, x)


def test_hyper_tuner_round_trips_through_its_run_folder_spec():
    tuner = HyperTuner(("norm26/*",), "all", gamma_dim=2, hidden=16, relu=True, per_sample="vmap")
    spec = tuner_to_spec(tuner)
    assert spec["class"] == "HyperTuner"
    assert make_tuner(json.loads(json.dumps(spec))) == tuner  # as stored in the run's JSON meta
    assert make_tuner(tuner) is tuner
    with pytest.raises(ValueError, match="unknown tuner class"):
        make_tuner({"class": "Nope"})
