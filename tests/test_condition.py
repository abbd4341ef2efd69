"""FFDNet and the conditional tuner kind (the level as an input map; DESIGN.md principle 5)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ctl_jax.control import Control
from ctl_jax.nets.decouple_net import DecoupleNet
from ctl_jax.nets.ffdnet import FFDNet, ffdnet, pixel_shuffle, pixel_unshuffle
from ctl_jax.nets.layers import pixel_shuffle as torch_order_shuffle
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.tuners import TUNERS, Conditional, make_tuner


def images(n=2, size=8, channels=1, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, size, size, channels))


def n_params(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def shapes_of(model, channels):
    """The parameter shapes (jax.eval_shape: nothing is initialised or run)."""
    x = jnp.zeros((1, 8, 8, channels))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, jnp.zeros((1, 8, 8, 1))))["params"]


@pytest.fixture(scope="module")
def tuned():
    """Tiny grey FFDNet under the tuner for sigma 0..75 (control 0..1), with its random init as phi.
    Shared by the tests: on a loaded CPU every new random-init shape costs seconds of compilation."""
    model = ffdnet("tiny", channels=1)
    tuner = Conditional.level_range(0, 75)
    x = images(3, 8, 1)
    phi = tuner.init(jax.random.key(0), {}, model, x)
    return model, tuner, x, phi


# -- FFDNet -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_ffdnet_shapes(channels):
    model = ffdnet("tiny", channels=channels)
    shapes = shapes_of(model, channels)
    assert sorted(shapes) == ["conv_0", "conv_1", "conv_2"]
    assert shapes["conv_0"]["kernel"].shape == (3, 3, 4 * channels + 1, 8)  # 4C sub-images + the map
    assert shapes["conv_2"]["kernel"].shape == (3, 3, 8, 4 * channels)
    params = jax.tree.map(lambda s: jnp.full(s.shape, 0.05, s.dtype), shapes)
    x = images(2, 8, channels)
    y = model.apply({"params": params}, x, jnp.full((1, 8, 8, 1), 25 / 255))  # a map shared by the batch
    assert y.shape == x.shape and y.dtype == jnp.float32


def test_ffdnet_paper_variants_and_parameter_counts():
    gray, color = shapes_of(ffdnet("gray"), 1), shapes_of(ffdnet("color"), 3)
    assert len(gray) == 15 and len(color) == 12
    assert gray["conv_0"]["kernel"].shape == (3, 3, 5, 64) and gray["conv_14"]["kernel"].shape == (3, 3, 64, 4)
    assert color["conv_0"]["kernel"].shape == (3, 3, 13, 96) and color["conv_11"]["kernel"].shape == (3, 3, 96, 12)
    # Grey: 15 convs of 3x3 with bias, 64 features, input 4*1 + 1 = 5, output 4:
    #   conv_0 9*5*64 + 64 = 2944; conv_1..13: 13 * (9*64*64 + 64) = 480064; conv_14 9*64*4 + 4 = 2308
    #   -> 485316 (kernels alone 2880 + 479232 + 2304 = 484416).
    # The references give no count for the paper network; seed 004's PyTorch (IPOL) FFDNet has 486080 =
    # the same kernels without biases + 13 batch norms of 2 * 64, which the batch-norm-free layout drops.
    assert n_params(gray) == 485316
    kernels = sum(int(np.prod(p["kernel"].shape)) for p in gray.values())
    assert kernels == 484416 and kernels + 13 * 2 * 64 == 486080
    # Colour: 12 convs, 96 features, input 4*3 + 1 = 13, output 12:
    #   9*13*96 + 96 = 11328; 10 * (9*96*96 + 96) = 830400; 9*96*12 + 12 = 10380 -> 852108.
    assert n_params(color) == 852108


def test_ffdnet_refuses_odd_sizes_and_bad_maps(tuned):
    model, _, _, params = tuned
    with pytest.raises(ValueError, match="divisible by 2; got 7x8"):
        model.apply({"params": params}, jnp.zeros((1, 7, 8, 1)), jnp.zeros((1, 7, 8, 1)))
    with pytest.raises(ValueError, match=r"noise-level map cond of shape \(N or 1, H, W, D\)"):
        model.apply({"params": params}, images(1), jnp.zeros((1, 4, 4, 1)))


def test_ffdnet_factory_and_registry():
    assert NetworkSpec("ffdnet", channels=1).build() == FFDNet(channels=1, depth=15, features=64)
    assert NetworkSpec("ffdnet").build() == FFDNet(channels=3, depth=12, features=96)
    assert NetworkSpec("ffdnet", "tiny", channels=1).build() == FFDNet(channels=1, depth=3, features=8)
    with pytest.raises(ValueError, match="FFDNet has no AdaFM slots"):
        NetworkSpec("ffdnet", adafm_kernel=3).build()
    with pytest.raises(ValueError, match="'gray' is the 1-channel network"):
        ffdnet("gray", channels=3)
    with pytest.raises(ValueError, match="unknown FFDNet variant"):
        ffdnet("huge")


def test_pixel_unshuffle_round_trip_and_order():
    x = jax.random.normal(jax.random.key(0), (2, 6, 4, 3))
    z = pixel_unshuffle(x)
    assert z.shape == (2, 3, 2, 12)
    np.testing.assert_array_equal(pixel_shuffle(z), x)
    # The authors' order: channel 4c + 2j + i holds pixel (2h + i, 2w + j) of colour c.
    for c, i, j in [(0, 1, 0), (0, 0, 1), (2, 1, 1)]:
        np.testing.assert_array_equal(z[..., 4 * c + 2 * j + i], x[:, i::2, j::2, c])
    # PyTorch's order (layers.pixel_shuffle) is the same permutation with i and j swapped.
    swapped = z.reshape(2, 3, 2, 3, 2, 2).swapaxes(-1, -2).reshape(2, 3, 2, 12)
    np.testing.assert_array_equal(torch_order_shuffle(swapped, 2), x)


def test_ffdnet_pools_the_map_per_2x2_block(tuned):
    """Each low-resolution position sees the mean of its 2x2 block of the map."""
    model, _, _, params = tuned
    x = images(1)
    coarse = jax.random.uniform(jax.random.key(1), (1, 4, 4, 1))
    fine = jnp.repeat(jnp.repeat(coarse, 2, 1), 2, 2)
    wobble = jnp.tile(jnp.array([[0.1, -0.1], [-0.2, 0.2]]), (4, 4))[None, :, :, None]  # zero mean per block
    np.testing.assert_allclose(model.apply({"params": params}, x, fine + wobble),
                               model.apply({"params": params}, x, fine), atol=1e-6)


# -- the conditional tuner --------------------------------------------------------------------------

def test_conditional_protocol_and_map_units(tuned):
    model, tuner, x, phi = tuned
    assert (tuner.kind, tuner.stages, tuner.pixel, tuner.control_dim) == ("conditional", 1, True, 1)
    assert isinstance(TUNERS["conditional"], Conditional) and make_tuner("conditional").stages == 1
    assert tuner.scale == pytest.approx((75 / 255,)) and tuner.offset == (0.0,)
    cond = tuner.condition(Control.scalar(1.0), x)
    assert cond.shape == (3, 8, 8, 1)
    np.testing.assert_allclose(cond, 75 / 255, rtol=1e-6)  # control 1 = sigma 75 = the paper's M of 75/255
    y0, y1 = (tuner.apply(model, {}, phi, x, a) for a in (0.0, 1.0))
    assert y0.shape == x.shape and float(jnp.abs(y1 - y0).max()) > 1e-4


def test_constant_map_equals_global_control(tuned):
    model, tuner, x, phi = tuned
    y = tuner.apply(model, {}, phi, x, Control.scalar(0.4))
    for shape in [(3, 8, 8, 1), (1, 8, 8, 1), (1, 5, 3, 1)]:  # per image, shared, another resolution
        y_map = tuner.apply(model, {}, phi, x, Control.per_pixel(jnp.full(shape, 0.4)))
        np.testing.assert_allclose(y_map, y, atol=1e-5)


def test_map_of_another_resolution_is_resized(tuned):
    model, tuner, x, phi = tuned
    small = jax.random.uniform(jax.random.key(2), (3, 4, 4, 1))
    resized = jax.image.resize(small, (3, 8, 8, 1), "linear", antialias=False)
    y = tuner.apply(model, {}, phi, x, Control.per_pixel(small))
    np.testing.assert_allclose(y, tuner.apply(model, {}, phi, x, Control.per_pixel(resized)), atol=1e-6)
    y_const = tuner.apply(model, {}, phi, x, Control.scalar(float(small.mean())))
    assert float(jnp.abs(y - y_const).max()) > 1e-5  # the map's variation reaches the output


def test_per_sample_equals_loop_of_globals(tuned):
    model, tuner, x, phi = tuned
    alphas = [0.0, 0.35, 1.3]  # 1.3: extrapolates past sigma 75
    y = tuner.apply(model, {}, phi, x, Control.per_sample(jnp.array(alphas)))
    for i, a in enumerate(alphas):
        np.testing.assert_allclose(y[i], tuner.apply(model, {}, phi, x[i:i + 1], Control.scalar(a))[0], atol=1e-5)


def test_vmap_over_controls_equals_loop_and_never_retraces(tuned):
    model, tuner, x, phi = tuned
    traces = []

    @jax.jit
    def run(control, phi, x):
        traces.append(1)
        return tuner.apply(model, {}, phi, x, control)

    alphas = jnp.linspace(0.0, 1.0, 4)
    y_vmap = jax.jit(jax.vmap(lambda a: tuner.apply(model, {}, phi, x, Control.scalar(a))))(alphas)
    for i, a in enumerate(alphas):
        np.testing.assert_allclose(y_vmap[i], run(Control.scalar(a), phi, x), atol=1e-5)
    run(Control.scalar(1), phi, x)  # a Python int, converted by Control.scalar
    run(Control.scalar(np.float32(0.7)), phi, x)
    assert len(traces) == 1


def test_wrong_control_raises(tuned):
    model, tuner, x, phi = tuned
    with pytest.raises(ValueError, match="takes 1-dimensional control; got a 2-dimensional one"):
        tuner.apply(model, {}, phi, x, Control.vector([0.1, 0.2]))
    with pytest.raises(ValueError, match="control has 2 samples for a batch of 3"):
        tuner.apply(model, {}, phi, x, Control.per_sample(jnp.array([0.1, 0.2])))
    with pytest.raises(ValueError, match="one-stage"):
        tuner.init(jax.random.key(0), phi, model, x)
    with pytest.raises(ValueError, match="scale needs 1 or 2 finite values"):
        Conditional(control_dim=2, scale=(1.0, 2.0, 3.0))


def test_training_over_a_sigma_range_reduces_the_loss(tuned):
    """A few Adam steps on the tiny FFDNet from its init: sigma ~ U[0, 75] per sample, conditioned on it."""
    model, tuner, _, phi = tuned
    # smooth clean crops: bilinear upsampling of 4x4 random fields
    clean = jax.image.resize(jax.random.uniform(jax.random.key(0), (8, 4, 4, 1)), (8, 16, 16, 1), "linear")
    opt = optax.adam(3e-3)

    def loss_fn(phi, key):
        k_sigma, k_noise = jax.random.split(key)
        sigma = jax.random.uniform(k_sigma, (clean.shape[0],), maxval=75.0)
        noisy = clean + sigma[:, None, None, None] / 255 * jax.random.normal(k_noise, clean.shape)
        out = tuner.apply(model, {}, phi, noisy, Control.per_sample(sigma / 75))
        return jnp.mean((out - clean) ** 2)

    @jax.jit
    def step(phi, state, key):
        loss, grads = jax.value_and_grad(loss_fn)(phi, key)
        updates, state = opt.update(grads, state, phi)
        return optax.apply_updates(phi, updates), state, loss

    eval_key = jax.random.key(99)
    before = float(loss_fn(phi, eval_key))
    state = opt.init(phi)
    for key in jax.random.split(jax.random.key(2), 40):
        phi, state, _ = step(phi, state, key)
    after = float(loss_fn(phi, eval_key))
    assert np.isfinite(after) and after < 0.2 * before, (before, after)  # measured: 0.61 -> 0.05


def test_decouple_net_baseline_18_through_the_same_tuner():
    model = DecoupleNet("tiny", condition_channels=2)
    tuner = Conditional(control_dim=2)  # gamma used as it is (scale 1, offset 0)
    x = images(2, 16, 3)
    phi = tuner.init(jax.random.key(0), {}, model, x)
    assert phi["conv1"]["kernel"].shape[2] == 3 + 1 + 2  # image, edge map, gamma
    gamma = Control.vector([0.3, 0.8])
    y = tuner.apply(model, {}, phi, x, gamma)
    np.testing.assert_allclose(tuner.apply(model, {}, phi, x, Control.per_pixel(jnp.full((1, 16, 16, 2), gamma.values))),
                               y, atol=1e-5)
    per_sample = jnp.array([[0.3, 0.8], [0.9, 0.1]])
    y2 = tuner.apply(model, {}, phi, x, Control.per_sample(per_sample))
    np.testing.assert_allclose(y2[0], y[0], atol=1e-5)
    np.testing.assert_allclose(y2[1], tuner.apply(model, {}, phi, x, Control.vector(per_sample[1]))[1], atol=1e-5)
    assert float(jnp.abs(y2[1] - y[1]).max()) > 1e-5
    with pytest.raises(ValueError, match="takes 2-dimensional control"):
        tuner.apply(model, {}, phi, x, Control.scalar(0.5))
    with pytest.raises(ValueError, match="condition map of shape"):  # (N, D) gammas are no longer taken
        model.apply({"params": phi}, x, per_sample)
