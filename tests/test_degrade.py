"""Degradations and the restoration task: levels, ranges, shapes, the level <-> control mapping."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.degradations import (KINDS, add_gaussian_noise, bicubic_downsample, bicubic_pre_upsampled,
                                  check_level, gaussian_blur, get_kind, jpeg_compress)
from ctl_jax.degradations.bicubic import BLUR_SIZE, blur_decimate, decimate, gaussian_kernel, imresize_weights
from ctl_jax.tasks import Restoration
from ctl_jax.testing import random_image


def test_noise_has_the_requested_sigma_and_is_not_clipped():
    clean = jnp.full((4, 64, 64, 3), 0.5)
    noisy = add_gaussian_noise(jax.random.key(0), clean, 25.0)
    assert abs(float(jnp.std(noisy - clean)) * 255 - 25.0) < 0.5
    per_sample = add_gaussian_noise(jax.random.key(0), clean, jnp.array([0.0, 10.0, 50.0, 80.0]))
    np.testing.assert_array_equal(per_sample[0], clean[0])
    assert float(jnp.max(add_gaussian_noise(jax.random.key(1), clean, 80.0))) > 1.0


def test_bicubic_forms():
    x = jax.random.uniform(jax.random.key(0), (2, 24, 36, 3))
    chex.assert_shape(bicubic_downsample(x, 3), (2, 8, 12, 3))
    chex.assert_equal_shape([bicubic_pre_upsampled(x, 2), x])
    flat = jnp.full((1, 12, 12, 1), 0.25)
    np.testing.assert_allclose(bicubic_pre_upsampled(flat, 2), flat, atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 5"):
        bicubic_downsample(x, 5)


def test_bicubic_weights_match_matlab_imresize_worked_by_hand():
    # 4 -> 2: output 1 samples u = 1.5 with the kernel widened to 8 taps; the Keys weights at
    # distances 0.25, 0.75, 1.25, 1.75 (x0.5) are 0.8671875, 0.2265625, -0.0703125, -0.0234375, and
    # the taps at positions -2..0 mirror onto 3, 2, 1 and 5 onto 4 (MATLAB's symmetric indices).
    np.testing.assert_allclose(imresize_weights(4, 2), [[0.546875, 0.3984375, 0.1015625, -0.046875],
                                                        [-0.046875, 0.1015625, 0.3984375, 0.546875]], atol=1e-7)
    # 2 -> 4: u = 0.75 for the first output; taps 0 and -1 mirror onto 1 and 2.
    np.testing.assert_allclose(imresize_weights(2, 4)[0], [1.09375, -0.09375], atol=1e-7)
    x = jnp.asarray(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1))
    lr = bicubic_downsample(x, 2)[0, :, :, 0]
    rows = np.array([0.546875, 0.3984375, 0.1015625, -0.046875])
    # x[i, j] = 4 i + j is linear, and each row of weights sums to 1 -> a separable weighted mean
    expect_00 = rows @ np.arange(4) * 4 + rows @ np.arange(4)
    np.testing.assert_allclose(lr[0, 0], expect_00, atol=1e-5)
    # away from the borders the result equals JAX's antialiased bicubic (which differs at borders)
    big = jax.random.uniform(jax.random.key(1), (1, 32, 32, 2))
    ours, jaxs = bicubic_downsample(big, 2), jax.image.resize(big, (1, 16, 16, 2), "bicubic", antialias=True)
    np.testing.assert_allclose(ours[:, 3:-3, 3:-3], jaxs[:, 3:-3, 3:-3], atol=1e-5)


def test_decimation_and_blur_decimation():
    x = jax.random.uniform(jax.random.key(0), (2, 12, 16, 3))
    np.testing.assert_array_equal(decimate(x, 4), x[:, ::4, ::4])
    delta = np.zeros((5, 5), np.float32)
    delta[2, 2] = 1
    np.testing.assert_allclose(blur_decimate(x, delta, 2), x[:, ::2, ::2], atol=1e-7)
    shift = np.zeros((3, 3), np.float32)
    shift[1, 2] = 1  # convolution with a delta right of centre moves the image one pixel right
    np.testing.assert_allclose(blur_decimate(x, shift, 1)[:, :, 1:], x[:, :, :-1], atol=1e-7)
    box = np.full((3, 3), 1 / 9, np.float32)
    np.testing.assert_allclose(blur_decimate(x, box, 1)[:, 1:-1, 1:-1].mean(), x[:, 1:-1, 1:-1].mean(), atol=0.02)
    assert get_kind("decimate_lr").scale(2) == 0.5
    with pytest.raises(ValueError, match="larger than the image"):
        blur_decimate(x, np.ones((13, 13)) / 169, 2)
    with pytest.raises(ValueError, match="odd size"):
        blur_decimate(x, np.ones((4, 4)) / 16, 2)


def test_jpeg_roundtrip_keeps_shape_and_dtype_and_loses_more_at_low_quality():
    image = random_image((32, 48, 3))
    low, high = jpeg_compress(image, 10), jpeg_compress(image, 95)
    chex.assert_equal_shape([low, image])
    chex.assert_type(low, np.float32)
    assert np.abs(low - image).mean() > np.abs(high - image).mean()
    grey = (random_image((16, 16, 1), seed=1) * 255).astype(np.uint8)
    assert jpeg_compress(grey, 50).shape == (16, 16, 1) and jpeg_compress(grey, 50).dtype == np.uint8


def test_blur_width_zero_is_identity_wider_is_smoother_and_a_flat_image_stays_flat():
    x = jax.random.uniform(jax.random.key(0), (3, 20, 24, 3))
    y = gaussian_blur(None, x, jnp.array([0.0, 1.0, 3.0]))
    np.testing.assert_array_equal(y[0], x[0])
    roughness = [float(jnp.mean(jnp.abs(jnp.diff(y[i], axis=0)))) for i in range(3)]
    assert roughness[0] > roughness[1] > roughness[2]
    flat = jnp.full((1, 16, 16, 1), 0.3)
    np.testing.assert_allclose(gaussian_blur(None, flat, 2.0), flat, atol=1e-6)
    # the 1-D kernel of width 1 at offsets 0 and 1 has the Gaussian's ratio exp(-1/2)
    impulse = jnp.zeros((1, 31, 31, 1)).at[0, 15, 15, 0].set(1.0)
    out = gaussian_blur(None, impulse, 1.0)[0, :, :, 0]
    assert float(out[15, 16] / out[15, 15]) == pytest.approx(np.exp(-0.5), rel=1e-5)
    assert float(jnp.sum(out)) == pytest.approx(1.0, rel=1e-5)


def test_gaussian_kernel_by_hand_and_random_blur_per_image():
    k = np.asarray(gaussian_kernel(3, 1.0))
    e = np.exp(-0.5)  # one pixel off centre along one axis; corners exp(-1) = e^2
    np.testing.assert_allclose(k, np.array([[e * e, e, e * e], [e, 1, e], [e * e, e, e * e]]) / (1 + 2 * e) ** 2,
                               rtol=1e-6)
    rotated = np.asarray(gaussian_kernel(9, 2.0, 0.7, np.pi / 2))  # long axis turned from x to y
    np.testing.assert_allclose(rotated, np.asarray(gaussian_kernel(9, 0.7, 2.0)), atol=1e-7)
    x = jnp.broadcast_to(jax.random.uniform(jax.random.key(0), (1, 32, 32, 3)), (3, 32, 32, 3))
    kind = get_kind("gaussian_blur_lr")
    y = kind.apply(jax.random.key(1), x, np.full((3,), 2.0))
    assert y.shape == (3, 16, 16, 3) and kind.scale(2) == 0.5
    assert float(jnp.abs(y[0] - y[1]).max()) > 1e-3  # same image, its own kernel each
    np.testing.assert_array_equal(y, kind.apply(jax.random.key(1), x, np.full((3,), 2.0)))  # fixed by the key
    assert float(jnp.std(y)) < float(jnp.std(x[:, ::2, ::2]))  # blurred before decimation
    assert BLUR_SIZE % 2 == 1
    with pytest.raises(ValueError, match="random key"):
        kind.apply(None, x, np.full((3,), 2.0))
    from ctl_jax.tasks.perceptual_sr import PerceptualSR

    task = PerceptualSR(2, downsample="gaussian_blur_lr")  # blind SR: the step's key draws the blurs
    arrays = (np.asarray(x), task.step_levels(0, 0, 3, "a"))
    first, again = (task.device_batch(jax.random.key(k), arrays, "a").input for k in (0, 1))
    assert first.shape == (3, 16, 16, 3) and float(jnp.abs(first - again).max()) > 1e-3
    np.testing.assert_array_equal(task.eval_input(x[0], None, seed=0, index=2), task.eval_input(x[0], None, seed=0, index=2))
    assert float(jnp.abs(task.eval_input(x[0], None, index=2) - task.eval_input(x[0], None, index=3)).max()) > 1e-3


def test_every_kind_is_registered_with_its_range():
    assert set(KINDS) >= {"noise", "jpeg", "blur", "bicubic", "bicubic_lr"}
    assert check_level("noise", 25) == 25.0
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        check_level("noise", -5)
    with pytest.raises(ValueError, match=r"\[1, 100\]"):
        jpeg_compress(np.zeros((8, 8, 3), np.float32), 101)
    with pytest.raises(ValueError, match="whole number"):
        check_level("bicubic", 2.5)
    with pytest.raises(ValueError, match="unknown degradation"):
        get_kind("sharpen")
    assert get_kind("bicubic_lr").scale(4) == 0.25 and get_kind("jpeg").format(10) == "q=10"


def test_level_control_mapping_and_errors():
    t = Restoration("noise", 20, 80)
    assert t.control_for([20])[0] == 0 and t.control_for([80])[0] == 1
    assert t.control_for([40])[0] == pytest.approx(1 / 3)
    assert t.level_for([0.5])[0] == 50 and t.control_for(t.level_for([1.3]))[0] == pytest.approx(1.3)
    assert Restoration("jpeg", 40, 10).control_for([20])[0] == pytest.approx(2 / 3)
    two = Restoration(("noise", "jpeg"), (0, 90), (50, 10))
    np.testing.assert_allclose(two.control_for([25, 50]), [0.5, 0.5])
    assert two.dim == 2 and two.label([25, 50]) == "σ=25, q=50"
    with pytest.raises(ValueError, match="must differ"):
        Restoration("noise", 20, 20)
    with pytest.raises(ValueError, match="one level A and one level B"):
        Restoration(("noise", "jpeg"), (20,), (80, 10))
    with pytest.raises(ValueError, match="unknown loss"):
        Restoration("noise", 20, 80, loss="l7")
    with pytest.raises(ValueError, match=r"\(L, D\) with D = 2"):
        two.check_levels([[10, 20, 30]])


class _Crops:
    def __init__(self, n=4, size=16):
        self.n, self.size = n, size

    def batch(self, step):
        return np.random.default_rng(step).uniform(size=(self.n, self.size, self.size, 3)).astype(np.float32)


def test_training_batches_at_each_target():
    t = Restoration(("noise", "jpeg"), (0, 90), (50, 10))
    for target, control in (("a", 0.0), ("b", 1.0)):
        arrays = t.host_arrays(_Crops(), 3, target)
        batch = t.device_batch(jax.random.key(0), arrays, target)
        np.testing.assert_allclose(batch.control, np.full((4, 2), control))
        chex.assert_shape([batch.input, batch.target], (4, 16, 16, 3))
    levels = t.step_levels(0, 5, 64, "range")
    assert levels[:, 0].min() >= 0 and levels[:, 0].max() <= 50 and np.all(levels[:, 1] == np.round(levels[:, 1]))
    np.testing.assert_array_equal(levels, t.step_levels(0, 5, 64, "range"))  # a pure function of (seed, step)
    assert not np.array_equal(levels, t.step_levels(0, 6, 64, "range"))
    batch = t.device_batch(jax.random.key(0), t.host_arrays(_Crops(64), 5, "range"), "range")
    np.testing.assert_allclose(batch.control, t.control_for(levels), rtol=1e-5, atol=1e-6)


def test_noise_only_chains_degrade_on_device_inside_jit_and_sr_has_a_smaller_input():
    t = Restoration("noise", 20, 80)
    arrays = t.host_arrays(_Crops(), 0, "b")
    assert arrays[2] is None  # degraded inside the step
    batch = jax.jit(lambda k, a: t.device_batch(k, a, "b"))(jax.random.key(0), arrays)
    assert abs(float(jnp.std(batch.input - batch.target)) * 255 - 80) < 3
    sr = Restoration("bicubic_lr", 2, 4)
    assert sr.input_shape(48, 3, "b") == (1, 12, 12, 3) and sr.input_shape(48, 3, "a") == (1, 24, 24, 3)
    x = sr.eval_input(random_image((24, 24, 3)), [2])
    assert x.shape == (12, 12, 3) and sr.input_multiple([[2], [3]]) == 6


def test_eval_inputs_depend_only_on_seed_index_and_level():
    t = Restoration("noise", 20, 80)
    clean = random_image((16, 16, 3))
    a = t.eval_input(clean, [40], seed=1, index=2)
    np.testing.assert_array_equal(a, t.eval_input(clean, [40], seed=1, index=2))
    assert not np.array_equal(a, t.eval_input(clean, [40], seed=1, index=3))
    assert not np.array_equal(a, t.eval_input(clean, [40.5], seed=1, index=2))
