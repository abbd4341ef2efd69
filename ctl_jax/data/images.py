"""Reading and writing image files as float32 (H, W, C) arrays in [0, 1], C = 1 or 3.

Conversions (all through Pillow, so results match what other Pillow code sees):

- the EXIF orientation of a file is applied on reading (a photo a viewer shows upright comes out
  upright; Pillow's ``ImageOps.exif_transpose``);
- to 3 channels, grey is replicated into R, G and B;
- to 1 channel, colour becomes luma with Pillow's ``"L"`` conversion
  (ITU-R 601: L = 0.299 R + 0.587 G + 0.114 B, rounded to 8 bits);
- an alpha channel (RGBA, LA, palette with transparency) is composited over **white**, as an
  image viewer shows it. Dropping alpha instead would expose whatever colour the encoder left in
  fully transparent pixels, often black or garbage;
- palette ("P") and other colour modes (CMYK, YCbCr, ...) are converted to RGB first;
- 16-bit grey PNG/TIFF (Pillow modes ``I;16*``) keep their 16 bits: value / 65535. Pillow
  mode ``I`` (32-bit integer) is taken as 16-bit data too and clipped, and mode ``F``
  (32-bit float) as already in [0, 1] and clipped. Pillow reduces 16-bit-per-channel *colour*
  PNGs to 8 bits on opening (it keeps the high byte), so those come out with 8-bit precision.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ctl_jax.files import write_atomic

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CHANNELS = (1, 3)

_HIGH_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_WHITE = (255, 255, 255, 255)


class UnreadableImageError(ValueError):
    """An image file that Pillow cannot open or decode (corrupt, truncated, not an image)."""


def check_channels(channels: int) -> None:
    """Raise a ValueError unless ``channels`` is 1 (grey) or 3 (RGB)."""
    if channels not in CHANNELS:
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels!r}")


# Model inputs may carry unclipped noise and outputs may overshoot before clipping; but not this far:
# noise of sigma 255 (the 0-255 scale's top level) has standard deviation 1 on the [0, 1] scale.
LOOSE_LIMIT = 10.0


def check_unit_scale(image, what: str = "the image", *, strict: bool = True) -> None:
    """Raise a ValueError when a float image is not on the [0, 1] scale (e.g. 0..255 values).

    strict: every value must lie in [0, 1] (clean images). Otherwise (degraded inputs with
    unclipped noise, network outputs before clipping) only values beyond
    [-LOOSE_LIMIT, 1 + LOOSE_LIMIT] are refused. NaN is not checked here.
    """
    lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
    low, high = (0.0, 1.0) if strict else (-LOOSE_LIMIT, 1.0 + LOOSE_LIMIT)
    if lo < low or hi > high:
        hint = "; for 0..255 images divide by 255" if hi > 2 else ""
        raise ValueError(f"{what}: float images must be on the [0, 1] scale; found values in "
                         f"[{lo:.4g}, {hi:.4g}]{hint}")


def _has_alpha(image: Image.Image) -> bool:
    return "A" in image.getbands() or image.mode in ("RGBa", "La") or "transparency" in image.info


def _high_bit_grey(image: Image.Image) -> np.ndarray:
    """(H, W) float32 in [0, 1] from a 16-bit, 32-bit integer or float grey image."""
    values = np.asarray(image).astype(np.float32)
    if image.mode != "F":
        values /= 65535.0
    return np.clip(values, 0.0, 1.0)


def is_grey(image: Image.Image) -> bool:
    """True for a one-channel Pillow image (with or without alpha; 1-bit, 8-bit or high bit depth)."""
    return image.mode in ("1", "L", "LA", "La") + _HIGH_BIT_GREY


def convert_pil(image: Image.Image, channels: int) -> np.ndarray:
    """A decoded Pillow image -> float32 (H, W, channels) in [0, 1] (conversions: module doc)."""
    check_channels(channels)
    if image.mode in _HIGH_BIT_GREY:
        grey = _high_bit_grey(image)[..., None]
        return np.repeat(grey, channels, axis=-1) if channels == 3 else grey
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    if image.mode not in ("L", "RGB"):
        image = image.convert("L" if image.mode == "1" else "RGB")
    image = image.convert("L" if channels == 1 else "RGB")
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[..., None] if channels == 1 else pixels


def open_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file with Pillow, upright: its EXIF orientation applied (as a viewer shows it).

    Returns a decoded image independent of the file. Raises FileNotFoundError if ``path`` does
    not exist, IsADirectoryError if it is a folder, and UnreadableImageError (a ValueError) naming
    the path if Pillow cannot decode it (empty, corrupt, truncated, not an image).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            return ImageOps.exif_transpose(image)  # a copy, transposed or not
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(f"cannot read image {path}: {err}") from err


def read_image(path: str | os.PathLike, channels: int) -> np.ndarray:
    """Read a PNG, JPEG, BMP or TIFF file as float32 (H, W, channels) in [0, 1].

    channels: 1 (grey) or 3 (RGB); see the module docstring for the conversions.
    The EXIF orientation tag, if any, is applied (the array is the image a viewer shows).
    Raises FileNotFoundError if ``path`` does not exist, IsADirectoryError if it is a folder, and
    UnreadableImageError (a ValueError) naming the path if Pillow cannot decode it (corrupt,
    truncated, not an image).
    """
    check_channels(channels)
    return convert_pil(open_image(path), channels)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (not recursive), sorted by name.

    Image files are those whose suffix, in any case, is one of ``SUFFIXES``.
    Raises FileNotFoundError if the folder is missing, NotADirectoryError if it is a file, and
    ValueError naming the folder and the accepted suffixes if it holds no image file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"expected a folder of images, got a file: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not paths:
        raise ValueError(f"no image files in {folder}; expected files ending in {', '.join(SUFFIXES)}")
    return paths


def iter_folder(folder: str | os.PathLike, channels: int, min_size: int = 0) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield ``(path, image)`` for each usable image in ``folder``, in ``list_images`` order.

    image: float32 (H, W, channels) in [0, 1]. Skipped, each with a ``warnings.warn`` naming the
    file: files Pillow cannot decode, and images whose height or width is below ``min_size``
    (so that every image yielded can give a min_size x min_size patch).
    """
    check_channels(channels)
    for path in list_images(folder):
        try:
            image = read_image(path, channels)
        except UnreadableImageError as err:
            warnings.warn(f"skipping unreadable image {path}: {err.__cause__}", stacklevel=2)
            continue
        height, width = image.shape[:2]
        if height < min_size or width < min_size:
            warnings.warn(
                f"skipping {path}: {height}x{width} (HxW) is smaller than min_size={min_size}", stacklevel=2
            )
            continue
        yield path, image


