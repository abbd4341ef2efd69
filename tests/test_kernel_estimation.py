"""Degradation-kernel estimation (ctl_jax.classical.kernel_estimation): recovery on a tiny synthetic
case, the deep linear generator's kernel, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.classical.kernel_estimation import DeepLinearKernel, estimate_kernel, gaussian_kernel, kernel_error
from ctl_jax.data.bundled import bundled_images
from ctl_jax.degradations.bicubic import blur_decimate


def test_a_known_kernel_is_recovered_from_the_true_high_resolution_image():
    hr = bundled_images("test", 3)[1][100:132, 100:132]  # astronaut, 32x32
    truth = gaussian_kernel(7, 1.2, 0.7, angle=0.3)      # anisotropic and rotated
    lr = np.asarray(blur_decimate(jnp.asarray(hr)[None], truth, 2)[0])
    found = estimate_kernel(lr, hr, 2, kernel_size=7, steps=300)
    assert found.kernel.shape == (7, 7) and found.kernel.min() >= 0
    assert found.kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert kernel_error(found.kernel, truth) < 0.1                      # recovered within 10%
    assert kernel_error(gaussian_kernel(7, 1.2), truth) > 0.15         # an isotropic guess is not
    assert found.losses[-1] < found.losses[0]


def test_deep_linear_generator_is_a_normalisable_13x13_kernel():
    gen = DeepLinearKernel(features=4)
    params = gen.init(jax.random.key(0))["params"]
    k = gen.apply({"params": params})
    assert k.shape == (13, 13)
    # linear in its last layer: scaling it scales the kernel
    scaled = jax.tree_util.tree_map_with_path(lambda p, v: 2 * v if "conv_5" in str(p) else v, params)
    np.testing.assert_allclose(gen.apply({"params": scaled}), 2 * k, rtol=1e-5, atol=1e-7)


def test_bad_input():
    lr, hr = np.zeros((8, 8, 3)), np.zeros((16, 16, 3))
    with pytest.raises(ValueError, match="times 2"):
        estimate_kernel(lr, np.zeros((15, 16, 3)), 2)
    with pytest.raises(ValueError, match="at most the image size"):
        estimate_kernel(lr, hr, 2, kernel_size=17)
    with pytest.raises(ValueError, match="kernel model"):
        estimate_kernel(lr, hr, 2, model="gan")
    with pytest.raises(ValueError, match="pass kernel_size=13"):
        estimate_kernel(np.zeros((16, 16, 3)), np.zeros((32, 32, 3)), 2, kernel_size=7, model="deep_linear")
