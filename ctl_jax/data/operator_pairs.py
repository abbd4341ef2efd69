"""Training pairs for parameterised operators: a disk cache of (input, target, parameter) and a
deterministic sampler over it.

Filters (L0, WLS, RTV, ...) are slow, so ``prepare_operator_cache`` runs them once: for every
image and operator it draws ``per_image`` parameter values (the operator's log or linear rule),
computes the pair and writes ``<image>__<operator>__<j>.npz`` (uint8 input and target, the value).
A rerun skips files that exist and read back whole (a corrupt one is rewritten, with a warning
naming it), so an interrupted preparation continues where it stopped; the settings are recorded
in ``cache.json`` and a rerun with other settings is refused. For a filter the input is the image and the target the filtered image; for a restoration operator the input
is the degraded image and the target the clean one.

``OperatorPairSampler.batch(step) -> (inputs, targets, gammas)`` is a pure function of
(seed, step), like ``PatchSampler``: input and target get the same crop and flip/rotation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctl_jax.data.images import centre_crop, check_unit_scale
from ctl_jax.data.patches import PatchSampler
from ctl_jax.files import write_atomic
from ctl_jax.tuners.gamma import GammaSpace

CACHE_META = "cache.json"


def _to_uint8(image) -> np.ndarray:
    return np.round(np.clip(np.asarray(image, np.float32), 0, 1) * 255).astype(np.uint8)


def operator_pair(operator: str, image: np.ndarray, value: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) float32 (H, W, C) for one operator at one parameter value."""
    from ctl_jax.operators import get_operator

    spec = get_operator(operator)
    value = spec.check(value)
    if spec.kind == "restoration":
        return np.asarray(spec.apply(image, value, seed), np.float32), image
    return image, np.asarray(spec.apply(image, value), np.float32)


