"""Will a compiled computation fit? XLA's own memory analysis against the memory that is free.

``ctl-jax apply`` runs an image whole; a super-resolution network's activations grow with the
output (s^2 times the input's pixels), so a large photo can need more memory than the machine has.
Rather than let the process be killed, :func:`check_fits` compares what the compiled program needs
(arguments, outputs and temporaries, from ``Compiled.memory_analysis()``) with the free memory of
the device (``memory_stats`` on GPU/TPU; the free physical memory on CPU) and fails with a message
that says how much it needs and how large an input would fit.
"""

from __future__ import annotations

import math
import os

import jax

HEADROOM = 0.8  # use at most this share of the free memory


def free_memory_bytes(device=None) -> int | None:
    """Free memory of ``device`` (default: the first) in bytes, or None when it cannot be read."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def needed_bytes(compiled) -> int:
    """Arguments + outputs + temporaries of a ``jax.stages.Compiled`` (0 if XLA does not say)."""
    stats = compiled.memory_analysis()
    if stats is None:
        return 0
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes)


def check_fits(compiled, input_pixels: int, what: str = "this input", free: int | None = None) -> None:
    """MemoryError unless ``compiled`` needs at most ``HEADROOM`` of the free memory; the message gives
    the need, the free memory and the largest input (in pixels, scaling linearly) that would fit."""
    free = free_memory_bytes() if free is None else free
    need = needed_bytes(compiled)
    if free is None or need == 0 or need <= HEADROOM * free:
        return
    fits = int(input_pixels * HEADROOM * free / need)
    side = int(math.sqrt(fits))
    raise MemoryError(f"{what} needs about {need / 2 ** 30:.1f} GiB for the network at this size, and "
                      f"{free / 2 ** 30:.1f} GiB are free; inputs up to about {fits / 1e6:.2f} megapixels "
                      f"({side}x{side}) fit: crop or downscale the image, or run it in tiles")
