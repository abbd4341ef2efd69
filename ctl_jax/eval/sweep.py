"""Alpha sweeps: a tuned network evaluated over a grid of alphas at several degradation levels.

For every test image and level the degraded input is made once (deterministically from the seed)
and fixed for all alphas; the network then runs at every alpha of the grid and its output, clipped
to [0, 1], is scored with PSNR and SSIM on RGB and on the BT.601 Y channel. The result holds the
mean over images per (level, alpha) and the per-image values (:class:`SweepResult`).

The alphas of one image are evaluated by one of three strategies (DESIGN.md section 4): ``"vmap"``
(all alphas at once; per-alpha kernels become grouped convs), ``"map"`` (``jax.lax.map`` over
chunks of ``chunk`` alphas) or ``"loop"`` (a Python loop over one jitted single-alpha function,
compiled once). All levels of an image go through the network together as one batch.
``theta1 = tuner.endpoint(phi, theta0)`` is computed once per sweep; the network at alpha then runs
with ``lerp(theta0, theta1, alpha)``, which is :func:`ctl_jax.tuners.interpolate`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.data.degrade import Degradation, check_level, jpeg_compress
from ctl_jax.eval.metrics import psnr, ssim
from ctl_jax.tuners.alpha import lerp
from ctl_jax.tuners.trees import Params, check_params_match

STRATEGIES = ("vmap", "map", "loop")
# "auto": the fastest strategy measured by benchmarks/sweep_strategies.py on this project's 2-core
# CPU (11 alphas x 4 noise levels, 256x256 RGB, AdaFM-Net + FTN-gc16, 3 rounds, one process), in
# alpha-images/s (median):
#   small: vmap 1.33, map/2 1.65, map/4 1.71, map/6 1.68, loop 4.37
#   paper: vmap 0.34, map/2 0.48, map/4 0.43, map/6 0.37, loop 1.41
# The loop is 2.6-4x faster than every batched strategy: vmapped per-alpha kernels lower to grouped
# convolutions, which XLA's CPU backend runs far below its plain-conv speed. Re-measure elsewhere.
AUTO_STRATEGY = "loop"
METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")


# ---------------------------------------------------------------------------------------------
# Inputs


def crop_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom and right of an (H, W, C) image so that H and W are multiples of ``multiple``."""
    if multiple < 1:
        raise ValueError(f"multiple_of must be >= 1; got {multiple}")
    h, w = image.shape[:2]
    if h < multiple or w < multiple:
        raise ValueError(f"image of size {h}x{w} is smaller than the required multiple {multiple}")
    return image[: h - h % multiple, : w - w % multiple]


def _input_multiple(degradation: Degradation, levels: Sequence[float], multiple_of: int) -> int:
    """The multiple H and W must have so that every level's degraded input suits the network."""
    multiple = multiple_of
    if degradation.kind == "bicubic":  # down-sampling by s needs H, W divisible by s
        for s in levels:
            multiple = math.lcm(multiple, int(s))
    elif degradation.kind == "bicubic_lr":  # and the network then sees H/s x W/s
        for s in levels:
            multiple = math.lcm(multiple, int(s) * multiple_of)
    return multiple


def _level_tag(level: float) -> int:
    """An integer naming a level for ``jax.random.fold_in`` (milli-units, so 12.5 and 12 differ)."""
    return int(round(float(level) * 1000)) % (2 ** 32)


def degrade(clean: np.ndarray, degradation: Degradation, level: float, *, seed: int = 0,
            index: int = 0) -> jax.Array:
    """The degraded version of one clean (H, W, C) float32 image in [0, 1].

    Deterministic: the noise key is ``fold_in(fold_in(key(seed), index), level in milli-units)``,
    so the input of (image ``index``, ``level``) does not depend on which other levels or images
    are swept. Noise is not clipped (as in training); JPEG uses Pillow; bicubic runs in JAX.
    Returns (H, W, C), or (H/s, W/s, C) for ``"bicubic_lr"``.
    """
    check_level(degradation.kind, level)
    if degradation.kind == "jpeg":
        return jnp.asarray(jpeg_compress(np.asarray(clean, np.float32), int(level)))
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), index), _level_tag(level))
    return degradation.on_device(key, jnp.asarray(clean, jnp.float32)[None], level)[0]