def check_positive_int(name: str, value) -> int:
    """``value`` as an int; ValueError naming ``name`` unless it is a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1; got {value!r}")
    return int(value)


def read_pair(path: Path) -> "OperatorPair":
    """One cached pair file; a ValueError naming ``path`` when it is corrupt (truncated, not an npz,
    keys or shapes missing), saying how to rewrite it."""
    rewrite = "delete it and re-run `ctl-jax prepare-ops` with the same settings to rewrite it"
    if not zipfile.is_zipfile(path):  # truncated, empty or other bytes (np.load would try them as a pickle)
        raise ValueError(f"corrupt operator cache file {path} (not an .npz archive, {path.stat().st_size} bytes); "
                         f"{rewrite}")
    try:
        with np.load(path) as f:
            pair = OperatorPair(np.asarray(f["input"]), np.asarray(f["target"]), str(f["operator"]), float(f["value"]))
    except Exception as err:  # zipfile.BadZipFile (bad CRC), KeyError, ValueError, ...
        reason = (str(err).splitlines() or [""])[0]
        raise ValueError(f"corrupt operator cache file {path} ({type(err).__name__}: {reason}); {rewrite}") from None
    if (pair.input.ndim != 3 or pair.input.shape != pair.target.shape or 0 in pair.input.shape
            or pair.input.dtype != np.uint8 or not pair.operator):
        raise ValueError(f"corrupt operator cache file {path} (input {pair.input.shape} {pair.input.dtype}, "
                         f"target {pair.target.shape}); {rewrite}")
    return pair


def _reusable(path: Path) -> bool:
    """True when a pair file from an earlier run is intact; a corrupt one is reported (and rewritten)."""
    if not path.exists():
        return False
    try:
        read_pair(path)
    except ValueError as err:
        warnings.warn(f"rewriting {path}: {str(err).split(';')[0]}", stacklevel=3)
        return False
    return True


def _write_pair(path: Path, inp, target, value: float, operator: str) -> None:
    def savez(file):
        np.savez(file, input=_to_uint8(inp), target=_to_uint8(target), value=value, operator=operator)

    write_atomic(path, savez)  # a kill or a full disk never leaves a half-written pair


def prepare_operator_cache(images: Sequence[np.ndarray], names: Sequence[str], operators: Sequence[str], out_dir,
                           per_image: int = 4, crop: int = 128, seed: int = 0, values: Sequence[float] | None = None,
                           grid: int | None = None, progress: bool = True) -> Path:
    """Compute and store the training pairs; returns ``out_dir``. See the module docstring.

    images: float32 (H, W, C) in [0, 1], each center-cropped to at most ``crop`` x ``crop``;
    names: one unique file-name stem per image. Instead of drawing ``per_image`` random values,
    ``values`` uses exactly these for every image and operator (test sets, fixed-parameter
    training) and ``grid`` uses each operator's ``spec.grid(grid)``: values shared by all images,
    which one-gamma-per-batch training needs. per_image, crop and grid must be >= 1.
    A rerun checks the pair files already there and rewrites corrupt ones (with a warning naming each).
    """
    from ctl_jax.operators import get_operator

    if len(images) == 0:
        raise ValueError("prepare_operator_cache needs at least one image")
    if len(images) != len(names) or len(set(names)) != len(names):
        raise ValueError("need one unique name per image")
    if values is not None and grid is not None:
        raise ValueError("give values or grid, not both")
    crop = check_positive_int("crop", crop)
    if grid is not None:
        grid = check_positive_int("grid", grid)
    elif values is None:
        per_image = check_positive_int("per_image", per_image)
    elif len(values) == 0:
        raise ValueError("values must hold at least one parameter value")
    for i, image in enumerate(images):
        check_unit_scale(image, f"image {names[i]}")
    specs = [get_operator(op) for op in operators]
    if values is not None:
        values = [float(v) for v in values]
        fixed = {spec.name: [spec.check(v) for v in values] for spec in specs}
        per_image = len(values)
    elif grid is not None:
        fixed = {spec.name: spec.grid(grid) for spec in specs}
    else:
        fixed = None
    out_dir = Path(out_dir)
    settings = {"per_image": int(per_image), "crop": int(crop), "seed": int(seed), "values": values}
    if grid is not None:
        settings = {**settings, "per_image": None, "grid": int(grid)}
    meta_path = out_dir / CACHE_META
    if meta_path.exists():
        found = json.loads(meta_path.read_text())
        if found != settings:
            raise ValueError(f"{out_dir} holds a cache made with {found}; requested {settings}. "
                             "Use another folder or the same settings.")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(meta_path, json.dumps(settings))
    jobs = [(i, spec, j) for i in range(len(images)) for spec in specs
            for j in range(len(fixed[spec.name]) if fixed else per_image)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=f"preparing {', '.join(operators)}", unit="pair")
    for i, spec, j in jobs:
        path = out_dir / f"{names[i]}__{spec.name}__{j:02d}.npz"
        if not _reusable(path):
            # One stream per (image, operator): the values do not depend on which operators run together.
            rng = np.random.default_rng([seed, zlib.crc32(names[i].encode()), zlib.crc32(spec.name.encode())])
            value = fixed[spec.name][j] if fixed else float(spec.sample(rng, per_image)[j])
            image = centre_crop(np.asarray(images[i], np.float32), crop)
            pair_seed = int(rng.integers(2 ** 31))
            inp, target = operator_pair(spec.name, image, value, pair_seed + j)
            _write_pair(path, inp, target, value, spec.name)
        if bar:
            bar.update()
    if bar:
        bar.close()
    return out_dir


@dataclasses.dataclass(frozen=True)
class OperatorPair:
    input: np.ndarray   # uint8 (H, W, C)
    target: np.ndarray  # uint8 (H, W, C)
    operator: str
    value: float


def load_operator_cache(cache_dirs, operators: Sequence[str] | None = None) -> list[OperatorPair]:
    """The cached pairs of ``operators`` (all when None) in one cache folder or a sequence of them,
    sorted by file name."""
    dirs = [Path(cache_dirs)] if isinstance(cache_dirs, (str, os.PathLike)) else [Path(d) for d in cache_dirs]
    for cache_dir in dirs:
        if not (cache_dir / CACHE_META).exists():
            raise FileNotFoundError(f"{cache_dir} is not an operator cache (no {CACHE_META}); "
                                    "make one with `ctl-jax prepare-ops`")
    pairs = []
    for path in sorted((p for d in dirs for p in d.glob("*__*__*.npz")), key=lambda p: p.name):
        if path.name.endswith(".tmp.npz"):
            continue
        operator = path.name.split("__")[1]
        if operators is not None and operator not in operators:
            continue
        pairs.append(read_pair(path))
    missing = set(operators or ()) - {p.operator for p in pairs}
    if not pairs or missing:
        where = dirs[0] if len(dirs) == 1 else [str(d) for d in dirs]
        raise ValueError(f"{where} has no pairs for {sorted(missing) or list(operators or [])}")
    return pairs


class OperatorPairSampler:
    """Batches ``(inputs, targets, gammas)`` of random crops of cached pairs.

    inputs, targets: float32 (B, P, P, C) in [0, 1]; gammas: float32 (B, D), each pair's
    ``gamma_space.encode(operator, value)``.

    ``shared_gamma=True`` makes every batch hold one (operator, value): each step draws one of the
    cached (operator, value) groups, then its crops. The network then needs one set of weights per
    step instead of one per sample, which trains several times faster (benchmarks/hyper_gamma.py);
    it needs a cache made with fixed ``values`` shared by the images.
    """

    def __init__(self, pairs: Sequence[OperatorPair], gamma_space: GammaSpace, patch_size: int, batch_size: int,
                 seed: int, augment: bool = True, shared_gamma: bool = False):
        if not pairs:
            raise ValueError("OperatorPairSampler needs at least one pair")
        self.gamma_space, self.shared_gamma = gamma_space, shared_gamma
        self.channels = pairs[0].input.shape[-1]
        self.batch_size, self.patch_size, self.seed = batch_size, patch_size, seed
        groups = {}
        for p in pairs:
            groups.setdefault((p.operator, p.value) if shared_gamma else None, []).append(p)
        if shared_gamma and len(groups) == len(pairs) > 1:
            raise ValueError("shared_gamma needs several images per (operator, value): prepare the cache with "
                             "fixed values (prepare_operator_cache(..., values=[...]))")
        self._groups = [(PatchSampler([np.concatenate([p.input, p.target], -1) for p in group], patch_size,
                                      batch_size, seed, augment),
                         np.stack([gamma_space.encode(p.operator, p.value) for p in group]))
                        for _, group in sorted(groups.items(), key=lambda kv: str(kv[0]))]

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # a child stream of (seed, step), independent of the one PatchSampler crops with
        child = np.random.SeedSequence([self.seed, step]).spawn(1)[0]
        group = int(np.random.default_rng(child).integers(len(self._groups)))
        patches, gammas = self._groups[group]
        both, which = patches.indexed_batch(step)
        return both[..., :self.channels], both[..., self.channels:], gammas[which]
