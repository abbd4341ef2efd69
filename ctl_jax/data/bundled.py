"""A small default dataset that needs no download: photographs shipped inside scikit-image.

Every image named here is a file inside the scikit-image wheel (checked with 0.26, with the
network unavailable and without ``pooch``), so loading never fetches anything.

Fixed split (sizes are H x W):
- test (2): ``camera`` (512x512 grey) and ``chelsea`` (300x451 colour), one grey and one
  colour photograph. ``skimage.data.cat`` is the same picture as ``chelsea``, so it is unused.
- train (10): ``astronaut`` 512x512, ``coffee`` 400x600, ``rocket`` 427x640, ``motorcycle_left``
  500x741, ``immunohistochemistry`` 512x512 (colour); ``moon``, ``coins`` 303x384, ``brick``,
  ``grass``, ``gravel`` (grey, 512x512 unless stated; the last three are textures).

This is enough for smoke tests and short demos, not for training a competitive model.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ctl_jax.data.images import check_channels, convert_pil

TEST_NAMES = ("camera", "chelsea")
TRAIN_NAMES = (
    "astronaut", "coffee", "rocket", "motorcycle_left", "immunohistochemistry",
    "moon", "coins", "brick", "grass", "gravel",
)
SPLITS = {"train": TRAIN_NAMES, "test": TEST_NAMES}


def _load(data, name: str) -> np.ndarray:
    if name == "motorcycle_left":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


def bundled_images(split: str, channels: int) -> list[np.ndarray]:
    """The bundled images of ``split`` ("train" or "test"), in the order of its names.

    Returns a list of float32 (H, W, channels) arrays in [0, 1], converted as ``read_image`` does
    (grey replicated to 3 channels; colour to 1 channel by Pillow's ITU-R 601 luma).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}; got {split!r}")
    check_channels(channels)
    try:
        from skimage import data
    except ImportError as err:
        raise ImportError("the bundled images come from scikit-image: pip install scikit-image") from err
    return [convert_pil(Image.fromarray(_load(data, name)), channels) for name in SPLITS[split]]
