"""MNIST digits from the IDX files (``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``).

IDX: a big-endian header (two zero bytes, a type code, 0x08 for unsigned bytes, the number of
dimensions), one big-endian uint32 per dimension, then the values row-major.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np


def read_idx(path) -> np.ndarray:
    """An IDX file (gzip or plain) of unsigned bytes as a uint8 array of its shape."""
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read the IDX file {path}: {err}") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, the file holds {body.size} values")
    return body.reshape(shape)


def _find(folder: pathlib.Path, stem: str) -> pathlib.Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no {stem}[.gz] in {folder}")


def load_mnist(folder, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28, 1) float32 in [0, 1], labels (N,) int64) of ``split`` in ``folder``."""
    folder = pathlib.Path(folder)
    images = read_idx(_find(folder, f"{split}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{split}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"MNIST images {images.shape} and labels {labels.shape} do not match")
    return (images[..., None] / np.float32(255)).astype(np.float32), labels.astype(np.int64)
