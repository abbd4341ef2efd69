"""One XLA device per CPU core for the trainer (ctl_jax.train.cpu_devices)."""

import os
import subprocess
import sys

import pytest

from ctl_jax.train.cpu_devices import cpu_device_count, split_cpu_into_cores

SPLIT_AND_COUNT = ("import jax; from ctl_jax.train.cpu_devices import split_cpu_into_cores; "
                   "print(split_cpu_into_cores({batches}), jax.device_count())")


@pytest.mark.parametrize("batches,cores,expected", [
    ([8, 16], 2, 2), ([6], 4, 3), ([5], 2, 1), ([8], 1, 1), ([16], 64, 8), ([12, 8], 16, 4), ([], 3, 3),
])
def test_device_count_is_the_most_that_divide_every_batch(batches, cores, expected):
    assert cpu_device_count(batches, cores) == expected


def run_python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    env.update(JAX_PLATFORMS="cpu", **env_changes)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_split_before_jax_starts_gives_that_many_devices():
    expected = cpu_device_count([4])
    assert run_python(SPLIT_AND_COUNT.format(batches=[4])) == [str(expected) if expected > 1 else "None", str(expected)]


@pytest.mark.parametrize("env", [{"JAX_NUM_CPU_DEVICES": "1"}, {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}])
def test_the_users_own_count_wins(env):
    expected = env.get("JAX_NUM_CPU_DEVICES", "3")
    assert run_python(SPLIT_AND_COUNT.format(batches=[12]), **env) == ["None", expected]


def test_split_after_jax_started_changes_nothing_and_does_not_raise():
    import jax
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()  # this process's backends are up
    before = jax.device_count()
    assert split_cpu_into_cores([before * 2]) is None
    assert jax.device_count() == before


def test_split_raises_the_collective_timeouts_without_dropping_the_users_flags():
    code = ("import os, jax; from ctl_jax.train.cpu_devices import split_cpu_into_cores; "
            "n = split_cpu_into_cores([64]); jax.numpy.zeros(1); print(n, os.environ.get('XLA_FLAGS', ''))")
    out = run_python(code, XLA_FLAGS="--xla_cpu_collective_timeout_seconds=99")
    if out[0] == "None":  # a one-core machine: nothing to split
        return
    assert "--xla_cpu_collective_timeout_seconds=99" in out and "--xla_cpu_collective_timeout_seconds=3600" not in out
    assert "--xla_cpu_collective_call_terminate_timeout_seconds=3600" in out
