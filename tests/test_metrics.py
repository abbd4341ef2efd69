"""Tests for ctl_jax.eval.metrics (PSNR, SSIM, luma) and ctl_jax.eval.filters."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import correlate2d
from skimage import color, data, metrics, transform

from ctl_jax.eval.filters import filter_similarity, per_layer_filter_similarity
from ctl_jax.eval.metrics import crop_border, psnr, rgb_to_y, ssim
from ctl_jax.testing import add_noise, noisy_pair, random_image


def _skimage_ssim(a, b):
    return metrics.structural_similarity(
        np.asarray(a, np.float64), np.asarray(b, np.float64), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0, channel_axis=-1)


@pytest.fixture(scope="module")
def astronaut_pair():
    img = transform.resize(data.astronaut(), (64, 64), anti_aliasing=True).astype(np.float32)
    return img, add_noise(img, 0.05, seed=1)


# ---------------------------------------------------------------- rgb_to_y

def test_rgb_to_y_hand_values():
    pixels = np.array([[[[0, 0, 0], [1, 1, 1], [1, 0, 0]]]], np.float32)  # (1, 1, 3, 3)
    y = np.asarray(rgb_to_y(pixels))
    chex.assert_shape(y, (1, 1, 3, 1))
    np.testing.assert_allclose(y[0, 0, :, 0], [16 / 255, 235 / 255, (16 + 65.481) / 255],
                               rtol=1e-6)


def test_rgb_to_y_matches_skimage():
    img = random_image((9, 7, 3))
    expected = color.rgb2ycbcr(img)[..., 0] / 255
    np.testing.assert_allclose(np.asarray(rgb_to_y(img))[..., 0], expected, atol=1e-6)


def test_rgb_to_y_rejects_grey():
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_y(np.zeros((4, 4, 1), np.float32))


# ---------------------------------------------------------------- crop_border

def test_crop_border():
    x = np.arange(2 * 6 * 8 * 1, dtype=np.float32).reshape(2, 6, 8, 1)
    assert crop_border(x, 0) is x
    np.testing.assert_array_equal(crop_border(x, 2), x[:, 2:4, 2:6])
    with pytest.raises(ValueError):
        crop_border(x, 3)
    with pytest.raises(ValueError):
        crop_border(x, -1)


# ---------------------------------------------------------------- psnr

def test_psnr_closed_form():
    a = np.zeros((2, 8, 8, 3), np.float32)
    b = np.full_like(a, 0.1)
    np.testing.assert_allclose(np.asarray(psnr(a, b)), [20.0, 20.0], atol=1e-4)
    # data_range 255 with the same relative error: 20 dB again.
    np.testing.assert_allclose(np.asarray(psnr(a * 255, b * 255, data_range=255.0)), 20.0,
                               atol=1e-4)


def test_psnr_identical_is_inf():
    a, _ = noisy_pair((8, 8, 3))
    assert np.isposinf(float(psnr(a, a)))


def test_psnr_border_crop():
    a = np.zeros((1, 10, 10, 3), np.float32)
    b = a.copy()
    b[:, :2] = 1.0
    b[:, :, -2:] = 1.0
    assert np.isfinite(psnr(a, b)[0])
    assert np.isposinf(psnr(a, b, border=2)[0])
    assert np.isfinite(psnr(a, b, border=1)[0])


def test_psnr_y_channel_matches_luma_images():
    a, b = noisy_pair((2, 12, 12, 3))
    np.testing.assert_allclose(np.asarray(psnr(a, b, y_channel=True, border=1)),
                               np.asarray(psnr(rgb_to_y(a), rgb_to_y(b), border=1)), rtol=1e-6)
    # Grey inputs are their own Y channel.
    ga, gb = a[..., :1], b[..., :1]
    np.testing.assert_allclose(np.asarray(psnr(ga, gb, y_channel=True)),
                               np.asarray(psnr(ga, gb)), rtol=1e-6)


def test_psnr_batched_equals_loop_and_single_is_scalar():
    a, b = noisy_pair((3, 10, 12, 3))
    batched = np.asarray(psnr(a, b, border=2))
    chex.assert_shape(batched, (3,))
    single = [psnr(a[i], b[i], border=2) for i in range(3)]
    chex.assert_shape(single, ())
    np.testing.assert_allclose(batched, np.asarray(single), rtol=1e-6)


def test_psnr_matches_skimage():
    a, b = noisy_pair((16, 16, 3))
    expected = metrics.peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64),
                                               data_range=1.0)
    np.testing.assert_allclose(float(psnr(a, b)), expected, rtol=1e-5)


# ---------------------------------------------------------------- ssim

def _matlab_ssim_reference(a, b, data_range=1.0):
    """Direct float64 transcription of Wang et al.'s ssim_index ('valid' filtering), per channel."""
    t = np.arange(11) - 5
    g = np.exp(-t ** 2 / (2 * 1.5 ** 2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        f = lambda z: correlate2d(z, window, mode="valid")
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
        m = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        values.append(m.mean())
    return np.mean(values)


def test_ssim_matches_skimage_random():
    a, b = noisy_pair((2, 24, 20, 3))
    got = np.asarray(ssim(a, b))
    chex.assert_shape(got, (2,))
    np.testing.assert_allclose(got, [_skimage_ssim(a[i], b[i]) for i in range(2)], atol=1e-4)


def test_ssim_matches_skimage_and_matlab_on_real_image(astronaut_pair):
    img, noisy = astronaut_pair
    got = float(ssim(img, noisy))
    assert abs(got - _skimage_ssim(img, noisy)) < 1e-4
    assert abs(got - _matlab_ssim_reference(img, noisy)) < 1e-4


def test_skimage_margin_crop_equals_valid_filtering(astronaut_pair):
    # skimage pads, filters, then drops the 5-pixel margin of the SSIM map; the kept positions
    # never touch the padding, so it is the 'valid' (MATLAB / BasicSR) SSIM to rounding error.
    img, noisy = astronaut_pair
    assert abs(_skimage_ssim(img, noisy) - _matlab_ssim_reference(img, noisy)) < 1e-12


def test_ssim_identity_grey_and_options(astronaut_pair):
    img, noisy = astronaut_pair
    np.testing.assert_allclose(float(ssim(img, img)), 1.0, atol=1e-6)
    grey, grey_noisy = img[..., :1], noisy[..., :1]
    np.testing.assert_allclose(float(ssim(grey, grey_noisy)), _skimage_ssim(grey, grey_noisy),
                               atol=1e-4)
    y_ref = _skimage_ssim(np.asarray(rgb_to_y(img))[4:-4, 4:-4],
                          np.asarray(rgb_to_y(noisy))[4:-4, 4:-4])
    np.testing.assert_allclose(float(ssim(img, noisy, border=4, y_channel=True)), y_ref, atol=1e-4)


def test_ssim_too_small():
    with pytest.raises(ValueError, match="11"):
        ssim(np.zeros((12, 12, 1), np.float32), np.zeros((12, 12, 1), np.float32), border=1)


# ---------------------------------------------------------------- input errors

@pytest.mark.parametrize("metric", [psnr, ssim])
def test_bad_inputs(metric):
    x = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        metric(x, x[..., :1])
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        metric(x[0, 0], x[0, 0])
    with pytest.raises(ValueError, match="float"):
        metric(x.astype(np.uint8), x.astype(np.uint8))
    with pytest.raises(ValueError, match="3 channels"):
        metric(np.zeros((16, 16, 2), np.float32), np.zeros((16, 16, 2), np.float32),
               y_channel=True)


# ---------------------------------------------------------------- jit

def test_jit_matches_eager(astronaut_pair):
    img, noisy = astronaut_pair
    a, b = jnp.stack([img, noisy]), jnp.stack([noisy, noisy])
    chex.assert_trees_all_close(jax.jit(psnr)(a, b), psnr(a, b), rtol=1e-6)
    static = ("border", "y_channel")
    for fn in (psnr, ssim):
        jitted = jax.jit(fn, static_argnames=static)
        chex.assert_trees_all_close(jitted(a, b, border=3, y_channel=True),
                                    fn(a, b, border=3, y_channel=True), rtol=1e-5)
    chex.assert_trees_all_close(jax.jit(ssim)(a, b), ssim(a, b), rtol=1e-5)


# ---------------------------------------------------------------- filter similarity

def _tree(seed=0):
    rng = np.random.default_rng(seed)
    return {"Conv_0": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
                       "bias": rng.standard_normal(4).astype(np.float32)},
            "block": {"Conv_1": {"kernel": rng.standard_normal((1, 1, 4, 3)).astype(np.float32)}},
            "Dense_0": {"kernel": rng.standard_normal((3, 5)).astype(np.float32)}}


def _scale(tree, s):
    return jax.tree_util.tree_map(lambda x: s * x, tree)


def test_filter_similarity_identical_scaled_negated():
    a = _tree()
    same = filter_similarity(a, a)
    assert float(same["mae"]) == 0.0
    np.testing.assert_allclose(float(same["cosine"]), 1.0, atol=1e-6)

    doubled = filter_similarity(a, _scale(a, 2.0))
    conv = np.concatenate([a["Conv_0"]["kernel"].ravel(), a["block"]["Conv_1"]["kernel"].ravel()])
    np.testing.assert_allclose(float(doubled["cosine"]), 1.0, atol=1e-6)
    np.testing.assert_allclose(float(doubled["mae"]), np.abs(conv).mean(), rtol=1e-6)

    np.testing.assert_allclose(float(filter_similarity(a, _scale(a, -1.0))["cosine"]), -1.0,
                               atol=1e-6)


def test_filter_similarity_hand_computed():
    # Layer X: 1x1 kernel, Cin 2, Cout 2 -> filters (1, 0) vs (0, 1) [cos 0], (1, 1) vs (2, 2) [cos 1].
    ka = np.array([[1.0, 1.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    kb = np.array([[0.0, 2.0], [1.0, 2.0]]).reshape(1, 1, 2, 2)
    # Layer Y: 1x1 kernel, Cin 1, Cout 1 -> (3) vs (-3) [cos -1].
    ya, yb = np.full((1, 1, 1, 1), 3.0), np.full((1, 1, 1, 1), -3.0)
    a = {"X": {"kernel": ka}, "Y": {"kernel": ya}}
    b = {"X": {"kernel": kb}, "Y": {"kernel": yb}}
    out = filter_similarity(a, b)
    # |diffs|: X = 1, 1, 1, 1; Y = 6 -> 10 / 5 elements.
    np.testing.assert_allclose(float(out["mae"]), 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(out["cosine"]), (0 + 1 - 1) / 3, atol=1e-6)

    layers = per_layer_filter_similarity(a, b)
    assert list(layers) == ["X/kernel", "Y/kernel"]
    np.testing.assert_allclose([float(v) for v in layers["X/kernel"]], [1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose([float(v) for v in layers["Y/kernel"]], [6.0, -1.0], atol=1e-6)


def test_filter_similarity_only_shared_paths_and_jit():
    a, b = _tree(0), _tree(1)
    b_extra = dict(b, adafm_x={"depthwise": {"kernel": np.ones((3, 3, 1, 4), np.float32)}})
    eager = filter_similarity(a, b_extra)
    jitted = jax.jit(filter_similarity)(a, b)
    chex.assert_trees_all_close(jitted, eager, rtol=1e-6)
    assert set(per_layer_filter_similarity(a, b)) == {"Conv_0/kernel", "block/Conv_1/kernel"}


def test_filter_similarity_errors():
    a = _tree()
    b = _tree()
    b["Conv_0"]["kernel"] = np.zeros((3, 3, 2, 5), np.float32)
    with pytest.raises(ValueError, match="Conv_0/kernel"):
        filter_similarity(a, b)
    with pytest.raises(ValueError, match="no conv kernels"):
        filter_similarity({"Dense_0": a["Dense_0"]}, {"Dense_0": a["Dense_0"]})
