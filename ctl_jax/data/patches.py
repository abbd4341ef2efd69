"""Random training patches whose every batch is a pure function of (seed, step).

A checkpoint therefore only needs the step number to resume the data stream: batch ``k`` of a
resumed run is bit-identical to batch ``k`` of an uninterrupted one, and no iterator state or
RNG state has to be saved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ctl_jax.data.images import check_unit_scale


def _check_non_negative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    return int(value)


class PatchSampler:
    """Square patches cropped at random from a list of images, optionally flipped, rotated and with
    their colour channels permuted.

    images: a non-empty sequence of (H, W, C) arrays with one C for all, each at least
      ``patch_size`` in H and W; float in [0, 1] (kept as float32; 0..255 floats are refused), or
      uint8 (kept as uint8 to save memory and scaled by 1/255 per batch).
    patch_size, batch_size: positive ints. seed: non-negative int.
    augment: if True each patch gets one of the 8 flips/rotations of the square (identity,
      rotations by 90, 180, 270 degrees, and each of those after a horizontal flip, which also
      covers the vertical flip and both transposes), all equally likely.
    channel_permute: if True each patch gets its channels in one of the C! orders (for RGB: RGB,
      RBG, GRB, GBR, BRG, BGR), all equally likely. This colour augmentation shows the network every
      hue of the training set in six versions (a red car is also a green and a blue one), so it does
      not learn to pull colours it has rarely seen towards the common ones. None (the default) means
      ``augment and C == 3``: on for colour images, off for grey ones and for stacks of channels
      that are not one RGB image (such as the input + target pairs of ``OperatorPairSampler``).

    Each patch picks its image uniformly (not by area), then a uniformly random crop position.
    """

    def __init__(self, images: Sequence[np.ndarray], patch_size: int, batch_size: int, seed: int, augment: bool = True,
                 channel_permute: bool | None = None):
        if len(images) == 0:
            raise ValueError("PatchSampler needs at least one image; got an empty list")
        self.patch_size = _check_non_negative_int("patch_size", patch_size)
        self.batch_size = _check_non_negative_int("batch_size", batch_size)
        if self.patch_size == 0 or self.batch_size == 0:
            raise ValueError(f"patch_size and batch_size must be positive; got {patch_size} and {batch_size}")
        self.seed = _check_non_negative_int("seed", seed)
        self.augment = bool(augment)
        self._images = [self._checked(i, image) for i, image in enumerate(images)]
        channel_counts = sorted({image.shape[2] for image in self._images})
        if len(channel_counts) > 1:
            raise ValueError(f"all images must have the same channel count; got a mix of {channel_counts}")
        self.channels = channel_counts[0]
        if channel_permute is None:
            channel_permute = self.augment and self.channels == 3
        self.channel_permute = bool(channel_permute)
        self._heights = np.array([image.shape[0] for image in self._images])
        self._widths = np.array([image.shape[1] for image in self._images])
        self._scales = [np.float32(1 / 255) if image.dtype == np.uint8 else None for image in self._images]

    def _checked(self, index: int, image) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3:
            raise ValueError(f"image {index}: expected an (H, W, C) array; got shape {image.shape}")
        height, width = image.shape[:2]
        if height < self.patch_size or width < self.patch_size:
            raise ValueError(
                f"image {index} is {height}x{width} (HxW), smaller than patch_size={self.patch_size}; "
                f"drop it or load the folder with min_size={self.patch_size}"
            )
        if image.dtype == np.uint8:
            return image
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"image {index}: expected float in [0, 1] or uint8; got dtype {image.dtype}")
        check_unit_scale(image, f"PatchSampler image {index}")
        return np.ascontiguousarray(image, dtype=np.float32)

    @property
    def num_images(self) -> int:
        return len(self._images)

    def batch(self, step: int) -> np.ndarray:
        """The batch for ``step``: float32 (batch_size, patch_size, patch_size, C) in [0, 1].

        A pure function of (seed, step): calling it again, or on a fresh sampler built with the
        same images and arguments, gives identical values.
        """
        return self.indexed_batch(step)[0]

    def indexed_batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """``(batch(step), which)``: also the index (batch_size,) of the image each patch came from."""
        step = _check_non_negative_int("step", step)
        rng = np.random.default_rng([self.seed, step])
        n, p = self.batch_size, self.patch_size
        which = rng.integers(0, self.num_images, size=n)
        tops = rng.integers(0, self._heights[which] - p + 1)
        lefts = rng.integers(0, self._widths[which] - p + 1)
        # Drawn even without augment, so crops do not depend on the augment flag.
        transforms = rng.integers(0, 8, size=n)
        # Drawn last and always, so turning channel_permute on or off changes nothing else.
        orders = rng.permuted(np.broadcast_to(np.arange(self.channels), (n, self.channels)), axis=1)
        out = np.empty((n, p, p, self.channels), np.float32)
        for k in range(n):
            i = which[k]
            patch = self._images[i][tops[k] : tops[k] + p, lefts[k] : lefts[k] + p]
            if self.augment:
                if transforms[k] >= 4:
                    patch = patch[:, ::-1]
                patch = np.rot90(patch, transforms[k] % 4)
            for c, source in enumerate(orders[k] if self.channel_permute else range(self.channels)):
                out[k, ..., c] = patch[..., source]  # channel by channel: faster than out[k] = patch
            if self._scales[i] is not None:
                out[k] *= self._scales[i]
        return out, which
