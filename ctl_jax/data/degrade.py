"""Degradations with a continuous level, and the level <-> alpha mapping.

Images are float32 NHWC in [0, 1]. Where each runs (DESIGN.md principle 8):
- Gaussian noise (level: sigma on the 0-255 scale) runs in JAX, on device, inside the step;
- bicubic down-sampling (level: scale s) runs in JAX, either to the low-resolution image
  (``"bicubic_lr"``, H/s x W/s) or down and back up to the input size (``"bicubic"``, the
  pre-upsampled input AdaFM uses);
- JPEG (level: quality q in 1..100) runs in the loader with Pillow, the real codec.

Level <-> alpha: a network trained at level A (alpha = 0) and tuned to level B (alpha = 1) is
expected to suit level L at the linear alpha ``(L - A) / (B - A)``. This is the "linearly
expected" alpha the FTN paper marks in its Fig. 6; the best alpha per level is measured by a sweep.
"""

from __future__ import annotations

import dataclasses
import io

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

KINDS = ("noise", "jpeg", "bicubic", "bicubic_lr")
ON_DEVICE = ("noise", "bicubic", "bicubic_lr")


def check_level(kind: str, level: float) -> None:
    """Raise a ValueError naming the valid range unless ``level`` is valid for ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {KINDS}")
    level = float(level)
    if not np.isfinite(level):
        raise ValueError(f"{kind} level must be finite; got {level}")
    if kind == "noise" and level < 0:
        raise ValueError(f"noise sigma must be >= 0 (0-255 scale); got {level}")
    if kind == "jpeg" and not (1 <= level <= 100 and level == int(level)):
        raise ValueError(f"JPEG quality must be an integer in 1..100; got {level}")
    if kind.startswith("bicubic") and (level < 1 or level != int(level)):
        raise ValueError(f"bicubic scale must be an integer >= 1; got {level}")


def add_gaussian_noise(key: jax.Array, clean: jax.Array, sigma) -> jax.Array:
    """``clean + sigma / 255 * N(0, 1)``, not clipped. sigma: scalar or (N,) per sample, 0-255 scale."""
    sigma = jnp.asarray(sigma, jnp.float32)
    if sigma.ndim == 1:
        sigma = sigma[:, None, None, None]
    return clean + (sigma / 255.0) * jax.random.normal(key, clean.shape, clean.dtype)


def bicubic_downsample(x: jax.Array, scale: int) -> jax.Array:
    """(N, H, W, C) -> (N, H/s, W/s, C) with antialiased bicubic resizing (as MATLAB ``imresize``).

    H and W must be divisible by ``scale`` (crop first, as the reference "modcrop" does).
    """
    n, h, w, c = x.shape
    if h % scale or w % scale:
        raise ValueError(f"bicubic x{scale}: height and width must be divisible by {scale}; got {h}x{w}")
    return jax.image.resize(x, (n, h // scale, w // scale, c), method="bicubic", antialias=True)


def bicubic_pre_upsampled(x: jax.Array, scale: int) -> jax.Array:
    """Down-sample by ``scale`` then up-sample back to (N, H, W, C): AdaFM's SR input."""
    return jax.image.resize(bicubic_downsample(x, scale), x.shape, method="bicubic")


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode one image with Pillow's JPEG at ``quality`` (1..100).

    image: (H, W, C) uint8 or float in [0, 1], C = 1 or 3. Returns the same dtype and shape.
    """
    check_level("jpeg", quality)
    as_float = np.issubdtype(image.dtype, np.floating)
    pixels = np.clip(np.round(image * 255), 0, 255).astype(np.uint8) if as_float else image
    pil = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    decoded = decoded.reshape(image.shape)
    return decoded.astype(np.float32) / 255.0 if as_float else decoded


@dataclasses.dataclass(frozen=True)
class Degradation:
    """A degradation kind with its two training levels: A (alpha = 0) and B (alpha = 1)."""

    kind: str
    level_a: float
    level_b: float

    def __post_init__(self):
        check_level(self.kind, self.level_a)
        check_level(self.kind, self.level_b)
        if self.level_a == self.level_b:
            raise ValueError(f"levels A and B must differ; both are {self.level_a}")

    def alpha_for(self, level: float) -> float:
        """The linearly expected alpha of ``level``: (level - A) / (B - A)."""
        return (float(level) - self.level_a) / (self.level_b - self.level_a)

    def level_for(self, alpha: float) -> float:
        """Inverse of :meth:`alpha_for`: A + alpha (B - A)."""
        return self.level_a + float(alpha) * (self.level_b - self.level_a)

    def on_device(self, key: jax.Array, clean: jax.Array, level) -> jax.Array:
        """Apply a JAX degradation (noise, bicubic) to a clean batch; jit-able with a traced sigma."""
        if self.kind == "noise":
            return add_gaussian_noise(key, clean, level)
        if self.kind == "bicubic":
            return bicubic_pre_upsampled(clean, int(level))
        if self.kind == "bicubic_lr":
            return bicubic_downsample(clean, int(level))
        raise ValueError("JPEG runs in the loader (jpeg_compress), not on device")
