"""NIQE (ctl_jax.eval.niqe): the AGGD fit by hand, the score against scikit-video's own NIQE, the
ordering it must give, bad input."""

import functools
import importlib
import math

import numpy as np
import pytest

from ctl_jax.data.bundled import bundled_images
from ctl_jax.degradations.bicubic import imresize_weights
from ctl_jax.eval.niqe import RGB_TO_GREY, aggd_fit, niqe, pristine_model


def test_aggd_fit_worked_by_hand():
    # +-1 in equal numbers: both scales 1, r-hat = 1, and Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) < 1
    # approaches 1 only as a grows, so the fit is the grid's end, a = 10.
    alpha, left, right = aggd_fit(np.array([[1.0, -1.0] * 50]))
    assert alpha[0] == pytest.approx(10.0)
    beta = math.sqrt(math.gamma(0.1) / math.gamma(0.3))
    assert left[0] == pytest.approx(beta) and right[0] == pytest.approx(beta)
    rng = np.random.default_rng(0)
    gauss, laplace = rng.normal(size=200_000), rng.laplace(size=200_000)
    assert aggd_fit(gauss)[0] == pytest.approx(2.0, abs=0.03)     # a Gaussian is shape 2
    assert aggd_fit(laplace)[0] == pytest.approx(1.0, abs=0.03)   # a Laplacian is shape 1
    alpha, left, right = aggd_fit(np.abs(gauss))                  # nothing on the left: NaN, as MATLAB
    assert np.isnan(alpha) and np.isnan(left)


def test_pristine_model_has_the_layout_its_features_need():
    mu, cov = pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    for left, right in ((12, 13), (16, 17), (30, 31), (34, 35)):  # diagonal pairs: the left scale twice
        assert mu[left] == mu[right]


def test_niqe_equals_scikit_video_with_edges_replicated_and_matlab_bicubic(monkeypatch):
    """scikit-video 1.1.11's NIQE no longer runs as shipped (``np.int``, ``scipy.misc.imresize`` are
    gone); with those two restored (the resize as MATLAB's bicubic) and its MSCN filter told to
    replicate edges, it must give our score. (Photos without clipped areas: where MSCN coefficients
    are exactly 0, scikit-video counts them in the right-hand scale and MATLAB, as here, in neither;
    astronaut's black background moves the score by 0.5% that way.)"""
    pytest.importorskip("skvideo")
    import scipy.misc

    monkeypatch.setattr(np, "int", int, raising=False)
    monkeypatch.setattr(scipy.misc, "imresize", lambda im, f, interp=None, mode=None: (
        imresize_weights(im.shape[0], int(im.shape[0] * f)) @ im
        @ imresize_weights(im.shape[1], int(im.shape[1] * f)).T).astype(np.float32), raising=False)
    reference = importlib.import_module("skvideo.measure.niqe")
    monkeypatch.setattr(reference, "compute_image_mscn_transform",
                        functools.partial(reference.compute_image_mscn_transform, extend_mode="nearest"))
    for image in (bundled_images("test", 3)[2], bundled_images("train", 3)[0]):  # chelsea, coffee
        grey = image.astype(np.float64) @ RGB_TO_GREY * 255
        theirs = float(reference.niqe(grey[None, :, :, None])[0])
        assert niqe(image) == pytest.approx(theirs, rel=2e-3), theirs  # they compute in float32


def test_blur_and_noise_make_a_photo_less_natural():
    photo = bundled_images("test", 3)[1][:288, :288]  # astronaut, 9 blocks
    rng = np.random.default_rng(0)
    noisy = np.clip(photo + rng.normal(0, 25 / 255, photo.shape), 0, 1)
    x4 = imresize_weights(72, 288) @ imresize_weights(288, 72)  # bicubic down x4 and back up
    blurred = np.clip(np.einsum("ph,hwc,qw->pqc", x4, photo, x4, optimize=True), 0, 1)
    clean = niqe(photo)
    assert 2 < clean < niqe(noisy) and clean < niqe(blurred)


@pytest.mark.parametrize("image,says", [
    (np.zeros((90, 400)), "two 96x96 blocks"),
    (np.full((200, 200, 3), np.nan), "NaN"),
    (np.zeros((200, 200, 4)), "got shape"),
    (np.full((200, 200), 0.5), "flat"),
])
def test_bad_input(image, says):
    with pytest.raises(ValueError, match=says):
        niqe(image)
