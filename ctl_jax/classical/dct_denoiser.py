"""The overlapped N x N DCT thresholding denoiser (seed TP1, "DCT denoiser").

A continuous-level denoiser by construction: the noise level sigma is an input, and the only
tuned number is the ratio ``r = T / sigma`` between the threshold and the noise level.

Pipeline, for each channel of each image independently (channels are folded into the batch):

1. **Overlapped DCT as a fixed convolution.** With ``D`` the orthonormal 1-D DCT-II matrix
   (:func:`dct_basis`), the N^2 basis images are ``B_k[n1, n2] = D[k1, n1] D[k2, n2]``, ``k = k1 N + k2``.
   They form one (N, N, 1, N^2) convolution kernel (:func:`dct_kernel`). The image is padded by
   N - 1 pixels on each side (half-sample symmetric padding by default, the boundary the DCT itself
   assumes) and correlated with the kernel at stride 1, 'VALID':

       c[y, x, k] = sum_{n1, n2} x_pad[y + n1, x + n2] B_k[n1, n2],   y in [0, H + N - 2]

   so every pixel of the image lies in all N^2 windows that overlap it (the padded pixels only fill
   the border windows). Stride N would be the exact block DCT; stride 1 is N^2 times redundant.
2. **Thresholding** of every coefficient except the DC one (k = 0) at ``T = r sigma``: hard, soft
   or the smooth (differentiable) hard threshold below. Because the transform is orthonormal, white
   noise of standard deviation sigma gives coefficients of standard deviation sigma, so ``r`` is a
   multiple of the coefficients' noise level. The DC coefficient (N times the window mean) is kept:
   it carries the local brightness, is far above the noise almost everywhere, and thresholding it
   would blank dark regions.
3. **Inverse as the transposed convolution**: each window is rebuilt as ``sum_k c[y, x, k] B_k`` and
   added at its place; every image pixel receives exactly N^2 candidates, whose sum is divided by
   N^2 (the average), then the padding is cropped. At threshold 0 every window is rebuilt exactly
   (orthonormal basis), so the average is the input to float precision.

Thresholds (``c`` a coefficient, ``T >= 0``, all odd functions of ``c``):

- hard: ``H(c) = c if |c| > T else 0``;
- soft: ``S(c) = sign(c) max(|c| - T, 0)`` (the MAP estimate under a Laplacian prior, seed Q1);
- smooth (the seed's differentiable hard threshold, temperature ``lam > 0``):
  ``g(c) = relu(c - T + T tanh((c - T) / lam))``, ``F(c) = g(c) - g(-c)``.
  Why this form rather than ``c sigmoid((|c| - T) / lam)``: it is exactly 0 on ``|c| <= T`` for every
  temperature (the dead zone of hard and soft thresholding), it tends to soft thresholding as
  ``lam -> inf`` (tanh -> 0) and to hard thresholding as ``lam -> 0`` (tanh -> +-1), and it is
  differentiable with respect to T wherever ``|c| != T``, so T can be learned with an annealed
  temperature. The sigmoid form tends to ``c / 2`` (not soft thresholding) at high temperature and
  leaks noise inside the dead zone.

Value ranges: images in [0, data_range] (default [0, 1]); ``sigma`` is always on the 8-bit scale
(0-255), as everywhere in the project, so ``T = r sigma data_range / 255``. The ``temperature`` of
:func:`dct_denoise` is in units of sigma (``lam = temperature sigma data_range / 255``), so one
schedule serves every noise level; the raw threshold functions take absolute values.

Cost (analytic, per image pixel): the forward and inverse convolutions each cost N^2 coefficients x
N^2 taps = N^4 multiply-adds, so 2 N^4 multiply-adds = 4 N^4 FLOPs (16,384 FLOPs at N = 8), plus
N^2 thresholds and one division; the padded border multiplies this by ``(H + N - 1)(W + N - 1) / (H W)``.
The inverse also has a separable form (same linear map, ``2 N^3 + 3 N^2 + N`` FLOPs): see
:func:`idct_average` and :func:`flops_per_pixel`.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("hard", "soft", "smooth")
PAD_MODES = ("symmetric", "reflect", "edge", "wrap", "constant")
INVERSES = ("conv", "separable")
_DN = ("NHWC", "HWIO", "NHWC")
_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------------------------
# The transform

def dct_basis(patch: int = 8) -> np.ndarray:
    """The orthonormal 1-D DCT-II matrix ``D`` of size (patch, patch), float64.

    ``D[k, n] = a_k cos(pi (2 n + 1) k / (2 N))`` with ``a_0 = sqrt(1 / N)``, ``a_k = sqrt(2 / N)``;
    ``D @ D.T = I``. Row ``k`` is the k-th frequency.
    """
    n = int(patch)
    if n < 1:
        raise ValueError(f"patch must be a positive integer, got {patch!r}")
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] = np.sqrt(1.0 / n)
    return d


def dct_kernel(patch: int = 8, dtype=jnp.float32) -> jax.Array:
    """The 2-D DCT-II basis as a conv kernel of shape (patch, patch, 1, patch^2) (HWIO).

    ``kernel[n1, n2, 0, k1 N + k2] = D[k1, n1] D[k2, n2]``: output channel k is the basis image
    ``B_k``; channel 0 is the DC (constant ``1 / N``). The N^2 basis images are orthonormal.
    """
    d = dct_basis(patch)
    basis = np.einsum("ai,bj->ijab", d, d).reshape(patch, patch, 1, patch * patch)
    return jnp.asarray(basis, dtype)


def _fold_channels(x):
    """(B, H, W, C) -> (B C, H, W, 1): channels are processed independently."""
    b, h, w, c = x.shape
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(b * c, h, w, 1)


def dct_coefficients(x, patch: int = 8, pad_mode: str = "symmetric") -> jax.Array:
    """Overlapped DCT coefficients of every N x N window that touches the image.

    Args:
      x: float images (B, H, W, C); channels are transformed independently.
      patch: window size N.
      pad_mode: ``jnp.pad`` mode for the N - 1 pixels added on each side ("symmetric" repeats the
        edge pixel then mirrors, the DCT's own boundary; any mode inverts exactly).

    Returns:
      (B, C, H + N - 1, W + N - 1, N^2): ``c[b, ch, y, x, k]`` is coefficient k of the window whose
      top-left corner is padded pixel (y, x), i.e. image pixel (y - N + 1, x - N + 1).
    """
    b, h, w, c = x.shape
    n = patch
    xf = _fold_channels(x)
    xp = jnp.pad(xf, ((0, 0), (n - 1, n - 1), (n - 1, n - 1), (0, 0)), mode=pad_mode)
    coef = jax.lax.conv_general_dilated(xp, dct_kernel(n, x.dtype), (1, 1), "VALID",
                                        dimension_numbers=_DN, precision=_HIGHEST)
    return coef.reshape(b, c, h + n - 1, w + n - 1, n * n)


def idct_average(coef, patch: int = 8, inverse: str = "conv") -> jax.Array:
    """Inverse of :func:`dct_coefficients`: rebuild every window, average the N^2 candidates per pixel.

    ``out[p] = (1 / N^2) sum_{windows w containing p} sum_k c[w, k] B_k[p - w]``, cropped to the image.

    Args:
      coef: (B, C, H + N - 1, W + N - 1, N^2) coefficients (thresholded or not).
      patch: window size N.
      inverse: "conv" computes the sum as the transposed convolution with the forward kernel
        (N^4 multiply-adds per padded pixel); "separable" computes the same linear map factorised,
        ``B_k[n1, n2] = D[k1, n1] D[k2, n2]``: an inverse 1-D DCT over k2, overlap-add along W, an
        inverse 1-D DCT over k1, overlap-add along H (about N^3 + N^2 multiply-adds per pixel; 4-5x
        faster on the CPU here). Both agree to float precision.

    Returns:
      (B, H, W, C) images.
    """
    b, c, hp, wp, k = coef.shape
    n = patch
    if k != n * n:
        raise ValueError(f"coefficients have {k} channels; patch={n} needs {n * n}")
    h, w = hp - n + 1, wp - n + 1
    z = coef.reshape(b * c, hp, wp, k)
    if inverse == "conv":
        full = jax.lax.conv_transpose(z, dct_kernel(n, coef.dtype), (1, 1), "VALID", dimension_numbers=_DN,
                                      transpose_kernel=True, precision=_HIGHEST)  # (B C, H + 2N - 2, W + 2N - 2, 1)
        out = full[:, n - 1:n - 1 + h, n - 1:n - 1 + w, 0]
    elif inverse == "separable":
        d = jnp.asarray(dct_basis(n), coef.dtype)
        # window (y, x) covers padded pixels y..y+N-1; image pixel i is padded pixel i + N - 1, so its
        # candidate from the window at offset n2 along W sits at x = i + N - 1 - n2.
        g = jnp.einsum("zyxab,bm->zyxam", z.reshape(b * c, hp, wp, n, n), d, precision=_HIGHEST)
        g = sum(g[:, :, n - 1 - m:n - 1 - m + w, :, m] for m in range(n))  # (B C, H + N - 1, W, N)
        g = jnp.einsum("zyja,am->zyjm", g, d, precision=_HIGHEST)
        out = sum(g[:, n - 1 - m:n - 1 - m + h, :, m] for m in range(n))  # (B C, H, W)
    else:
        raise ValueError(f"unknown inverse {inverse!r}; choose 'conv' or 'separable'")
    out = out / (n * n)
    return jnp.transpose(out.reshape(b, c, h, w), (0, 2, 3, 1))


# ----------------------------------------------------------------------------------------------
# Thresholds

def hard_threshold(c, threshold):
    """``c`` where ``|c| > threshold``, else 0. Not differentiable with respect to the threshold."""
    return jnp.where(jnp.abs(c) > threshold, c, jnp.zeros_like(c))


def soft_threshold(c, threshold):
    """``sign(c) max(|c| - threshold, 0)``: shrinks every kept value by the threshold."""
    return jnp.sign(c) * jax.nn.relu(jnp.abs(c) - threshold)


def smooth_threshold(c, threshold, temperature):
    """The seed's differentiable hard threshold, ``g(c) - g(-c)`` with
    ``g(c) = relu(c - T + T tanh((c - T) / temperature))``.

    Exactly 0 for ``|c| <= T``; soft thresholding as ``temperature -> inf``, hard as ``-> 0``.
    ``temperature`` is in the units of ``c`` and must be > 0.
    """
    t = threshold

    def g(v):
        return jax.nn.relu(v - t + t * jnp.tanh((v - t) / temperature))

    return g(c) - g(-c)


def threshold_coefficients(coef, threshold, kind: str = "hard", temperature=None, keep_dc: bool = True):
    """Threshold DCT coefficients (..., N^2), keeping coefficient 0 (the DC) unless ``keep_dc=False``.

    ``threshold`` (and ``temperature``, needed for "smooth") broadcast against ``coef``.
    """
    if kind == "hard":
        out = hard_threshold(coef, threshold)
    elif kind == "soft":
        out = soft_threshold(coef, threshold)
    elif kind == "smooth":
        if temperature is None:
            raise ValueError("kind='smooth' needs a temperature > 0")
        out = smooth_threshold(coef, threshold, temperature)
    else:
        raise ValueError(f"unknown threshold kind {kind!r}; choose one of {KINDS}")
    if keep_dc:
        dc = jnp.arange(coef.shape[-1]) == 0
        out = jnp.where(dc, coef, out)
    return out


# ----------------------------------------------------------------------------------------------
# The denoiser

def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_inputs(noisy, sigma, ratio, kind, temperature, patch, pad_mode, inverse):
    if inverse not in INVERSES:
        raise ValueError(f"unknown inverse {inverse!r}; choose one of {INVERSES}")
    if kind not in KINDS:
        raise ValueError(f"unknown threshold kind {kind!r}; choose one of {KINDS}")
    if not isinstance(patch, (int, np.integer)) or isinstance(patch, bool) or patch < 1:
        raise ValueError(f"patch must be a positive integer, got {patch!r}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad_mode {pad_mode!r}; choose one of {PAD_MODES}")
    x = noisy if isinstance(noisy, jax.Array) else jnp.asarray(noisy)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"noisy must be a float image, got dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise ValueError(f"noisy must be (B, H, W, C) or (H, W, C), got shape {tuple(x.shape)}")
    if min(x.shape[-3:]) < 1:
        raise ValueError(f"noisy has an empty axis: shape {tuple(x.shape)}")
    if _concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("noisy contains NaN or infinite values")
    batch = x.shape[0] if x.ndim == 4 else 1
    for name, v, strict in (("sigma", sigma, False), ("ratio", ratio, False), ("temperature", temperature, True)):
        if v is None:
            continue
        a = jnp.asarray(v)
        if name == "sigma" and (a.ndim > 1 or (a.ndim == 1 and a.shape[0] not in (1, batch))):
            raise ValueError(f"{name} must be a scalar or one value per image ({batch}), got shape {a.shape}")
        if name != "sigma" and a.ndim != 0:
            raise ValueError(f"{name} must be a scalar, got shape {a.shape}")
        if _concrete(a):
            bad = ~jnp.isfinite(a) | ((a <= 0) if strict else (a < 0))
            if bool(jnp.any(bad)):
                rule = "> 0" if strict else ">= 0"
                raise ValueError(f"{name} must be finite and {rule}, got {np.asarray(a)}")
    return x


@functools.partial(jax.jit, static_argnames=("kind", "patch", "pad_mode", "inverse", "data_range"))
def _denoise(x, sigma, ratio, temperature, kind, patch, pad_mode, inverse, data_range):
    unit = jnp.asarray(sigma, x.dtype).reshape(-1, 1, 1, 1, 1) * (data_range / 255.0)  # (B or 1, 1, 1, 1, 1)
    coef = dct_coefficients(x, patch, pad_mode)
    lam = jnp.maximum(temperature * unit, jnp.finfo(x.dtype).tiny)  # sigma = 0: T = 0, any lam works
    coef = threshold_coefficients(coef, ratio * unit, kind, lam)
    return idct_average(coef, patch, inverse)


def dct_denoise(noisy, sigma, ratio=2.7, kind: str = "hard", temperature=0.1, patch: int = 8,
                data_range: float = 1.0, pad_mode: str = "symmetric", inverse: str = "conv") -> jax.Array:
    """Denoise by thresholding overlapped N x N DCT coefficients at ``T = ratio * sigma``.

    Args:
      noisy: float images (B, H, W, C) or (H, W, C) in [0, data_range] plus noise (not clipped);
        grey or colour (each channel independently). Any H, W >= 1.
      sigma: noise standard deviation on the 8-bit scale (0-255), a scalar or one per image (B,).
        A traced value under jit (sweeping it never recompiles).
      ratio: ``r = T / sigma`` (the seed's best: 2.7-2.9 at sigma 25-50; see experiments/README.md).
      kind: "hard", "soft" or "smooth" (module docstring). The DC coefficient is never thresholded.
      temperature: the smooth threshold's temperature in units of sigma (only for kind="smooth").
      patch: window size N (static).
      data_range: 1.0 for [0, 1] images, 255.0 for [0, 255] images.
      pad_mode: border handling, a ``jnp.pad`` mode (static); the padded pixels only fill the border
        windows, every image pixel still averages N^2 candidates.
      inverse: "conv" (the transposed convolution) or "separable" (the same map, factorised; faster),
        see :func:`idct_average` (static).

    Returns:
      Denoised images of the input's shape and dtype, not clipped. With ``ratio = 0`` (hard or
      soft) this is the input to float precision.

    Raises:
      ValueError: wrong rank, non-float or non-finite image, negative or non-finite sigma or
        ratio, non-positive temperature, unknown kind or pad mode (checked on concrete values; under
        an outer jit only shapes are checked).
    """
    x = _check_inputs(noisy, sigma, ratio, kind, temperature if kind == "smooth" else None, patch, pad_mode,
                      inverse)
    single = x.ndim == 3
    if single:
        x = x[None]
    dtype = x.dtype if x.dtype in (jnp.float32, jnp.float64) else jnp.float32
    out = _denoise(x.astype(dtype), jnp.asarray(sigma, dtype), jnp.asarray(ratio, dtype),
                   jnp.asarray(temperature, dtype), kind, int(patch), pad_mode, inverse, float(data_range))
    out = out.astype(x.dtype)
    return out[0] if single else out


def flops_per_pixel(patch: int = 8, height: int | None = None, width: int | None = None,
                    inverse: str = "conv") -> float:
    """Analytic FLOPs per image pixel (2 per multiply-add) of the forward and inverse transforms.

    Forward (the convolution): N^2 coefficients x N^2 taps = N^4 multiply-adds. Inverse: N^4 more
    for "conv" (so ``4 N^4`` FLOPs in all, the seed's ``2 N^4`` multiplications); for "separable"
    ``N^3`` multiply-adds (inverse DCT over k2) + ``N^2`` adds (overlap-add along W) + ``N^2``
    multiply-adds (inverse DCT over k1) + ``N`` adds, i.e. ``2 N^3 + 3 N^2 + N`` FLOPs. With ``height``
    and ``width`` the total is scaled by the padded window count ``(H + N - 1)(W + N - 1) / (H W)``
    (a slight over-count for the separable inverse's later stages). Thresholds (N^2 per window) and
    the final division are not counted.
    """
    n = patch
    if inverse == "conv":
        flops = 4.0 * n ** 4
    elif inverse == "separable":
        flops = 2.0 * n ** 4 + 2.0 * n ** 3 + 3.0 * n ** 2 + n
    else:
        raise ValueError(f"unknown inverse {inverse!r}; choose one of {INVERSES}")
    if height is None or width is None:
        return flops
    return flops * (height + n - 1) * (width + n - 1) / (height * width)


# ----------------------------------------------------------------------------------------------
# Choosing r: sweep, and learning by gradient descent

def add_noise(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """The project's noise protocol: ``x + RandomState(seed).randn(*x.shape) * sigma / 255``, not clipped.

    ``clean``: one image (H, W, C) in [0, 1]; the generator is re-seeded for each call (each image).
    """
    clean = np.asarray(clean, np.float32)
    return (clean + np.random.RandomState(seed).randn(*clean.shape) * (sigma / 255.0)).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("kind", "patch", "inverse"))
def _psnr_at(coef, clean, threshold, lam, kind, patch, inverse):
    out = jnp.clip(idct_average(threshold_coefficients(coef, threshold, kind, lam), patch, inverse), 0.0, 1.0)
    return 10.0 * jnp.log10(1.0 / jnp.mean((out - clean) ** 2))


def sweep_ratio(clean_images: Sequence[np.ndarray], sigma: float, ratios: Sequence[float],
                kind: str = "hard", temperature: float = 0.1, patch: int = 8, seed: int = 0,
                inverse: str = "conv") -> np.ndarray:
    """PSNR (dB) of :func:`dct_denoise` for every image and ratio, noise per :func:`add_noise`.

    Each image's forward transform is computed once; each ratio costs one threshold + inverse.
    PSNR is taken on the output clipped to [0, 1] (the project's protocol).

    Args:
      clean_images: images (H, W, C) in [0, 1], sizes may differ.
      sigma: noise level on the 8-bit scale; ratios: the r values; kind, temperature, patch,
        inverse: as in :func:`dct_denoise`; seed: the noise generator's seed, re-seeded per image.

    Returns:
      (len(clean_images), len(ratios)) float64 array.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown threshold kind {kind!r}; choose one of {KINDS}")
    unit = sigma / 255.0
    table = np.zeros((len(clean_images), len(ratios)))
    for i, clean in enumerate(clean_images):
        clean = np.asarray(clean, np.float32)
        noisy = jnp.asarray(add_noise(clean, sigma, seed))[None]
        coef = dct_coefficients(noisy, patch)
        lam = jnp.float32(max(temperature * unit, 1e-12))
        for j, r in enumerate(ratios):
            table[i, j] = float(_psnr_at(coef, clean[None], jnp.float32(r * unit), lam, kind, patch,
                                           inverse))
    return table


def find_best_ratio(clean_images, sigma: float, kind: str = "hard", coarse=np.arange(1.0, 4.51, 0.25),
                    fine_step: float = 0.05, temperature: float = 0.1, patch: int = 8, inverse: str = "conv"):
    """Coarse-then-fine search of the ratio maximising the mean PSNR over ``clean_images``.

    The fine grid spans one coarse step either side of the coarse best, at ``fine_step``.

    Returns:
      ``(best_r, best_mean_psnr, ratios, mean_psnrs)`` with every ratio tried (sorted).
    """
    coarse = np.round(np.asarray(coarse, float), 6)
    step = float(np.min(np.diff(coarse))) if len(coarse) > 1 else 0.25
    def mean_psnr(ratios):
        return sweep_ratio(clean_images, sigma, ratios, kind, temperature, patch, inverse=inverse).mean(0)

    mean = dict(zip(coarse, mean_psnr(coarse)))
    r0 = max(mean, key=mean.get)
    fine = np.round(np.arange(max(r0 - step, 0.0), r0 + step + 1e-9, fine_step), 6)
    fine = np.array([r for r in fine if r not in mean])
    if len(fine):
        mean.update(zip(fine, mean_psnr(fine)))
    ratios = np.array(sorted(mean))
    psnrs = np.array([mean[r] for r in ratios])
    best = int(np.argmax(psnrs))
    return float(ratios[best]), float(psnrs[best]), ratios, psnrs


def _geometric(start: float, end: float, steps: int) -> jax.Array:
    """``steps`` values from ``start`` to ``end``, evenly spaced in log."""
    return jnp.exp(jnp.linspace(math.log(start), math.log(end), steps)).astype(jnp.float32)


def _descend(loss, x0, inputs, optimizer):
    """Minimise ``loss(x, *inputs[i])`` by one ``optimizer`` step per i (a jitted ``lax.scan``) from
    the scalar ``x0``; returns ``(x, history)``: the final value (float) and the value after each step."""
    import optax

    def step(carry, inp):
        x, state = carry
        updates, state = optimizer.update(jax.grad(loss)(x, *inp), state, x)
        x = optax.apply_updates(x, updates)
        return (x, state), x

    (x, _), history = jax.jit(lambda c, i: jax.lax.scan(step, c, i))((x0, optimizer.init(x0)), inputs)
    return float(x), np.asarray(history)


def learn_toy_threshold(true_threshold: float = 2.4, std: float = 8.0, init: float = 6.0, steps: int = 1500,
                        lr: float = 0.05, temperatures=(4.0, 0.02), batch: int = 4096, seed: int = 0):
    """The seed's toy: learn a hard threshold from examples by gradient descent with annealing.

    Targets are ``hard_threshold(x, true_threshold)`` with ``x ~ N(0, std^2)`` (fresh samples each
    step); the model is ``smooth_threshold(x, T, lam)`` with ``lam`` annealed geometrically from
    ``temperatures[0]`` to ``temperatures[1]`` (absolute units); loss = mean squared error; Adam on T.

    Returns:
      ``(T, history)``: the learned threshold (float) and its value after every step (steps,).
    """
    import optax  # imported where used (DESIGN.md principle 9)

    def loss(t, key, lam):
        x = std * jax.random.normal(key, (batch,))
        return jnp.mean((smooth_threshold(x, t, lam) - hard_threshold(x, true_threshold)) ** 2)

    keys = jax.random.split(jax.random.key(seed), steps)
    return _descend(loss, jnp.float32(init), (keys, _geometric(*temperatures, steps)), optax.adam(lr))


def learn_ratio(clean_patches, sigma: float, init: float = 2.0, steps: int = 200, lr: float = 0.05,
                temperatures=(1.0, 0.02), batch: int = 8, patch: int = 8, seed: int = 0, inverse: str = "conv"):
    """Learn ``r`` for one noise level by gradient descent through the smooth threshold.

    Each step draws ``batch`` clean patches, adds fresh Gaussian noise of level ``sigma`` (8-bit
    scale), denoises with ``kind="smooth"`` at ``T = r sigma / 255`` and the temperature (in units
    of sigma) annealed geometrically over ``temperatures``, and takes an Adam step on the mean
    squared error to the clean patches (output not clipped; learning rate cosine-decayed to lr / 10).
    At the final temperature the smooth threshold is close to the hard one, so the result is
    comparable with the hard sweep's best r.

    Args:
      clean_patches: (P, h, w, C) clean crops in [0, 1].

    Returns:
      ``(r, history)``: the learned ratio and its value after every step.
    """
    import optax

    data = jnp.asarray(clean_patches, jnp.float32)
    if data.ndim != 4:
        raise ValueError(f"clean_patches must be (P, h, w, C), got shape {data.shape}")
    unit = sigma / 255.0
    lams = _geometric(*temperatures, steps)
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.1))
    r0 = jnp.float32(init)

    def loss(r, key, lam):
        k1, k2 = jax.random.split(key)
        idx = jax.random.randint(k1, (batch,), 0, data.shape[0])
        clean = data[idx]
        noisy = clean + unit * jax.random.normal(k2, clean.shape)
        coef = dct_coefficients(noisy, patch)
        out = idct_average(threshold_coefficients(coef, r * unit, "smooth", lam * unit), patch, inverse)
        return jnp.mean((out - clean) ** 2)

    keys = jax.random.split(jax.random.key(seed), steps)
    return _descend(loss, r0, (keys, lams), opt)
