"""The one evaluation: a controllable model over a grid of controls at several degradation levels.

For every test image and level the degraded input is made once (deterministically from the seed,
``task.eval_input``) and fixed for all controls; the model then runs at every control of the grid.
Outputs are scored as the 8-bit images a user saves and papers compare: clipped to [0, 1],
rounded to multiples of 1/255, then PSNR and SSIM on RGB and on the BT.601 Y channel
(:func:`quantise`; ``ctl-jax apply`` writes exactly these values). The CLI, the experiments, the
reports, the notebooks and the benchmarks all score through :func:`sweep` / :func:`scores`.

Controls may be D-dimensional (``controls`` (K, D), levels (L, D)), so a 2-D grid of noise and
JPEG levels is one call. The controls of one image are evaluated by one of three strategies
(DESIGN.md section 4): "loop" (one jitted single-control function, compiled once; the fastest
here, see experiments/README.md), "vmap" or "map" (``jax.lax.map`` over chunks).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from types import SimpleNamespace
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.control import Control
from ctl_jax.data.images import check_unit_scale
from ctl_jax.eval.metrics import psnr, ssim

STRATEGIES = ("vmap", "map", "loop")
AUTO_STRATEGY = "loop"  # measured fastest on CPU: benchmarks/sweep_strategies.py
METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")
# The largest |control| accepted by sweeps and ``ctl-jax apply``. Controls outside [0, 1] extrapolate,
# usefully a little beyond it (CFSNet's curves span -1..1.5); at 100 a parameter-space method already
# moves the weights 100 times the A -> B difference, and values such as 1e30 are typing mistakes.
MAX_ABS_CONTROL = 100.0


def quantise(y: jax.Array) -> jax.Array:
    """The 8-bit image a network output becomes when saved: clip to [0, 1], round to k/255."""
    return jnp.round(jnp.clip(y, 0.0, 1.0) * 255.0) / 255.0


def crop_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Crop the bottom and right of an (H, W, C) image so that H and W are multiples of ``multiple``."""
    if multiple < 1:
        raise ValueError(f"multiple_of must be >= 1; got {multiple}")
    h, w = image.shape[:2]
    if h < multiple or w < multiple:
        raise ValueError(f"image of size {h}x{w} is smaller than the required multiple {multiple}")
    return image[: h - h % multiple, : w - w % multiple]


def check_images(images) -> list[np.ndarray]:
    """Clean test images: float (H, W, C) in [0, 1], C = 1 or 3, one C for all."""
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
        check_unit_scale(image, f"test image {i}")
        out.append(image.astype(np.float32))
    return out


def check_control_range(values, what: str = "control values") -> None:
    """ValueError unless every value is finite and within +-MAX_ABS_CONTROL (0 = level A, 1 = level B)."""
    arr = np.asarray(values, np.float64)
    if arr.size and (not np.all(np.isfinite(arr)) or np.abs(arr).max() > MAX_ABS_CONTROL):
        raise ValueError(f"{what} must be finite and within [-{MAX_ABS_CONTROL:g}, {MAX_ABS_CONTROL:g}] "
                         f"(0 = level A, 1 = level B); got {arr.tolist()}")


def check_controls(controls, dim: int) -> np.ndarray:
    """A grid of global controls: (K,) for D = 1 or (K, D) -> float32 (K, D), finite, within
    +-MAX_ABS_CONTROL, non-empty."""
    arr = np.asarray(controls, np.float32)
    if arr.ndim == 1 and dim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] == 0:
        raise ValueError(f"controls must be a non-empty (K, {dim}) grid" + (" or (K,)" if dim == 1 else "")
                         + f"; got shape {np.shape(controls)}")
    check_control_range(arr, "controls")
    return arr


# ---------------------------------------------------------------------------------------------
# The control-grid evaluator


def forward_fn(model) -> Callable:
    """``f(theta0, phi, x, control_values (1, 1, 1, D)) -> output`` of a ControllableModel, pure in
    its trees (so it can be jitted once and fed any model of the same kind)."""
    if model.tuner is None:
        return lambda theta0, phi, x, c: model.network.apply({"params": theta0}, x)
    return lambda theta0, phi, x, c: model.tuner.apply(model.network, theta0, phi, x, Control(c))


