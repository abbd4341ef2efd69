"""Shared pytest setup. Runs before any test module is imported, so before jax is."""

import os

# The suite runs on the CPU unless told otherwise (JAX_PLATFORMS=cuda ... to test on a GPU).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

# Start the backends now, with the user's device count (one CPU device unless XLA_FLAGS or
# JAX_NUM_CPU_DEVICES say otherwise): the CLI commands that tests call in this process would
# otherwise split the CPU into one device per core (ctl_jax.train.cpu_devices) for every later test.
# Subprocess tests get the split as users do.
jax.devices()