def _check_images(images) -> list[np.ndarray]:
    if len(images) == 0:
        raise ValueError("sweep needs at least one test image")
    out = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] not in (1, 3):
            raise ValueError(f"image {i}: expected (H, W, C) with C = 1 or 3; got shape {image.shape}")
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"image {i}: expected float values in [0, 1]; got dtype {image.dtype}")
        if image.shape[-1] != np.shape(images[0])[-1]:
            raise ValueError(f"image {i} has {image.shape[-1]} channels but image 0 has {np.shape(images[0])[-1]}")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"image {i}: values must lie in [0, 1]; got [{lo:.3g}, {hi:.3g}]")
        out.append(image.astype(np.float32))
    return out


def _check_alphas(alphas) -> np.ndarray:
    alphas = np.asarray(alphas, np.float32)
    if alphas.ndim != 1 or alphas.size == 0:
        raise ValueError(f"alphas must be a non-empty 1-D sequence; got shape {alphas.shape}")
    if not np.all(np.isfinite(alphas)):
        raise ValueError(f"alphas must be finite; got {alphas}")
    return alphas


# ---------------------------------------------------------------------------------------------
# The alpha-grid evaluators

SweepFn = Callable[[Params, Params, jax.Array, jax.Array, jax.Array], jax.Array]


def _scores_at_alpha(model, border: int):
    """(theta0, theta1, x (B,H,W,C), clean (B,H,W,C), alpha ()) -> scores (4, B) in METRICS order."""

    def run(theta0, theta1, x, clean, alpha):
        y = model.apply({"params": lerp(theta0, theta1, alpha)}, x)
        if y.shape != clean.shape:
            raise ValueError(f"the network maps inputs {x.shape} to {y.shape}, but the clean images are "
                             f"{clean.shape}; sweep needs an output of the clean image's size")
        y = jnp.clip(y, 0.0, 1.0)
        return jnp.stack([psnr(y, clean, border=border), ssim(y, clean, border=border),
                          psnr(y, clean, border=border, y_channel=True),
                          ssim(y, clean, border=border, y_channel=True)])

    return run


