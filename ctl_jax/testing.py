"""Small helpers shared by the tests: seeded random images, noisy copies, image files, tiny networks.

Everything is deterministic in its ``seed``. Images are float32 in [0, 1], laid out (..., H, W, C)
like the rest of the library. Not imported by ``ctl_jax`` itself: ``from ctl_jax import testing``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from PIL import Image

from ctl_jax.nets.dncnn import DnCNN


def random_image(shape, seed=0) -> np.ndarray:
    """Uniform float32 pixels in [0, 1) of the given shape, e.g. (H, W, C) or (N, H, W, C)."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def random_images(sizes, channels: int = 3, seed=0) -> list[np.ndarray]:
    """One :func:`random_image` per ``(H, W)`` in ``sizes``, all drawn from one generator."""
    rng = np.random.default_rng(seed)
    return [rng.random((h, w, channels), dtype=np.float32) for h, w in sizes]


def add_noise(image, sigma: float, seed=0) -> np.ndarray:
    """``image`` plus Gaussian noise of standard deviation ``sigma`` (on the [0, 1] scale), clipped to
    [0, 1], as float32. ``seed`` may also be a ``np.random.Generator``, which is then drawn from."""
    rng = np.random.default_rng(seed)
    return np.clip(image + sigma * rng.standard_normal(np.shape(image)), 0, 1).astype(np.float32)


def noisy_pair(shape, sigma: float = 0.1, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy)``: a :func:`random_image` and an :func:`add_noise` copy of it."""
    rng = np.random.default_rng(seed)
    clean = rng.random(shape, dtype=np.float32)
    return clean, add_noise(clean, sigma, rng)


def save_pixels(path, pixels, **save_kwargs) -> Path:
    """Write an integer pixel array (uint8 or uint16; (H, W) grey or (H, W, C)) with Pillow, exactly
    as given; the format follows the suffix of ``path``, ``save_kwargs`` go to ``Image.save``
    (e.g. ``quality=95``). Returns ``path`` as a Path."""
    path = Path(path)
    Image.fromarray(np.asarray(pixels)).save(path, **save_kwargs)
    return path


def init_params(model, *inputs, seed: int = 0):
    """``model.init(jax.random.key(seed), *inputs)["params"]``."""
    return model.init(jax.random.key(seed), *inputs)["params"]


def tiny_dncnn(channels: int = 1, depth: int = 3, features: int = 8, adafm_kernel: int | None = None,
               seed: int = 0):
    """``(model, params)``: a small :class:`~ctl_jax.nets.dncnn.DnCNN`, initialised for
    ``channels``-channel images (any H and W)."""
    model = DnCNN(channels=channels, depth=depth, features=features, adafm_kernel=adafm_kernel)
    return model, init_params(model, np.zeros((1, 8, 8, channels), np.float32), seed=seed)


def perturb(tree, seed: int = 1, scale: float = 0.01):
    """``tree`` plus Gaussian noise of standard deviation ``scale`` on every leaf: a trained-looking
    copy of an initialisation (e.g. a tuner's phi, so that theta1 differs from theta0)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def corrupt_checkpoint(workdir, step: int) -> None:
    """Overwrite the array data of checkpoint ``step``'s trainable trees in run folder ``workdir``
    (orbax's ``d/`` chunk files) with bytes that are not a checkpoint; the metadata stays."""
    from ctl_jax.train.checkpoint import checkpoint_dir

    for f in (checkpoint_dir(workdir) / str(step) / "trainable").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(b"not a checkpoint")
