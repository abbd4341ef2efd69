"""One XLA device per CPU core, so that the data-parallel trainer keeps every core busy.

XLA:CPU runs one program on one device with intra-op threads that parallelise the convolutions well
but many of the fused elementwise loops (the AdaFM slots' depthwise shifted sums above all) poorly.
Splitting the host into N devices gives each core its own shard of the batch, the way the trainer
shards over GPUs (``ctl_jax.train.loop.data_parallel_mesh``), with a compiled program no larger than
one device's. Measured in experiments/README.md ("Training step speed"): the paper-size AdaFM stage
2 steps about 1.6x faster on 2 cores and still compiles in one batch's time.

The count is fixed when JAX starts its CPU backend, so :func:`split_cpu_into_cores` must run before
the first JAX operation; the ``ctl-jax`` training commands call it. A user's own choice wins
(``JAX_NUM_CPU_DEVICES``, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` or
``jax.config.update("jax_num_cpu_devices", N)``), and ``JAX_NUM_CPU_DEVICES=1`` turns it off.
"""

from __future__ import annotations

import os

import jax

MAX_CPU_DEVICES = 8  # measured up to 2 (the 2-core machine here); more cores get at most this many
# XLA:CPU aborts the process when one device reaches a collective (the gradient all-reduce) more than
# 40 s after another, which happened on a 2-core machine that other jobs loaded heavily. All devices
# are threads of one process, so a late one is slow, not lost: wait up to an hour.
COLLECTIVE_TIMEOUT_FLAGS = ("--xla_cpu_collective_call_terminate_timeout_seconds=3600",
                            "--xla_cpu_collective_timeout_seconds=3600")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def user_chose_cpu_devices() -> bool:
    """True if the CPU device count was set by the user (environment, XLA flag or jax.config)."""
    return ("JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
            or jax.config.jax_num_cpu_devices != -1)


def cpu_device_count(batch_sizes, cores: int | None = None) -> int:
    """The most devices, at most ``min(cores, MAX_CPU_DEVICES)``, that divide every batch size.

    ``batch_sizes``: the global batch sizes the process will train with (each device gets an equal
    share); ``cores`` defaults to :func:`usable_cores`. E.g. batches (8, 16) on 2 cores -> 2; batch 6
    on 4 cores -> 3; batch 5 on 2 cores -> 1.
    """
    cores = min(usable_cores() if cores is None else cores, MAX_CPU_DEVICES)
    return max(n for n in range(1, cores + 1) if all(b % n == 0 for b in batch_sizes))


def split_cpu_into_cores(batch_sizes) -> int | None:
    """Give the CPU backend :func:`cpu_device_count` devices, with the cross-device timeouts raised
    (``COLLECTIVE_TIMEOUT_FLAGS``); returns the count set, or None if nothing was changed (the user
    chose a count, one device is the answer, or JAX has already started its backends, as in a
    notebook or a test that ran JAX before calling)."""
    if user_chose_cpu_devices():
        return None
    count = cpu_device_count(batch_sizes)
    if count == 1:
        return None
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # backends already initialised: their device count stays
        return None
    flags = os.environ.get("XLA_FLAGS", "")
    extra = [f for f in COLLECTIVE_TIMEOUT_FLAGS if f.split("=")[0] not in flags]
    if extra:  # read when the backend starts, which has not happened yet
        os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()
    return count
