"""A small default dataset that needs no download: pictures shipped inside scikit-image.

Every image named here is a file inside the scikit-image wheel (checked with 0.26, with the
network unavailable and without ``pooch``), so loading never fetches anything.

Fixed split (sizes are H x W), chosen for colour coverage: a denoiser trained on few colours pulls
unfamiliar ones towards those it knows (a green comes out grey-brown), so the training set holds
saturated reds, oranges, blues and greens and few grey pixels, and the test set is all colour.

- test (3): ``logo`` 500x500 (flat saturated green and orange areas with fine drawing on them; a
  graphic), ``astronaut`` 512x512 (skin, an orange suit, a red/white/blue flag), ``chelsea``
  300x451 (a ginger cat with yellow-green eyes; last, as notebooks and report figures show the last
  test image). ``skimage.data.cat`` is the same picture as ``chelsea``, so it is unused.
- train (7): ``coffee`` 400x600, ``rocket`` 427x640, ``motorcycle_left`` 500x741,
  ``immunohistochemistry`` 512x512, ``retina`` 1411x1411, ``colorwheel`` 370x371 (every hue at every
  saturation, a synthetic image: the training set's saturated greens, yellows and cyans), and one
  grey texture, ``grass`` 512x512.

The training set is chosen for colour coverage (saturated greens, yellows, cyans, skin tones) and
``PatchSampler`` permutes the colour channels of every patch, so each hue is seen in six versions;
experiments/README.md has the colour statistics and the colour check they fixed.

Left out: ``hubble_deep_field`` (nearly all black), ``stereo_motorcycle``'s right view (the left one's
scene again), the grey photos ``camera``, ``moon``, ``coins`` and textures ``brick``, ``gravel``, and
every image that scikit-image would download (``skin``, ``lily``, ...).

This is enough for smoke tests and short demos, not for training a competitive model.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ctl_jax.data.images import check_channels, convert_pil

TEST_NAMES = ("logo", "astronaut", "chelsea")
TRAIN_NAMES = ("coffee", "rocket", "motorcycle_left", "immunohistochemistry", "retina", "colorwheel", "grass")
SPLITS = {"train": TRAIN_NAMES, "test": TEST_NAMES}


def _load(data, name: str) -> np.ndarray:
    if name == "motorcycle_left":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()  # logo is RGBA, fully opaque: convert_pil drops the alpha


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
