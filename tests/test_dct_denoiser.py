"""The overlapped DCT denoiser (ctl_jax/classical/dct_denoiser.py): transform, thresholds, toy, checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.classical import (
    add_noise,
    dct_basis,
    dct_coefficients,
    dct_denoise,
    dct_kernel,
    find_best_ratio,
    flops_per_pixel,
    hard_threshold,
    idct_average,
    learn_ratio,
    learn_toy_threshold,
    smooth_threshold,
    soft_threshold,
    sweep_ratio,
    threshold_coefficients,
)


@pytest.mark.parametrize("patch", [1, 2, 4, 8])
def test_basis_is_orthonormal(patch):
    d = dct_basis(patch)
    np.testing.assert_allclose(d @ d.T, np.eye(patch), atol=1e-12)
    k = np.asarray(dct_kernel(patch), np.float64).reshape(patch * patch, patch * patch)  # (pixels, k)
    np.testing.assert_allclose(k.T @ k, np.eye(patch * patch), atol=1e-6)
    np.testing.assert_allclose(k[:, 0], 1.0 / patch, atol=1e-7)  # channel 0 is the DC


def test_coefficients_are_the_window_dct():
    """Coefficient k at window (y, x) is the 2-D DCT of the padded window starting there."""
    x = jax.random.uniform(jax.random.key(0), (1, 6, 7, 1))
    n = 4
    c = np.asarray(dct_coefficients(x, n, "constant"))
    assert c.shape == (1, 1, 6 + n - 1, 7 + n - 1, n * n)
    xp = np.pad(np.asarray(x)[0, :, :, 0], n - 1)
    d = dct_basis(n)
    for y, xx in [(0, 0), (3, 5), (8, 9)]:
        window = xp[y:y + n, xx:xx + n]
        np.testing.assert_allclose(c[0, 0, y, xx], (d @ window @ d.T).reshape(-1), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 13, 9, 1), (1, 11, 17, 3), (1, 3, 2, 1), (1, 1, 1, 3)])
@pytest.mark.parametrize("inverse", ["conv", "separable"])
def test_transform_inverts_exactly(shape, inverse):
    x = jax.random.uniform(jax.random.key(1), shape)
    modes = ("symmetric", "reflect", "edge", "wrap", "constant") if shape[0] == 2 else ("symmetric",)
    for mode in modes:  # every border handling inverts: the padded pixels only fill border windows
        y = idct_average(dct_coefficients(x, 8, mode), 8, inverse)
        np.testing.assert_allclose(y, x, atol=1e-6)
    for kind in ("hard", "soft"):
        y = dct_denoise(x, 25.0, ratio=0.0, kind=kind, inverse=inverse)
        assert y.shape == x.shape and y.dtype == x.dtype
        np.testing.assert_allclose(y, x, atol=1e-6)


def test_inverses_agree_and_single_image_form():
    x = jax.random.uniform(jax.random.key(2), (2, 12, 10, 3))
    a = dct_denoise(x, 30.0, 2.5, "smooth", temperature=0.3)
    b = dct_denoise(x, 30.0, 2.5, "smooth", temperature=0.3, inverse="separable")
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(dct_denoise(x[0], 30.0), dct_denoise(x, 30.0)[0], atol=1e-7)
    # colour channels are independent: channel 1 alone gives the same result
    np.testing.assert_allclose(dct_denoise(x[..., 1:2], 30.0), dct_denoise(x, 30.0)[..., 1:2], atol=1e-6)
    # [0, 255] images with data_range=255 give 255 x the [0, 1] result
    np.testing.assert_allclose(dct_denoise(255 * x, 30.0, data_range=255.0), 255 * dct_denoise(x, 30.0), atol=2e-4)


def test_thresholds_by_hand():
    c = jnp.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 3.0])
    np.testing.assert_allclose(hard_threshold(c, 1.0), [-3, 0, 0, 0, 0, 0, 1.5, 3])
    np.testing.assert_allclose(soft_threshold(c, 1.0), [-2, 0, 0, 0, 0, 0, 0.5, 2])
    # smooth: g(v) = relu(v - T + T tanh((v - T) / lam)), F = g(c) - g(-c); T = 1, lam = 1
    s = smooth_threshold(c, 1.0, 1.0)
    np.testing.assert_allclose(s, [-(2 + np.tanh(2)), 0, 0, 0, 0, 0, 0.5 + np.tanh(0.5), 2 + np.tanh(2)], rtol=1e-6)
    # the DC coefficient (index 0 of the last axis) is kept
    coef = jnp.array([[0.3, 0.3, 2.0, -0.3]])
    np.testing.assert_allclose(threshold_coefficients(coef, 1.0, "hard"), [[0.3, 0, 2.0, 0]])
    np.testing.assert_allclose(threshold_coefficients(coef, 1.0, "soft"), [[0.3, 0, 1.0, 0]])
    np.testing.assert_allclose(threshold_coefficients(coef, 1.0, "hard", keep_dc=False), [[0, 0, 2.0, 0]])


def test_smooth_threshold_limits():
    c = jnp.linspace(-6.0, 6.0, 1201)
    c = c[jnp.abs(jnp.abs(c) - 2.0) > 0.05]  # away from the jump at |c| = T
    hard, soft = hard_threshold(c, 2.0), soft_threshold(c, 2.0)
    errors = [float(jnp.max(jnp.abs(smooth_threshold(c, 2.0, lam) - hard))) for lam in (1.0, 0.1, 0.01, 0.001)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-5
    np.testing.assert_allclose(smooth_threshold(c, 2.0, 1e5), soft, atol=1e-3)
    assert float(jnp.max(jnp.abs(smooth_threshold(jnp.linspace(-2, 2, 41), 2.0, 0.5)))) == 0.0  # dead zone
    # differentiable with respect to the threshold
    g = jax.grad(lambda t: jnp.sum(smooth_threshold(c, t, 0.5)))(2.0)
    assert np.isfinite(g) and g != 0


def test_toy_recovers_the_threshold():
    t, history = learn_toy_threshold(2.4, std=8.0, init=6.0, steps=500)
    assert history.shape == (500,)
    assert abs(t - 2.4) < 0.05, t


def test_denoising_improves_psnr_and_sweep():
    yy, xx = np.mgrid[0:48, 0:48] / 48.0
    clean = (0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + 0.15 * (xx > 0.5)).astype(np.float32)[..., None]
    noisy = add_noise(clean, 25.0)
    np.testing.assert_allclose(noisy, clean + np.random.RandomState(0).randn(48, 48, 1) * 25 / 255, atol=1e-6)

    def psnr(a):
        return 10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - clean) ** 2))

    base = psnr(noisy)
    for kind in ("hard", "soft", "smooth"):
        out = np.asarray(dct_denoise(noisy, 25.0, ratio=2.7 if kind != "soft" else 1.2, kind=kind, temperature=0.3))
        assert psnr(out) > base + 5, (kind, psnr(out), base)
    table = sweep_ratio([clean], 25.0, [0.0, 2.7])
    assert table.shape == (1, 2)
    assert abs(table[0, 0] - base) < 1e-3 and table[0, 1] > base + 5
    r, best, ratios, psnrs = find_best_ratio([clean], 25.0, coarse=[1.0, 2.0, 3.0, 4.0], fine_step=0.5)
    assert best == psnrs.max() and r in ratios and 1.5 <= r <= 4.0


def test_sigma_is_traced_and_per_image():
    x = jax.random.uniform(jax.random.key(3), (2, 10, 10, 1))
    f = jax.jit(lambda x, s: dct_denoise(x, s, kind="smooth"))
    a = f(x, jnp.float32(20.0))
    np.testing.assert_allclose(a, dct_denoise(x, 20.0, kind="smooth"), atol=1e-6)
    per_image = dct_denoise(x, jnp.array([10.0, 40.0]))
    np.testing.assert_allclose(per_image[1], dct_denoise(x[1:], 40.0)[0], atol=1e-6)


def test_learn_ratio_moves_towards_a_sensible_value():
    yy, xx = np.mgrid[0:24, 0:24] / 24.0
    clean = np.stack([0.5 + 0.3 * np.sin((4 + i) * xx + i * yy) for i in range(4)])[..., None].astype(np.float32)
    r, history = learn_ratio(clean, 25.0, init=1.0, steps=30, lr=0.1, batch=2, inverse="separable")
    assert history.shape == (30,) and np.isfinite(r) and r > 1.5


def test_flops_per_pixel():
    assert flops_per_pixel(8) == 4 * 8 ** 4
    assert flops_per_pixel(8, inverse="separable") == 2 * 8 ** 4 + 2 * 8 ** 3 + 3 * 64 + 8
    assert flops_per_pixel(8, 9, 9) == pytest.approx(4 * 8 ** 4 * (16 * 16) / 81)


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.zeros((8, 8)), 25.0), {}, "shape"),
    ((np.zeros((1, 1, 8, 8, 1)), 25.0), {}, "shape"),
    ((np.zeros((1, 8, 8, 1), np.uint8), 25.0), {}, "float"),
    ((np.zeros((1, 8, 8, 1)), -1.0), {}, "sigma"),
    ((np.zeros((1, 8, 8, 1)), float("nan")), {}, "sigma"),
    ((np.full((1, 8, 8, 1), np.nan, np.float32), 25.0), {}, "NaN"),
    ((np.zeros((1, 8, 8, 1)), np.ones(3)), {}, "one value per image"),
    ((np.zeros((1, 8, 8, 1)), 25.0), {"ratio": -1.0}, "ratio"),
    ((np.zeros((1, 8, 8, 1)), 25.0), {"kind": "smooth", "temperature": 0.0}, "temperature"),
    ((np.zeros((1, 8, 8, 1)), 25.0), {"kind": "median"}, "kind"),
    ((np.zeros((1, 8, 8, 1)), 25.0), {"patch": 0}, "patch"),
    ((np.zeros((1, 8, 8, 1)), 25.0), {"inverse": "fft"}, "inverse"),
])
def test_bad_input_raises(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dct_denoise(*args, **kwargs)
