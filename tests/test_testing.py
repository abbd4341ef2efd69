"""The shared test helpers of ctl_jax.testing do what their names say."""

import chex
import numpy as np
import optax.tree_utils as otu
from PIL import Image

from ctl_jax.testing import (add_noise, init_params, noisy_pair, perturb, random_image, random_images, save_pixels,
                             tiny_dncnn)


def test_random_images_are_seeded_float32_in_unit_range():
    image = random_image((5, 6, 3), seed=4)
    chex.assert_shape(image, (5, 6, 3))
    chex.assert_type(image, np.float32)
    assert 0 <= image.min() and image.max() < 1
    np.testing.assert_array_equal(random_image((5, 6, 3), seed=4), image)
    assert not np.array_equal(random_image((5, 6, 3), seed=5), image)
    listed = random_images([(4, 5), (6, 3)], channels=1, seed=2)
    assert [x.shape for x in listed] == [(4, 5, 1), (6, 3, 1)]
    chex.assert_trees_all_equal(random_images([(4, 5), (6, 3)], 1, 2), listed)


def test_noise_is_clipped_seeded_and_of_the_requested_size():
    clean = np.full((64, 64, 1), 0.5, np.float32)
    noisy = add_noise(clean, 0.05, seed=3)
    chex.assert_type(noisy, np.float32)
    assert abs(float(np.std(noisy - clean)) - 0.05) < 0.005
    np.testing.assert_array_equal(add_noise(clean, 0.05, seed=3), noisy)
    assert add_noise(clean, 5.0).min() == 0 and add_noise(clean, 5.0).max() == 1
    a, b = noisy_pair((2, 8, 8, 3), sigma=0.1, seed=1)
    chex.assert_equal_shape([a, b])
    assert 0 < np.abs(a - b).mean() < 0.1


def test_save_pixels_writes_exactly_the_given_pixels(tmp_path):
    pixels = (random_image((4, 7, 3)) * 255).astype(np.uint8)
    path = save_pixels(str(tmp_path / "x.png"), pixels)
    assert path == tmp_path / "x.png"
    np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)


def test_tiny_dncnn_and_perturb():
    model, params = tiny_dncnn(channels=3, depth=3, features=4, adafm_kernel=1)
    assert sorted(params) == ["adafm_0", "adafm_1", "conv_0", "conv_1", "conv_2"]
    chex.assert_trees_all_equal(params, init_params(model, np.zeros((1, 5, 5, 3), np.float32)))
    chex.assert_shape(model.apply({"params": params}, random_image((2, 9, 6, 3))), (2, 9, 6, 3))
    moved = perturb(params, seed=2, scale=0.01)
    chex.assert_trees_all_equal_shapes_and_dtypes(moved, params)
    rms = float(otu.tree_norm(otu.tree_sub(moved, params))) / np.sqrt(otu.tree_size(params))
    assert 0.005 < rms < 0.02
    chex.assert_trees_all_equal(perturb(params, seed=2, scale=0.01), moved)
