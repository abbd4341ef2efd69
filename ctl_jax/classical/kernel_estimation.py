"""Degradation-kernel estimation through a frozen SR network (seed 004, Q11; KernelGAN's kernel model).

An observed low-resolution image y was made from an unknown high-resolution x by
y = (x * k) decimated by s, with an unknown blur kernel k. Given a frozen SR network f, take
x_hat = f(y) as the stand-in for x and find the kernel that re-degrades it into y:

    k* = argmin_k  mean(((x_hat * k) decimated by s - y)^2) / var(y)
                   + w_centre |centre of mass(k) - kernel centre|^2 + w_border sum(k * border mask)

(the fit is relative to y's variance, so the weights do not depend on the image's contrast).

The centre term removes the shift ambiguity of decimation (a kernel moved by one pixel re-degrades
almost as well); the border term (a mask growing from 0 at the centre to 1 at the edge) keeps mass
off the kernel's edges, as KernelGAN's regularisers do. Two kernel models, both giving a
non-negative kernel that sums to 1:

- ``free``: k = softmax(logits) over the k x k taps;
- ``deep_linear``: KernelGAN's generator, a stack of linear convolutions without activations (sizes
  7, 5, 3, 1, 1, 1 -> a 13 x 13 effective kernel, over-parameterised to ease the optimisation); its
  kernel is the stack applied to a delta, made non-negative and normalised.

:func:`estimate_kernel` runs Adam on either (jitted steps, no host round-trips in between) and returns
the kernel; :func:`kernel_error` compares it to a known one.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ctl_jax.classical.descent import scan_steps
from ctl_jax.degradations.bicubic import blur_decimate, gaussian_kernel  # noqa: F401 (re-exported: the synthetic kernels)

MODELS = ("free", "deep_linear")


class DeepLinearKernel(nn.Module):
    """KernelGAN's linear generator: convs of ``sizes`` with ``features`` channels, no activations;
    ``__call__()`` gives its (K, K) effective kernel, K = sum(sizes) - len(sizes) + 1."""

    sizes: tuple = (7, 5, 3, 1, 1, 1)
    features: int = 32

    @nn.compact
    def __call__(self):
        size = sum(self.sizes) - len(self.sizes) + 1
        h = jnp.zeros((1, 2 * size - 1, 2 * size - 1, 1)).at[0, size - 1, size - 1, 0].set(1.0)  # a delta
        for i, k in enumerate(self.sizes):
            last = i == len(self.sizes) - 1
            h = nn.Conv(1 if last else self.features, (k, k), padding="VALID", use_bias=False, name=f"conv_{i}")(h)
        return h[0, :, :, 0][::-1, ::-1]  # correlation of a delta: flip to the convolution kernel


@dataclasses.dataclass(frozen=True)
class KernelEstimate:
    """kernel: (K, K) float32, non-negative, sum 1; losses: the objective every ``log_every`` steps."""

    kernel: np.ndarray
    losses: tuple


def _border_mask(size: int) -> jax.Array:
    t = np.abs(np.arange(size) - (size - 1) / 2) / ((size - 1) / 2)
    return jnp.asarray(np.maximum.outer(t, t) ** 2, jnp.float32)


def _centre_of_mass(k: jax.Array) -> jax.Array:
    t = jnp.arange(k.shape[0], dtype=jnp.float32)
    return jnp.stack([jnp.sum(k.sum(1) * t), jnp.sum(k.sum(0) * t)])


def _kernel_of(model: str, size: int) -> tuple[Callable, Callable]:
    """(init(key) -> params, kernel(params) -> (K, K) non-negative, sum 1)."""
    if model == "free":
        def init(key):
            return jnp.zeros((size, size)) + 1e-3 * jax.random.normal(key, (size, size))

        return init, lambda logits: jax.nn.softmax(logits.ravel()).reshape(size, size)
    generator = DeepLinearKernel()
    if sum(generator.sizes) - len(generator.sizes) + 1 != size:
        raise ValueError(f"the deep linear kernel is {sum(generator.sizes) - len(generator.sizes) + 1}x"
                         f"{sum(generator.sizes) - len(generator.sizes) + 1}; pass kernel_size=13")

    def kernel(params):
        k = jnp.abs(generator.apply({"params": params}))
        return k / jnp.sum(k)

    return lambda key: generator.init(key)["params"], kernel


@functools.lru_cache(maxsize=16)
def _compiled_fit(model: str, kernel_size: int, scale: int, rate: float, centre_weight: float,
                  border_weight: float, log_every: int) -> Callable:
    """(params, adam state, lr, sr) -> after ``log_every`` Adam steps (params, state, last loss);
    jitted once per setting, so estimates on same-sized images reuse one compilation."""
    _, kernel_of = _kernel_of(model, kernel_size)
    border, centre = _border_mask(kernel_size), jnp.full((2,), (kernel_size - 1) / 2)
    optimizer = optax.adam(rate)

    @jax.jit
    def run(params, state, lr, sr):
        variance = jnp.maximum(jnp.var(lr), 1e-8)

        def objective(params):
            k = kernel_of(params)
            fit = jnp.mean(jnp.square(blur_decimate(sr[None], k, scale)[0] - lr)) / variance
            return (fit + centre_weight * jnp.sum(jnp.square(_centre_of_mass(k) - centre))
                    + border_weight * jnp.sum(k * border))

        params, state, losses = scan_steps(objective, optimizer, params, state, log_every)
        return params, state, losses[-1]

    return run


def estimate_kernel(lr, sr, scale: int, *, kernel_size: int = 13, model: str = "free", steps: int = 1000,
                    lr_rate: float | None = None, centre_weight: float = 1e-4, border_weight: float = 1e-3,
                    seed: int = 0, log_every: int = 100) -> KernelEstimate:
    """The blur kernel that re-degrades ``sr`` into ``lr`` (module docstring).

    lr: (h, w, C) the observed image; sr: (h s, w s, C) a frozen network's output for it (or any HR
    estimate); scale: s; kernel_size: odd K (13 for ``deep_linear``), smaller than the images;
    lr_rate: Adam's rate (default 0.1 for ``free``, 1e-3 for ``deep_linear``).
    """
    if model not in MODELS:
        raise ValueError(f"kernel model must be one of {MODELS}; got {model!r}")
    lr, sr = jnp.asarray(lr, jnp.float32), jnp.asarray(sr, jnp.float32)
    if lr.ndim != 3 or sr.ndim != 3 or sr.shape != (lr.shape[0] * scale, lr.shape[1] * scale, lr.shape[2]):
        raise ValueError(f"sr must be lr's size times {scale}: lr {lr.shape}, sr {sr.shape}")
    if kernel_size % 2 == 0 or kernel_size > min(sr.shape[:2]):
        raise ValueError(f"kernel_size must be odd and at most the image size {min(sr.shape[:2])}; got {kernel_size}")
    rate = lr_rate if lr_rate is not None else (0.1 if model == "free" else 1e-3)
    init, kernel_of = _kernel_of(model, kernel_size)
    run = _compiled_fit(model, kernel_size, scale, rate, centre_weight, border_weight, log_every)
    optimizer = optax.adam(rate)
    params = init(jax.random.key(seed))
    state, losses = optimizer.init(params), []
    for _ in range(max(1, steps // log_every)):
        params, state, loss = run(params, state, lr, sr)
        losses.append(float(loss))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(f"kernel estimation diverged (loss {losses[-1]}); lower lr_rate")
    return KernelEstimate(np.asarray(kernel_of(params)), tuple(losses))


def kernel_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Relative L2 error |k_est - k_true| / |k_true| (both (K, K); the smaller one is zero-padded
    to the larger, centred)."""
    a, b = np.asarray(estimate, np.float64), np.asarray(truth, np.float64)
    size = max(a.shape[0], b.shape[0])
    pad = lambda k: np.pad(k, (size - k.shape[0]) // 2)
    a, b = pad(a), pad(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