@functools.lru_cache(maxsize=16)
def compiled_forward(model) -> Callable:
    """``jax.jit(forward_fn(model))``, kept per model (a ControllableModel hashes by identity), so
    repeated calls on one model compile once per input shape."""
    return jax.jit(forward_fn(model))


def scores(y, clean, border: int = 0) -> jax.Array:
    """(4, B) PSNR, SSIM, PSNR-Y, SSIM-Y of the quantised output y against clean, both (B, H, W, C)."""
    y = quantise(y)
    return jnp.stack([psnr(y, clean, border=border), ssim(y, clean, border=border),
                      psnr(y, clean, border=border, y_channel=True), ssim(y, clean, border=border, y_channel=True)])


def sweep_fn(model, strategy: str = "auto", *, border: int = 0, chunk: int = 4) -> Callable:
    """``f(x, clean, controls (K, D)) -> (K, 4, B)`` scores of ``model`` at each control.

    Every strategy compiles once per input shape; ``chunk`` is lax.map's batch size.
    """
    strategy = AUTO_STRATEGY if strategy == "auto" else strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown sweep strategy {strategy!r}; choose one of {STRATEGIES + ('auto',)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1; got {chunk}")
    trees = (model.theta0, model.phi)
    try:  # models of one kind (network, tuner) share the compiled evaluator: one compile per input shape
        f = _compiled_evaluator(model.network, model.tuner, strategy, border, chunk)
    except TypeError:  # an unhashable network or tuner: compile for this model only
        f = _compiled_evaluator.__wrapped__(model.network, model.tuner, strategy, border, chunk)
    return lambda x, clean, cs: f(*trees, x, clean, cs)


@functools.lru_cache(maxsize=32)
def _compiled_evaluator(network, tuner, strategy: str, border: int, chunk: int) -> Callable:
    """``f(theta0, phi, x, clean, controls (K, D)) -> (K, 4, B)``, jitted (see :func:`sweep_fn`)."""
    forward = forward_fn(SimpleNamespace(network=network, tuner=tuner))

    def one(theta0, phi, x, clean, c):  # c: (D,)
        y = forward(theta0, phi, x, c.reshape(1, 1, 1, -1))
        if y.shape != clean.shape:
            raise ValueError(f"the network maps inputs {x.shape} to {y.shape}, but the clean images are {clean.shape}")
        return scores(y, clean, border)

    if strategy == "vmap":
        return jax.jit(jax.vmap(one, in_axes=(None, None, None, None, 0)))
    if strategy == "map":
        return jax.jit(lambda t0, phi, x, clean, cs: jax.lax.map(lambda c: one(t0, phi, x, clean, c), cs,
                                                                 batch_size=chunk))
    single = jax.jit(one)
    return lambda t0, phi, x, clean, cs: jnp.stack([single(t0, phi, x, clean, cs[k]) for k in range(cs.shape[0])])


# ---------------------------------------------------------------------------------------------
# Result


def _grid(value, name: str, shape: tuple) -> np.ndarray:
    arr = np.asarray(value, np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {arr.shape}")
    return arr


@dataclasses.dataclass
class SweepResult:
    """Metrics of a sweep over levels x controls.

    level_grid: (L, D) degradation levels; control_grid: (K, D) controls.
    psnr, ssim, psnr_y, ssim_y: (L, K) means over the test images (PSNR in dB; 8-bit outputs).
    task: the task's dict form (degradations with their levels A at control 0, B at control 1).
    per_image: optional {metric: (L, K, N)}; input_psnr: optional (L,) PSNR of the degraded inputs
    when they have the clean size. name: the method; image_names (N,); seed, border, strategy.
    For D = 1, ``levels`` and ``alphas`` are the (L,) and (K,) vectors.
    """

    level_grid: np.ndarray
    control_grid: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    psnr_y: np.ndarray
    ssim_y: np.ndarray
    task: dict
    per_image: dict | None = None
    input_psnr: np.ndarray | None = None
    name: str = ""
    image_names: tuple = ()
    seed: int = 0
    border: int = 0
    strategy: str = ""

    def __post_init__(self):
        from ctl_jax.tasks import make_task

        self._task = make_task(self.task)
        dim = self._task.dim
        self.level_grid = np.asarray(self.level_grid, np.float64).reshape(-1, dim)
        self.control_grid = np.asarray(self.control_grid, np.float64).reshape(-1, dim)
        grid = (len(self.level_grid), len(self.control_grid))
        for m in METRICS:
            setattr(self, m, _grid(getattr(self, m), m, grid))
        if self.per_image is not None:
            if set(self.per_image) != set(METRICS):
                raise ValueError(f"per_image must have the keys {METRICS}; got {sorted(self.per_image)}")
            n = np.shape(self.per_image["psnr"])[-1]
            self.per_image = {m: _grid(a, f"per_image[{m!r}]", grid + (n,)) for m, a in self.per_image.items()}
        if self.input_psnr is not None:
            self.input_psnr = _grid(self.input_psnr, "input_psnr", grid[:1])
        self.image_names = tuple(self.image_names)

    @property
    def dim(self) -> int:
        return self.level_grid.shape[1]

    @property
    def levels(self) -> np.ndarray:
        """(L,) for D = 1, else the (L, D) grid."""
        return self.level_grid[:, 0] if self.dim == 1 else self.level_grid

    @property
    def alphas(self) -> np.ndarray:
        """(K,) for D = 1, else the (K, D) grid."""
        return self.control_grid[:, 0] if self.dim == 1 else self.control_grid

    def metric(self, name: str) -> np.ndarray:
        """The (L, K) array of one metric: "psnr", "ssim", "psnr_y" or "ssim_y"."""
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose one of {METRICS}")
        return getattr(self, name)

    def level_index(self, level) -> int:
        """Row of ``level`` (a number for D = 1, or (D,)); ValueError listing the swept levels otherwise."""
        hits = np.flatnonzero(np.all(np.isclose(self.level_grid, np.ravel(level)), axis=1))
        if hits.size == 0:
            raise ValueError(f"level {level} was not swept; levels are {self.levels.tolist()}")
        return int(hits[0])

    def best_control(self, level, metric: str = "psnr") -> np.ndarray:
        """The grid control (D,) with the highest ``metric`` at ``level`` (first one on ties)."""
        row = self.metric(metric)[self.level_index(level)]
        if np.all(np.isnan(row)):
            raise ValueError(f"{metric} at level {level} is NaN for every control")
        return self.control_grid[int(np.nanargmax(row))]

    def best_alpha(self, level, metric: str = "psnr"):
        """:meth:`best_control` as a float for D = 1."""
        best = self.best_control(level, metric)
        return float(best[0]) if self.dim == 1 else best

    def best_value(self, level, metric: str = "psnr") -> float:
        """The highest ``metric`` over the control grid at ``level``."""
        return float(np.nanmax(self.metric(metric)[self.level_index(level)]))

    def expected_alpha(self, level):
        """The linearly expected control of ``level``: (level - A) / (B - A) (a float for D = 1)."""
        c = self._task.control_for(np.ravel(level))
        return float(c[0]) if self.dim == 1 else c

    def level_label(self, level) -> str:
        """"σ=20", "q=10", "×2", or "σ=20, q=30"."""
        return self._task.label(level)

    def describe_task(self) -> str:
        t = self._task
        if not hasattr(t, "kinds"):  # the level is the control (style, perceptual SR, generation)
            return f"{t.name}: control 0 = {t.ENDPOINT_NAMES[0]}, control 1 = {t.ENDPOINT_NAMES[1]}"
        parts = [f"{k.name}: level A {k.format(a)} at control 0, level B {k.format(b)} at control 1"
                 for k, a, b in zip(t.kinds, t.level_a, t.level_b)]
        return "; ".join([f"first {n} {v:g} (fixed)" for n, v in getattr(t, "fixed", ())] + parts)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (lists of floats; NaN/inf stay floats)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["image_names"] = list(self.image_names)
        for key, value in out.items():
            if isinstance(value, np.ndarray):
                out[key] = value.tolist()
        if self.per_image is not None:
            out["per_image"] = {m: a.tolist() for m, a in self.per_image.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "SweepResult":
        return cls(**data)

    def to_json(self, indent: int | None = None) -> str:
        """JSON text; :meth:`from_json` restores an equal result (float64 values round-trip exactly)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "SweepResult":
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------------------------------
# The sweep


def sweep(model, images: Sequence[np.ndarray], levels, controls, *, seed: int = 0, border: int = 0,
          strategy: str = "auto", progress: bool = True, multiple_of: int = 2, chunk: int = 4,
          name: str | None = None, image_names: Sequence[str] = ()) -> SweepResult:
    """Evaluate a controllable model over ``controls`` at each of ``levels`` on ``images``.

    Args:
      model: a ``ctl_jax.train.runs.ControllableModel`` (``load_run``); its task degrades the inputs.
      images: clean test images, float (H, W, C) in [0, 1], C = 1 or 3; sizes may differ. Each is
        cropped (bottom/right) to a multiple of ``multiple_of`` and of every resizing level.
      levels: (L,) for D = 1 or (L, D): degradation levels (noise sigma 0-255, JPEG quality, scale).
      controls: (K,) for D = 1 or (K, D); values outside [0, 1] extrapolate.
      seed: degraded inputs depend only on (seed, image index, level) (``task.eval_input``).
      border: pixels cropped from each side before the metrics.
      strategy: "vmap", "map", "loop", or "auto"; chunk: lax.map's batch size.
      progress: one line per image to stderr; name: the method's name (default the model's).
    """
    task = model.task
    images = check_images(images)
    level_grid = task.check_levels(levels).reshape(-1, task.dim)
    control_grid = check_controls(controls, model.control_dim)
    if image_names and len(image_names) != len(images):
        raise ValueError(f"{len(image_names)} image names for {len(images)} images")
    name = model.name if name is None else name
    evaluate = sweep_fn(model, strategy, border=border, chunk=chunk)
    multiple = int(np.lcm(multiple_of, task.input_multiple(level_grid)))
    n_levels = len(level_grid)
    out = np.zeros((n_levels, len(control_grid), len(METRICS), len(images)))
    input_psnr = np.full((n_levels, len(images)), np.nan)
    start = time.perf_counter()
    for i, image in enumerate(images):
        clean = jnp.asarray(crop_to_multiple(image, multiple))
        x = jnp.stack([task.eval_input(clean, lv, seed=seed, index=i) for lv in level_grid])
        cleans = jnp.broadcast_to(clean, (n_levels,) + clean.shape)
        out[..., i] = np.asarray(evaluate(x, cleans, jnp.asarray(control_grid))).transpose(2, 0, 1)
        if x.shape == cleans.shape:
            input_psnr[:, i] = np.asarray(psnr(quantise(x), cleans, border=border))
        if progress:
            print(f"sweep {name}: image {i + 1}/{len(images)} {clean.shape[0]}x{clean.shape[1]}, {n_levels} levels "
                  f"x {len(control_grid)} controls, {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    per_image = {m: out[:, :, j, :] for j, m in enumerate(METRICS)}
    return SweepResult(
        level_grid=level_grid, control_grid=control_grid, task=task.to_dict(),
        **{m: v.mean(axis=-1) for m, v in per_image.items()}, per_image=per_image,
        input_psnr=None if np.isnan(input_psnr).all() else input_psnr.mean(axis=-1),
        name=name, image_names=tuple(image_names), seed=seed, border=border,
        strategy=AUTO_STRATEGY if strategy == "auto" else strategy)


def outputs_over_controls(model, x, controls) -> np.ndarray:
    """The 8-bit outputs for one input (H, W, C) at each control (K,) or (K, D): (K, H', W', C') float32.
    Compiled once per model and input size (:func:`compiled_forward`)."""
    forward = compiled_forward(model)
    controls = check_controls(controls, model.control_dim)
    xb = jnp.asarray(x, jnp.float32)[None]
    return np.stack([np.asarray(quantise(forward(model.theta0, model.phi, xb, jnp.asarray(c).reshape(1, 1, 1, -1)))[0])
                     for c in controls])
