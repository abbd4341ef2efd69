"""ctl_jax.nets.layers.pixel_shuffle: einops form against the reshape-transpose form it replaced."""

import chex
import jax
import numpy as np
import pytest

from ctl_jax.nets.layers import pixel_shuffle


def reshape_transpose_shuffle(x, scale):
    """The former implementation: split C into (c, i, j), move i after H and j after W."""
    n, h, w, cs2 = x.shape
    c = cs2 // (scale * scale)
    x = x.reshape(n, h, w, c, scale, scale).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * scale, w * scale, c)


@pytest.mark.parametrize("shape,scale", [((2, 3, 5, 8), 2), ((1, 4, 2, 27), 3), ((3, 2, 2, 16), 4),
                                         ((1, 3, 3, 2), 1)])
def test_pixel_shuffle_equals_reshape_transpose(shape, scale):
    x = jax.random.normal(jax.random.key(0), shape)
    out = pixel_shuffle(x, scale)
    chex.assert_shape(out, (shape[0], shape[1] * scale, shape[2] * scale, shape[3] // scale ** 2))
    chex.assert_trees_all_equal(out, reshape_transpose_shuffle(x, scale))
    chex.assert_trees_all_equal(jax.jit(pixel_shuffle, static_argnums=1)(x, scale), out)
    np.testing.assert_array_equal(pixel_shuffle(np.asarray(x), scale), np.asarray(out))  # numpy in, numpy out


def test_pixel_shuffle_is_torch_order():
    # Input channel c*s*s + i*s + j lands on output channel c at sub-pixel (i, j).
    x = np.arange(2 * 3 * 12, dtype=np.float32).reshape(1, 2, 3, 12)
    out = np.asarray(pixel_shuffle(x, 2))
    for c, i, j in [(0, 0, 1), (1, 1, 0), (2, 1, 1)]:
        np.testing.assert_array_equal(out[0, i::2, j::2, c], x[0, :, :, c * 4 + i * 2 + j])
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.pixel_shuffle(torch.from_numpy(x).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(out, expected.numpy())


def test_pixel_shuffle_errors():
    with pytest.raises(ValueError, match="channels 12 not divisible by scale\\^2 = 9"):
        pixel_shuffle(np.zeros((1, 2, 2, 12), np.float32), 3)
    with pytest.raises(ValueError):  # not (N, H, W, C)
        pixel_shuffle(np.zeros((2, 2, 4), np.float32), 2)


def test_adafm_net_residual_and_super_resolution_forms():
    import jax
    import jax.numpy as jnp
    import pytest

    from ctl_jax.nets.adafm_net import adafm_net

    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    net = adafm_net("tiny", residual=True)
    params = net.init(jax.random.key(1), x)["params"]
    params["hr_conv1"] = jax.tree.map(jnp.zeros_like, params["hr_conv1"])  # the correction is zero ...
    np.testing.assert_array_equal(net.apply({"params": params}, x), x)    # ... so the output is the input
    plain = adafm_net("tiny")
    assert jax.tree.structure(plain.init(jax.random.key(1), x)) == jax.tree.structure({"params": params})
    sr = adafm_net("tiny", upscale=4)
    assert sr.apply(sr.init(jax.random.key(1), x), x).shape == (1, 64, 64, 3)
    with pytest.raises(ValueError, match="residual=True needs upscale=1"):
        adafm_net("tiny", upscale=2, residual=True).init(jax.random.key(1), x)
