"""L0 gradient minimisation (Xu, Lu, Xu, Jia, "Image Smoothing via L0 Gradient Minimization",
SIGGRAPH Asia 2011).

Minimises ``sum_p (S_p - I_p)^2 + lambda * #{p : grad S_p != 0}`` by half-quadratic splitting:
auxiliary gradients (h, v) are alternately

- hard-thresholded: ``(h, v) = grad S`` where ``sum_c |grad S|^2 >= lambda / beta``, else 0;
- fed back into the quadratic S-subproblem, solved exactly with FFTs under periodic boundaries:
  ``S = F^-1[(F(I) + beta (F(dx)^* F(h) + F(dy)^* F(v))) / (1 + beta (|F(dx)|^2 + |F(dy)|^2))]``;

while beta grows geometrically from ``2 lambda`` by ``kappa`` until it reaches ``beta_max``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from ctl_jax.operators.spec import as_image

KAPPA = 2.0
BETA_MAX = 1e5
# The loop runs enough beta steps for the smallest lambda of the range; larger lambdas reach
# beta_max earlier and leave the remaining steps as no-ops, so lambda can be traced.
LAMBDA_MIN = 0.002


def _difference_spectrum(height: int, width: int) -> jnp.ndarray:
    """``|F(dx)|^2 + |F(dy)|^2`` of the periodic forward differences, shape (H, W, 1)."""
    fy = jnp.fft.fftfreq(height)[:, None]
    fx = jnp.fft.fftfreq(width)[None, :]
    return (4 * jnp.sin(jnp.pi * fx) ** 2 + 4 * jnp.sin(jnp.pi * fy) ** 2)[..., None]


@functools.partial(jax.jit, static_argnames=("kappa", "beta_max"))
def l0_smooth(image, lam, kappa: float = KAPPA, beta_max: float = BETA_MAX) -> jnp.ndarray:
    """L0-smooth an image; jit/vmap-able in ``lam``.

    Args:
      image: float32 (H, W, C), C in {1, 3}, values in [0, 1].
      lam: smoothness weight lambda, valid range [0.002, 0.2] (log scale); larger keeps fewer
        non-zero gradients, i.e. fewer, flatter regions. The loop has a fixed length of
        ``ceil(log_kappa(beta_max / (2 * 0.002)))`` steps (25 with the defaults; lambda = 0.2
        needs 18), so smaller lambdas are cut short at that count.
      kappa, beta_max: beta schedule (the authors' defaults 2 and 1e5).

    Returns:
      (H, W, C) float32 in [0, 1]. Colour channels share one gradient support (the threshold
      sums the squared gradients over channels).
    """
    image = as_image(image)
    lam = jnp.asarray(lam, jnp.float32)
    height, width, _ = image.shape
    max_iterations = math.ceil(math.log(beta_max / (2 * LAMBDA_MIN)) / math.log(kappa))
    spectrum = _difference_spectrum(height, width)
    image_f = jnp.fft.fft2(image, axes=(0, 1))

    def step(k, smooth):
        beta = 2 * lam * kappa ** k
        h = jnp.roll(smooth, -1, axis=1) - smooth
        v = jnp.roll(smooth, -1, axis=0) - smooth
        keep = jnp.sum(h ** 2 + v ** 2, axis=-1, keepdims=True) >= lam / beta
        h, v = jnp.where(keep, h, 0.0), jnp.where(keep, v, 0.0)
        # Adjoint of the forward difference: dx^T h = h[x-1] - h[x].
        divergence = (jnp.roll(h, 1, axis=1) - h) + (jnp.roll(v, 1, axis=0) - v)
        solved = jnp.fft.ifft2((image_f + beta * jnp.fft.fft2(divergence, axes=(0, 1)))
                               / (1 + beta * spectrum), axes=(0, 1)).real
        return jnp.where(beta < beta_max, solved, smooth)

    smooth = jax.lax.fori_loop(0, max_iterations, step, image)
    return jnp.clip(smooth, 0.0, 1.0).astype(jnp.float32)
