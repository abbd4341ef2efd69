"""Per-pixel maps whose boundary cuts through a coarse layer's pixels (ctl_jax.tuners.mixing).

A coarse feature (after a stride-2 conv) reaches every fine pixel of its block, so it can carry
only one alpha. If the coarse and fine layers saw the boundary differently, the pixels along it
would run with a mix of levels that no global alpha gives: a thin line along the seam. These
tests build level changes that one layer makes and a layer at the other resolution undoes (so
both endpoints compute the same function), where any such mix shows.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.control import Control
from ctl_jax.nets.adafm_net import adafm_net
from ctl_jax.nets.layers import pixel_shuffle
from ctl_jax.tuners import apply_at_alpha
from ctl_jax.tuners.mixing import layer_grids, mixing_grid


class CoarseToFine(nn.Module):
    """A stride-2 conv, a 1x1 conv at half resolution, pixel shuffle, a 1x1 conv at full resolution."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="down")(x))
        h = nn.relu(pixel_shuffle(nn.Conv(4 * 4, (1, 1), name="up")(h), 2))
        return nn.Conv(3, (1, 1), name="out")(h)


def compensated(theta0, coarse, fine):
    """theta1: the coarse layer x2 (kernel and bias), the fine layer's kernel x0.5; after a ReLU
    this is the same function."""
    theta1 = dict(theta0)
    theta1[coarse] = jax.tree.map(lambda w: 2.0 * w, theta0[coarse])
    theta1[fine] = {**theta0[fine], "kernel": 0.5 * theta0[fine]["kernel"]}
    return theta1


