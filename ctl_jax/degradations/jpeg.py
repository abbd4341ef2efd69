"""JPEG compression with Pillow (the real codec), on the host; level: quality 1..100."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ctl_jax.degradations.base import DegradationKind, per_sample, register


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode one image with Pillow's JPEG at ``quality`` (1..100).

    image: (H, W, C) uint8 or float in [0, 1], C = 1 or 3. Returns the same dtype and shape.
    """
    quality = int(JPEG.check(quality))
    as_float = np.issubdtype(image.dtype, np.floating)
    pixels = np.clip(np.round(image * 255), 0, 255).astype(np.uint8) if as_float else image
    pil = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue()))).reshape(image.shape)
    return decoded.astype(np.float32) / 255.0 if as_float else decoded


def _jpeg_batch(key, clean, levels):
    del key
    clean = np.asarray(clean, np.float32)
    return np.stack([jpeg_compress(im, int(q)) for im, q in zip(clean, per_sample(levels, len(clean)))])


JPEG = register(DegradationKind("jpeg", "quality", "q=", 1, 100, _jpeg_batch, integer=True, on_device=False))