def load_folder(folder: str | os.PathLike, channels: int, min_size: int = 0) -> list[np.ndarray]:
    """Read every usable image in ``folder``: a list of float32 (H, W, channels) arrays in [0, 1].

    Unreadable files and images smaller than ``min_size`` in height or width are skipped with a
    warning naming each (see ``iter_folder``). Raises ValueError naming the folder if no usable
    image remains.
    """
    images = [image for _, image in iter_folder(folder, channels, min_size)]
    if not images:
        raise ValueError(
            f"no usable image in {folder}: every image file was unreadable or smaller than "
            f"min_size={min_size} (see the warnings above)"
        )
    return images


WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def check_output_suffix(path: str | os.PathLike) -> str:
    """The Pillow format ``write_image`` uses for ``path`` (by its suffix, any case); ValueError otherwise."""
    fmt = WRITE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {path}: unsupported suffix {Path(path).suffix!r}; "
                         f"use one of {', '.join(WRITE_FORMATS)}")
    return fmt


def write_image(path: str | os.PathLike, array: np.ndarray, *, overwrite: bool = False, quality: int = 95) -> None:
    """Write a float (H, W, 1|3) array in [0, 1] as an 8-bit PNG, JPEG, BMP or TIFF, chosen by suffix.

    Values are scaled by 255, rounded and clipped to 0..255. ``quality`` (1..100) is used for JPEG
    only. The file is written atomically (``ctl_jax.files.write_atomic``): a failed write leaves
    the file that was there before intact. Raises FileExistsError naming the path if it exists
    and ``overwrite`` is False, and ValueError for arrays on the 0..255 scale (see ``check_unit_scale``).
    """
    fmt = check_output_suffix(path)
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[-1] not in CHANNELS:
        raise ValueError(f"expected an (H, W, 1) or (H, W, 3) array; got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"expected a float array in [0, 1]; got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"cannot write {path}: the array holds NaN or infinite values")
    check_unit_scale(array, f"the image for {path}", strict=False)
    pixels = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    options = {"quality": int(quality)} if fmt == "JPEG" else {}
    write_atomic(path, lambda file: image.save(file, format=fmt, **options), overwrite=overwrite)


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central size x size window (or the whole image along axes shorter than size)."""
    h, w = image.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[top:top + size, left:left + size]