def step_maps(h, w):
    """Hard 0 | 1 maps: a vertical boundary between 2x2 blocks, one inside a block (between columns
    w/2 and w/2 + 1) and a diagonal one (through blocks everywhere)."""
    r, c = np.mgrid[0:h, 0:w]
    return {"aligned column": (c >= w // 2).astype(np.float32), "odd column": (c > w // 2).astype(np.float32),
            "diagonal": (c > r).astype(np.float32)}


def assert_every_pixel_is_some_global_alpha(model, theta0, theta1, x):
    alphas = np.linspace(0.0, 1.0, 9)
    y_global = np.stack([np.asarray(apply_at_alpha(model, theta0, theta1, x, float(a))) for a in alphas])
    np.testing.assert_allclose(y_global[-1], y_global[0], atol=1e-5)  # the same function at 0 and 1
    assert np.abs(y_global[4] - y_global[0]).max() > 1e-2  # but not at 0.5: interpolation is not trivial here
    for name, amap in step_maps(*x.shape[1:3]).items():
        y = np.asarray(apply_at_alpha(model, theta0, theta1, x, Control.per_pixel(amap)))
        gap = np.abs(y[None] - y_global).max(axis=-1).min(axis=0)  # per pixel, to the nearest global alpha
        assert gap.max() < 1e-5, f"{name}: a pixel matches no global alpha (gap {gap.max():.3g})"
        if name == "aligned column":  # a boundary between blocks stays sharp: only levels 0 and 1
            np.testing.assert_allclose(y, y_global[0], atol=1e-5)


def test_every_pixel_is_some_global_alpha_across_a_block_boundary():
    x = jax.random.uniform(jax.random.key(0), (1, 16, 24, 3))
    model = CoarseToFine()
    theta0 = model.init(jax.random.key(1), x)["params"]
    assert_every_pixel_is_some_global_alpha(model, theta0, compensated(theta0, "up", "out"), x)


def test_adafm_net_every_pixel_is_some_global_alpha_across_a_block_boundary():
    """AdaFM-Net: stride-2 conv, body and up_conv at half resolution, pixel shuffle, hr convs at full
    resolution. The hr convs keep only their centre taps, so that nothing at full resolution mixes
    neighbouring pixels and the exact statement holds; up_conv x2 is undone by hr_conv0 x0.5."""
    x = jax.random.uniform(jax.random.key(0), (1, 16, 24, 3))
    model = adafm_net("tiny")
    theta0 = jax.tree.map(lambda w: 7.0 * w, model.init(jax.random.key(1), x)["params"])  # outputs of about 0.1-1
    for name in ("hr_conv0", "hr_conv1"):
        centre = jnp.zeros_like(theta0[name]["kernel"]).at[1, 1].set(theta0[name]["kernel"][1, 1])
        theta0[name] = {**theta0[name], "kernel": centre}
    assert_every_pixel_is_some_global_alpha(model, theta0, compensated(theta0, "up_conv", "hr_conv0"), x)


def test_mixing_grid_is_the_coarsest_layer_grid_pooled_outputs_aside():
    assert mixing_grid({(16, 24), (8, 12), (1, 1)}) == (8, 12)
    assert mixing_grid({(1, 1)}) is None and mixing_grid(set()) is None
    model = adafm_net("tiny")
    x = jnp.zeros((1, 16, 24, 3))
    assert layer_grids(model, model.init(jax.random.key(0), x)["params"], x) == {(16, 24), (8, 12)}


class PixelwiseWithInstanceNorm(nn.Module):
    """1x1 conv -> instance norm -> ReLU -> 1x1 conv: every op is pixel-local but the norm's statistics."""

    @nn.compact
    def __call__(self, x):
        h = nn.InstanceNorm(epsilon=1e-5, use_fast_variance=False, name="norm")(nn.Conv(6, (1, 1), name="a")(x))
        return nn.Conv(3, (1, 1), name="b")(nn.relu(h))


def test_instance_norm_pools_its_statistics_over_pixels_of_similar_alpha():
    """Under a map of 0 on the left half and 1 on the right, each half is what its own network gives
    on that half alone (its statistics pooled over its half, not over the whole image); a constant
    map is the global alpha. With whole-image statistics the left half moved 0.3 from the crop's output."""
    from ctl_jax.tuners.mixing import alpha_pooled_instance_norm, apply_with_alpha_map

    model = PixelwiseWithInstanceNorm()
    x = jax.random.uniform(jax.random.key(0), (2, 8, 12, 3))
    x = x.at[:, :, 6:].multiply(3.0)  # the halves' statistics differ
    theta0 = model.init(jax.random.key(1), x)["params"]
    theta1 = jax.tree.map(lambda p: p + 0.5 * jax.random.normal(jax.random.key(2), p.shape), theta0)
    half = Control.per_pixel(jnp.broadcast_to((jnp.arange(12) >= 6).astype(jnp.float32), (8, 12)))
    out = apply_with_alpha_map(model, theta0, theta1, x, half)
    np.testing.assert_allclose(out[:, :, :6], model.apply({"params": theta0}, x[:, :, :6]), atol=1e-5)
    np.testing.assert_allclose(out[:, :, 6:], model.apply({"params": theta1}, x[:, :, 6:]), atol=1e-5)
    assert float(jnp.abs(model.apply({"params": theta0}, x)[:, :, :6] - out[:, :, :6]).max()) > 0.05
    constant = apply_with_alpha_map(model, theta0, theta1, x, Control.per_pixel(jnp.full((8, 12), 0.25)))
    mixed = jax.tree.map(lambda p, q: 0.75 * p + 0.25 * q, theta0, theta1)
    np.testing.assert_allclose(constant, model.apply({"params": mixed}, x), atol=1e-5)
    # a ramp: every pixel's statistics are a hat-weighted blend of its neighbouring alpha bins'
    ramp = jnp.broadcast_to(jnp.linspace(0.0, 1.0, 12), (1, 8, 12))[..., None]
    y = alpha_pooled_instance_norm(x[:1], ramp, 1e-5, bins=2)  # bins 0 and 1: hats 1 - a and a
    w0, w1 = 1 - ramp, ramp
    mean = [jnp.sum(w * x[:1], axis=(1, 2)) / jnp.sum(w) for w in (w0, w1)]
    var = [jnp.sum(w * (x[:1] - m) ** 2, axis=(1, 2)) / jnp.sum(w) for w, m in zip((w0, w1), mean)]
    expected = (x[:1] - (w0 * mean[0] + w1 * mean[1])) / jnp.sqrt(w0 * var[0] + w1 * var[1] + 1e-5)
    np.testing.assert_allclose(y, expected, atol=1e-5)