def sweep_fn(model, strategy: str, *, border: int = 0, chunk: int = 4) -> SweepFn:
    """The evaluator of one alpha grid with the given strategy ("vmap", "map", "loop" or "auto").

    Returns ``f(theta0, theta1, x, clean, alphas) -> scores`` with x and clean (B, H, W, C),
    alphas (K,) float32, scores (K, 4, B): PSNR, SSIM, PSNR-Y, SSIM-Y of the clipped output at
    each alpha. Every strategy compiles once per input shape; ``chunk`` is lax.map's batch size.
    """
    strategy = AUTO_STRATEGY if strategy == "auto" else strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown sweep strategy {strategy!r}; choose one of {STRATEGIES + ('auto',)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    one = _scores_at_alpha(model, border)

    if strategy == "vmap":
        return jax.jit(jax.vmap(one, in_axes=(None, None, None, None, 0)))
    if strategy == "map":
        @jax.jit
        def mapped(theta0, theta1, x, clean, alphas):
            return jax.lax.map(lambda a: one(theta0, theta1, x, clean, a), alphas, batch_size=chunk)
        return mapped

    single = jax.jit(one)

    def looped(theta0, theta1, x, clean, alphas):
        # Each alpha goes in as a 0-d float32 array: one compilation for the whole grid.
        alphas = jnp.asarray(alphas, jnp.float32)
        return jnp.stack([single(theta0, theta1, x, clean, alphas[k]) for k in range(alphas.shape[0])])

    return looped


# ---------------------------------------------------------------------------------------------
# Result


def level_label(kind: str, level: float) -> str:
    """"σ=20" for noise, "q=10" for JPEG, "×2" for bicubic scales."""
    prefix = {"noise": "σ=", "jpeg": "q="}.get(kind, "×")
    return f"{prefix}{float(level):g}"


def _as_float_array(value, name: str, shape: tuple) -> np.ndarray:
    arr = np.asarray(value, np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {arr.shape}")
    return arr


@dataclasses.dataclass
class SweepResult:
    """Metrics of an alpha sweep.

    levels: (L,) degradation levels; alphas: (K,) control values.
    psnr, ssim, psnr_y, ssim_y: (L, K) means over the test images (PSNR in dB, RGB and Y channel).
    degradation: the degradation with its training levels A (alpha 0) and B (alpha 1).
    per_image: optional {metric: (L, K, N)} values per image, same keys as METRICS.
    input_psnr: optional (L,) mean PSNR of the degraded inputs (clipped) when they have the clean size.
    name: the method's name (used by reports); image_names: (N,) optional; seed, border, strategy:
    how the sweep was run.
    """

    levels: np.ndarray
    alphas: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    psnr_y: np.ndarray
    ssim_y: np.ndarray
    degradation: Degradation
    per_image: dict | None = None
    input_psnr: np.ndarray | None = None
    name: str = ""
    image_names: tuple = ()
    seed: int = 0
    border: int = 0
    strategy: str = ""

    def __post_init__(self):
        self.levels = np.asarray(self.levels, np.float64).reshape(-1)
        self.alphas = np.asarray(self.alphas, np.float64).reshape(-1)
        grid = (self.levels.size, self.alphas.size)
        for m in METRICS:
            setattr(self, m, _as_float_array(getattr(self, m), m, grid))
        if self.per_image is not None:
            if set(self.per_image) != set(METRICS):
                raise ValueError(f"per_image must have the keys {METRICS}; got {sorted(self.per_image)}")
            arrays = {m: np.asarray(self.per_image[m], np.float64) for m in METRICS}
            n = arrays["psnr"].shape[-1] if arrays["psnr"].ndim == 3 else -1
            self.per_image = {m: _as_float_array(a, f"per_image[{m!r}]", grid + (n,)) for m, a in arrays.items()}
        if self.input_psnr is not None:
            self.input_psnr = _as_float_array(self.input_psnr, "input_psnr", grid[:1])
        self.image_names = tuple(self.image_names)
        if not isinstance(self.degradation, Degradation):
            raise ValueError(f"degradation must be a Degradation; got {type(self.degradation).__name__}")

    def metric(self, name: str) -> np.ndarray:
        """The (L, K) array of one metric: "psnr", "ssim", "psnr_y" or "ssim_y"."""
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose one of {METRICS}")
        return getattr(self, name)

    def level_index(self, level: float) -> int:
        """Row of ``level`` in the result; ValueError listing the swept levels otherwise."""
        hits = np.flatnonzero(np.isclose(self.levels, float(level)))
        if hits.size == 0:
            raise ValueError(f"level {level} was not swept; levels are {self.levels.tolist()}")
        return int(hits[0])

    def best_alpha(self, level: float, metric: str = "psnr") -> float:
        """The grid alpha with the highest ``metric`` at ``level`` (first one on ties)."""
        row = self.metric(metric)[self.level_index(level)]
        if np.all(np.isnan(row)):
            raise ValueError(f"{metric} at level {level} is NaN for every alpha")
        return float(self.alphas[int(np.nanargmax(row))])

    def best_value(self, level: float, metric: str = "psnr") -> float:
        """The highest ``metric`` over the alpha grid at ``level``."""
        return float(np.nanmax(self.metric(metric)[self.level_index(level)]))

    def expected_alpha(self, level: float) -> float:
        """The linearly expected alpha of ``level``: (level - A) / (B - A)."""
        return self.degradation.alpha_for(level)

    def level_label(self, level: float) -> str:
        """A short name of a level for tables and legends: "σ=20", "q=10" or "×2"."""
        return level_label(self.degradation.kind, level)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (lists of floats; NaN/inf stay floats)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["degradation"] = dataclasses.asdict(self.degradation)
        out["image_names"] = list(self.image_names)
        for key, value in out.items():
            if isinstance(value, np.ndarray):
                out[key] = value.tolist()
        if self.per_image is not None:
            out["per_image"] = {m: a.tolist() for m, a in self.per_image.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "SweepResult":
        data = dict(data)
        data["degradation"] = Degradation(**data["degradation"])
        return cls(**data)

    def to_json(self, indent: int | None = None) -> str:
        """JSON text; :meth:`from_json` restores an equal result (float64 values round-trip exactly)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "SweepResult":
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------
# The sweep


def sweep(model, tuner, theta0: Params, phi: Params, images: Sequence[np.ndarray], degradation: Degradation,
          levels: Sequence[float], alphas: Sequence[float], *, seed: int = 0, border: int = 0,
          strategy: str = "auto", progress: bool = True, multiple_of: int = 2, chunk: int = 4,
          name: str | None = None, image_names: Sequence[str] = ()) -> SweepResult:
    """Evaluate ``model`` tuned by ``tuner`` over ``alphas`` at each of ``levels`` on ``images``.

    Args:
      model: a Flax Linen base network mapping (N, H, W, C) in [0, 1] to the same shape.
      tuner, theta0, phi: the continuous-level method (``ctl_jax.tuners.make_tuner``) and its trees.
      images: clean test images, float (H, W, C) in [0, 1], C = 1 or 3; sizes may differ. Each is
        cropped (bottom/right) to a multiple of ``multiple_of`` (and of the bicubic scale).
      degradation: kind and training levels (A at alpha 0, B at alpha 1).
      levels: degradation levels to test (noise sigma on the 0-255 scale, JPEG quality, scale).
      alphas: the control values, (K,); values outside [0, 1] extrapolate.
      seed: degraded inputs depend only on (seed, image index, level) (see :func:`degrade`).
      border: pixels cropped from each side before the metrics.
      strategy: "vmap", "map", "loop", or "auto" (the fastest measured here, ``AUTO_STRATEGY``).
      progress: print one line per image to stderr.
      chunk: lax.map's batch size for strategy "map".
      name: the method's name in the result (default ``tuner.name``).

    Returns:
      SweepResult with (L, K) means and (L, K, N) per-image values.
    """
    images = _check_images(images)
    alphas = _check_alphas(alphas)
    levels = [float(level) for level in levels]
    if not levels:
        raise ValueError("sweep needs at least one level")
    for level in levels:
        check_level(degradation.kind, level)
    if image_names and len(image_names) != len(images):
        raise ValueError(f"{len(image_names)} image names for {len(images)} images")

    evaluate = sweep_fn(model, strategy, border=border, chunk=chunk)
    theta1 = jax.jit(tuner.endpoint)(phi, theta0)
    multiple = _input_multiple(degradation, levels, multiple_of)
    alphas_dev = jnp.asarray(alphas)
    scores = np.zeros((len(levels), alphas.size, len(METRICS), len(images)))
    input_psnr = np.zeros((len(levels), len(images)))
    start = time.perf_counter()
    for i, image in enumerate(images):
        clean = jnp.asarray(crop_to_multiple(image, multiple))
        x = jnp.stack([degrade(clean, degradation, level, seed=seed, index=i) for level in levels])
        cleans = jnp.broadcast_to(clean, (len(levels),) + clean.shape)
        if i == 0:
            check_params_match(model, theta0, x)
        values = np.asarray(evaluate(theta0, theta1, x, cleans, alphas_dev))  # (K, 4, L)
        scores[..., i] = values.transpose(2, 0, 1)
        input_psnr[:, i] = (np.asarray(psnr(jnp.clip(x, 0, 1), cleans, border=border))
                            if x.shape == cleans.shape else np.nan)
        if progress:
            print(f"sweep {name or tuner.name}: image {i + 1}/{len(images)} {clean.shape[0]}x{clean.shape[1]}, "
                  f"{len(levels)} levels x {alphas.size} alphas, {time.perf_counter() - start:.1f} s",
                  file=sys.stderr, flush=True)

    per_image = {m: scores[:, :, j, :] for j, m in enumerate(METRICS)}
    return SweepResult(
        levels=np.asarray(levels), alphas=alphas, degradation=degradation,
        **{m: v.mean(axis=-1) for m, v in per_image.items()}, per_image=per_image,
        input_psnr=None if np.isnan(input_psnr).all() else input_psnr.mean(axis=-1),
        name=tuner.name if name is None else name, image_names=tuple(image_names), seed=seed,
        border=border, strategy=AUTO_STRATEGY if strategy == "auto" else strategy)


def outputs_over_alphas(model, tuner, theta0: Params, phi: Params, x: jax.Array, alphas) -> np.ndarray:
    """The clipped outputs for one input at each alpha, for image strips.

    x: (H, W, C) degraded input in [0, 1]; alphas: (K,). Returns (K, H, W, C) float32 in [0, 1].
    Runs one jitted single-alpha forward per alpha (alpha as a float32 array: compiled once).
    """
    theta1 = jax.jit(tuner.endpoint)(phi, theta0)
    forward = jax.jit(lambda t0, t1, xb, a: jnp.clip(model.apply({"params": lerp(t0, t1, a)}, xb), 0.0, 1.0))
    xb = jnp.asarray(x, jnp.float32)[None]
    return np.stack([np.asarray(forward(theta0, theta1, xb, jnp.float32(a))[0]) for a in _check_alphas(alphas)])
