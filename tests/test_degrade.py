"""Degradations: levels, ranges, shapes, and the level <-> alpha mapping."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.data.degrade import (Degradation, add_gaussian_noise, bicubic_downsample, bicubic_pre_upsampled,
                                  jpeg_compress)
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


def test_jpeg_roundtrip_keeps_shape_and_dtype_and_loses_more_at_low_quality():
    image = random_image((32, 48, 3))
    low, high = jpeg_compress(image, 10), jpeg_compress(image, 95)
    chex.assert_equal_shape([low, image])
    chex.assert_type(low, np.float32)
    assert np.abs(low - image).mean() > np.abs(high - image).mean()
    grey = (random_image((16, 16, 1), seed=1) * 255).astype(np.uint8)
    assert jpeg_compress(grey, 50).shape == (16, 16, 1) and jpeg_compress(grey, 50).dtype == np.uint8


def test_level_alpha_mapping_and_range_errors():
    d = Degradation("noise", 20, 80)
    assert d.alpha_for(20) == 0 and d.alpha_for(80) == 1 and d.alpha_for(40) == pytest.approx(1 / 3)
    assert d.level_for(0.5) == 50 and d.alpha_for(d.level_for(1.3)) == pytest.approx(1.3)
    assert Degradation("jpeg", 40, 10).alpha_for(20) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=">= 0"):
        Degradation("noise", -5, 20)
    with pytest.raises(ValueError, match="1..100"):
        Degradation("jpeg", 0, 40)
    with pytest.raises(ValueError, match="1..100"):
        jpeg_compress(np.zeros((8, 8, 3), np.float32), 101)
    with pytest.raises(ValueError, match="integer >= 1"):
        Degradation("bicubic", 2, 2.5)
    with pytest.raises(ValueError, match="must differ"):
        Degradation("noise", 20, 20)
    with pytest.raises(ValueError, match="unknown degradation"):
        Degradation("blur", 1, 2)
