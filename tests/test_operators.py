"""Parameterised image operators: shared contract, specs, and one behavioural property per filter."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
from scipy.ndimage import gaussian_filter, median_filter

from ctl_jax.operators import (OPERATORS, deblock, denoise, get_operator, l0_smooth, local_laplacian,
                               rolling_guidance, rtv_smooth, shock_filter, super_resolution,
                               weighted_median, wls_smooth)
from ctl_jax.operators.wls import EPS, LOG_FLOOR
from ctl_jax.testing import add_noise, random_image

FILTERS = [name for name, spec in OPERATORS.items() if spec.kind == "filter"]


def _step(size=48, low=0.2, high=0.8, channels=1):
    """Left half ``low``, right half ``high``."""
    x = np.arange(size)[None, :]
    image = np.where(x < size // 2, low, high) * np.ones((size, 1))
    return np.repeat(image[..., None], channels, axis=-1).astype(np.float32)


def _checkerboard(size=48, cell=1, amplitude=0.1):
    """Zero-mean +-amplitude checkerboard with square cells of ``cell`` pixels, shape (size, size, 1)."""
    y, x = np.mgrid[:size, :size]
    return ((((y // cell) + (x // cell)) % 2) * 2 * amplitude - amplitude)[..., None].astype(np.float32)


def _natural_like(size=32, channels=3, seed=0):
    """Smooth gradients, a bright square and mild noise: a stand-in for a photograph."""
    y, x = np.mgrid[:size, :size] / size
    base = 0.2 + 0.5 * x[..., None] * np.linspace(0.6, 1.0, channels) + 0.1 * y[..., None]
    base[size // 4:size // 2, size // 4:size // 2] += 0.2
    return add_noise(base, 0.03, seed)


def _apply(spec, image, value):
    return spec.apply(image, value, 0) if spec.kind == "restoration" else spec.apply(image, value)


def _step_height(image, margin=0):
    """Mean of the two columns right of the centre minus the two left of it (first channel)."""
    image = np.asarray(image)[..., 0]
    mid = image.shape[1] // 2
    return image[:, mid + margin:mid + margin + 2].mean() - image[:, mid - margin - 2:mid - margin].mean()


def _total_variation(image):
    image = np.asarray(image)
    return np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum()


# -- registry and shared contract -------------------------------------------------------------

def test_registry_holds_the_papers_operators_and_ranges():
    expected = {  # name: (kind, parameter, low, high, log_scale)
        "l0": ("filter", "lambda", 0.002, 0.2, True), "wls": ("filter", "lambda", 0.1, 10, True),
        "rtv": ("filter", "lambda", 0.002, 0.05, True), "rgf": ("filter", "sigma_s", 1, 10, False),
        "wmf": ("filter", "radius", 1, 10, False), "llf": ("filter", "alpha", 2, 8, False),
        "shock": ("filter", "t", 1, 10, False), "denoise": ("restoration", "sigma", 10, 70, False),
        "denoise_20_80": ("restoration", "sigma", 20, 80, False),
        "deblock": ("restoration", "quality", 10, 20, False),
        "super_resolution": ("restoration", "scale", 2, 4, False),
    }
    registered = {name: (s.kind, s.parameter, s.low, s.high, s.log_scale) for name, s in OPERATORS.items()}
    assert registered == expected
    assert get_operator("wls") is OPERATORS["wls"]
    with pytest.raises(ValueError, match="known operators: l0, wls, rtv"):
        get_operator("bilateral")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(OPERATORS))
def test_output_has_the_input_shape_dtype_and_range(name, channels):
    spec = OPERATORS[name]
    image = _natural_like(channels=channels)
    out = _apply(spec, image, spec.default)
    assert out.shape == image.shape and out.dtype == np.float32
    assert float(jnp.min(out)) >= 0.0 and float(jnp.max(out)) <= 1.0
    assert float(jnp.abs(jnp.asarray(out) - image).max()) > 1e-3  # it did something


@pytest.mark.parametrize("name", FILTERS)
def test_filters_keep_a_constant_image(name):
    spec = OPERATORS[name]
    image = np.full((24, 24, 3), 0.37, np.float32)
    for value in (spec.low, spec.high):
        np.testing.assert_allclose(spec.apply(image, value), image, atol=1e-3)


def test_operators_reject_images_that_are_not_hwc_with_1_or_3_channels():
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        l0_smooth(np.zeros((8, 8)), 0.02)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        wls_smooth(np.zeros((8, 8, 2)), 1.0)


# -- OperatorSpec -------------------------------------------------------------------------------

def test_check_raises_with_the_range_and_clamps():
    spec = OPERATORS["l0"]
    assert spec.check(0.02) == 0.02
    for bad in (0.5, 0.001, float("nan")):
        with pytest.raises(ValueError, match=re.escape("l0: lambda") + ".*" + re.escape("[0.002, 0.2]")):
            spec.check(bad)
    assert spec.check(0.5, clamp=True) == 0.2 and spec.check(1e-6, clamp=True) == 0.002
    with pytest.raises(ValueError, match="NaN"):
        spec.check(float("nan"), clamp=True)
    deblock_spec = OPERATORS["deblock"]
    with pytest.raises(ValueError, match="whole number"):
        deblock_spec.check(12.5)
    assert deblock_spec.check(12.6, clamp=True) == 13 and deblock_spec.check(35, clamp=True) == 20


def test_sample_is_in_range_and_log_uniform_or_uniform():
    rng = np.random.default_rng(0)
    l0 = OPERATORS["l0"].sample(rng, 20000)
    assert l0.min() >= 0.002 and l0.max() <= 0.2
    assert abs(np.median(l0) / math.sqrt(0.002 * 0.2) - 1) < 0.05  # geometric mean 0.02
    assert abs(np.mean(np.log(l0) < math.log(0.02)) - 0.5) < 0.02
    rgf = OPERATORS["rgf"].sample(rng, 20000)
    assert rgf.min() >= 1 and rgf.max() <= 10 and abs(np.median(rgf) - 5.5) < 0.15
    quality = OPERATORS["deblock"].sample(rng, 2000)
    assert set(quality) == set(range(10, 21))


@pytest.mark.parametrize("name", list(OPERATORS))
def test_normalise_and_denormalise_round_trip(name):
    spec = OPERATORS[name]
    assert spec.normalise(spec.low) == pytest.approx(0.0, abs=1e-12)
    assert spec.normalise(spec.high) == pytest.approx(1.0)
    middle = math.sqrt(spec.low * spec.high) if spec.log_scale else (spec.low + spec.high) / 2
    assert spec.normalise(middle) == pytest.approx(0.5)
    for u in (0.0, 0.3, 0.77, 1.0):
        assert spec.normalise(spec.denormalise(u)) == pytest.approx(u)
    with pytest.raises(ValueError):
        spec.denormalise(1.5)


# -- filters ------------------------------------------------------------------------------------

def _count_gradients(image, threshold):
    image = np.asarray(image)
    magnitude = np.sqrt((np.diff(image, axis=0)[:, :-1] ** 2 + np.diff(image, axis=1)[:-1] ** 2).sum(-1))
    return int((magnitude > threshold).sum())


def test_l0_keeps_fewer_gradients_as_lambda_grows():
    # A strong step that survives every lambda, a weak square that does not, and noise.
    image = _step(32, 0.1, 0.9)
    image[8:16, 4:12] += 0.25
    image = add_noise(image, 0.05, seed=0)
    # 3e-3: the flattened regions keep residual slopes of ~sqrt(lambda / beta_max) ~ 1e-3.
    counts = [_count_gradients(l0_smooth(image, lam), 3e-3) for lam in np.geomspace(0.002, 0.2, 5)]
    assert all(b <= a for a, b in zip(counts, counts[1:])), counts
    assert counts[-1] < counts[2] < counts[0] < 0.75 * _count_gradients(image, 3e-3)
    assert counts[2] < 0.2 * _count_gradients(image, 3e-3)


def _wls_direct(image, lam):
    """WLS by a direct sparse solve in float64 (same weights), for comparison."""
    height, width, _ = image.shape
    log_lum = np.log(image[..., 0].astype(np.float64) + LOG_FLOOR)
    weight_x = lam / (np.abs(np.diff(log_lum, axis=1)) ** 1.2 + EPS)
    weight_y = lam / (np.abs(np.diff(log_lum, axis=0)) ** 1.2 + EPS)
    index = np.arange(height * width).reshape(height, width)
    rows, cols, vals = [], [], []
    for a, b, w in ((index[:, :-1], index[:, 1:], weight_x), (index[:-1], index[1:], weight_y)):
        a, b, w = a.ravel(), b.ravel(), w.ravel()
        rows += [a, b, a, b]
        cols += [b, a, a, b]
        vals += [-w, -w, w, w]
    laplacian = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                  shape=(height * width,) * 2)
    system = (sparse.eye(height * width) + laplacian).tocsc()
    return sparse_linalg.spsolve(system, image[..., 0].ravel().astype(np.float64)).reshape(height, width)


def test_wls_matches_a_direct_sparse_solve():
    image = _natural_like(32, channels=1)
    for lam in (0.1, 10.0):
        np.testing.assert_allclose(wls_smooth(image, lam)[..., 0], np.clip(_wls_direct(image, lam), 0, 1),
                                   atol=2e-3)


def test_wls_tends_to_the_input_and_smooths_more_with_lambda():
    noisy = add_noise(_step(), 0.05, seed=1)
    assert float(jnp.abs(wls_smooth(noisy, 1e-4) - noisy).max()) < 1e-2
    variations = [_total_variation(wls_smooth(noisy, lam)) for lam in (0.1, 1.0, 10.0)]
    assert _total_variation(noisy) > variations[0] > variations[1] > variations[2]


def test_wls_preserves_edges():
    assert _step_height(wls_smooth(_step(), 1.0)) > 0.8 * 0.6
    # Against a Gaussian blur that removes as much total variation, the step keeps far more height.
    noisy = add_noise(_step(), 0.05, seed=1)
    smoothed = wls_smooth(noisy, 10.0)
    sigma = next(s for s in np.arange(0.5, 15, 0.1)
                 if _total_variation(gaussian_filter(noisy, (s, s, 0))) <= _total_variation(smoothed))
    assert _step_height(smoothed) > 2 * _step_height(gaussian_filter(noisy, (sigma, sigma, 0)))


def test_rtv_removes_fine_texture_and_keeps_the_step():
    image = _step(48, 0.3, 0.7) + _checkerboard(48, cell=1)
    out = np.asarray(rtv_smooth(image, 0.01))
    region = np.s_[6:-6, 6:18, 0]
    assert np.std(out[region]) < 0.02 * np.std(image[region])
    assert _step_height(out, margin=3) > 0.95 * 0.4


def test_rgf_removes_structures_smaller_than_sigma_s_and_keeps_large_edges():
    image = _step(48, 0.3, 0.7) + _checkerboard(48, cell=3)
    region = np.s_[6:-6, 6:18, 0]
    texture = {s: np.std(np.asarray(rolling_guidance(image, s))[region]) for s in (1.0, 3.0, 10.0)}
    assert texture[1.0] > 0.5 * np.std(image[region])  # 3-pixel cells survive sigma_s = 1
    assert texture[3.0] < 0.05 * np.std(image[region])
    assert texture[10.0] < texture[3.0]
    assert _step_height(rolling_guidance(image, 10.0), margin=3) > 0.95 * 0.4


def test_wmf_with_uniform_weights_is_the_plain_median():
    image = random_image((24, 26, 3), seed=2)
    for radius in (1, 2, 3.5):
        r = int(radius)
        expected = median_filter(image, size=(2 * r + 1, 2 * r + 1, 1))
        out = np.asarray(weighted_median(image, radius, sigma=np.inf))
        np.testing.assert_array_equal(out[r:-r, r:-r], expected[r:-r, r:-r])


def test_wmf_hand_checked_example():
    image = np.arange(9, dtype=np.float32).reshape(3, 3, 1) / 10
    guide = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], np.float32)[..., None]
    out = np.asarray(weighted_median(image, 1, guide=guide))[..., 0]
    # Centre: only the five guide-1 pixels count (0.0 .. 0.4), median 0.2, not the plain 0.4.
    # Corner (0, 0): the window is cut to 0.0, 0.1, 0.3, 0.4; the weighted median takes the lower 0.1.
    assert out[1, 1] == pytest.approx(0.2) and out[0, 0] == pytest.approx(0.1)
    # Bottom-right (2, 2): guide-0 neighbours 0.5, 0.7, 0.8 (and itself); the median is 0.7.
    assert out[2, 2] == pytest.approx(0.7)


def test_wmf_removes_outliers():
    rng = np.random.default_rng(3)
    clean = _step(32, 0.3, 0.7)
    mask = rng.random(clean.shape) < 0.05
    # Mild impulses (below 2 sigma of the affinity) are out-voted by the self-guided filter.
    mild = np.where(mask, clean + rng.choice([-0.12, 0.12], clean.shape), clean).astype(np.float32)
    assert float(jnp.abs(weighted_median(mild, 2) - clean).max()) < 1e-6
    # Full salt and pepper is its own best match when self-guided (affinity exp(-0.3^2/0.02) ~ 0),
    # and is removed when the affinity comes from a clean guide.
    salt = np.where(mask, rng.choice([0.0, 1.0], clean.shape), clean).astype(np.float32)
    assert float(jnp.abs(weighted_median(salt, 2) - clean).max()) > 0.25
    assert float(jnp.abs(weighted_median(salt, 2, guide=clean) - clean).max()) < 1e-6


def _high_pass_std(image):
    grey = np.asarray(image)[..., 0]
    return np.std(grey - gaussian_filter(grey, 2))


def test_llf_identity_at_zero_and_more_detail_with_alpha():
    y, x = np.mgrid[:48, :48]
    image = (0.5 + 0.2 * np.sin(x / 6) + 0.04 * np.sin(1.3 * x + 0.7 * y))[..., None].astype(np.float32)
    np.testing.assert_allclose(local_laplacian(image, 0.0), image, atol=1e-5)
    details = [_high_pass_std(local_laplacian(image, alpha)) for alpha in (2.0, 5.0, 8.0)]
    assert _high_pass_std(image) < details[0] < details[1] < details[2]
    rgb = _natural_like(32)
    np.testing.assert_allclose(local_laplacian(rgb, 0.0), rgb, atol=1e-4)


def test_shock_filter_sharpens_a_blurred_step_within_the_input_range():
    blurred = gaussian_filter(_step(48), (3, 3, 0)).astype(np.float32)

    def max_gradient(image):
        return np.abs(np.diff(np.asarray(image)[..., 0], axis=1)).max()

    def transition_width(image):
        row = np.asarray(image)[24, :, 0]
        return int(((row > 0.3) & (row < 0.7)).sum())

    outputs = [shock_filter(blurred, t) for t in (1.0, 3.0, 10.0)]
    for out in outputs:
        assert float(out.min()) >= blurred.min() - 1e-6 and float(out.max()) <= blurred.max() + 1e-6
    gradients = [max_gradient(out) for out in outputs]
    widths = [transition_width(out) for out in outputs]
    assert max_gradient(blurred) < gradients[0] < gradients[1] < gradients[2]
    assert transition_width(blurred) > widths[0] > widths[2]
    assert widths[2] <= 1


# -- restoration --------------------------------------------------------------------------------

def test_denoise_adds_noise_of_the_requested_std():
    clean = np.full((64, 64, 3), 0.5, np.float32)
    for sigma in (10.0, 40.0):
        noise_std = float(jnp.std(denoise(clean, sigma, key=1) - clean)) * 255
        assert abs(noise_std / sigma - 1) < 0.1
    np.testing.assert_array_equal(denoise(clean, 20.0, 3), denoise(clean, 20.0, jax.random.key(3)))
    assert float(jnp.abs(denoise(clean, 20.0, 3) - denoise(clean, 20.0, 4)).max()) > 0


def test_deblock_compresses_and_rejects_out_of_range_quality():
    image = _natural_like(32)
    low, high = deblock(image, 10), deblock(image, 20)
    assert np.abs(low - image).mean() > np.abs(high - image).mean() > 0
    spec = OPERATORS["deblock"]
    for bad in (5, 25):
        with pytest.raises(ValueError, match=re.escape("[10.0, 20.0]")):
            spec.check(bad)


def test_super_resolution_keeps_the_size_and_blurs_more_with_scale():
    image = _natural_like(30, seed=4) + _checkerboard(30, cell=2, amplitude=0.1)
    image = np.clip(image[:, :29], 0, 1)  # sizes that are not multiples of the scale
    outputs = [super_resolution(image, scale) for scale in (2, 3, 4)]
    assert all(out.shape == image.shape for out in outputs)
    details = [_high_pass_std(out) for out in outputs]
    assert _high_pass_std(image) > details[0] > details[1] > details[2]


# -- jit / vmap ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FILTERS)
def test_filters_jit_and_vmap_over_the_parameter(name):
    spec = OPERATORS[name]
    image = _natural_like(24)
    values = jnp.asarray([spec.low, spec.high], jnp.float32)
    batched = jax.jit(jax.vmap(spec.apply, in_axes=(None, 0)))(image, values)
    looped = jnp.stack([spec.apply(image, float(v)) for v in values])
    np.testing.assert_allclose(batched, looped, atol=2e-3)
