"""Shared pytest setup. Runs before any test module is imported, so before jax is."""

import os

# The suite runs on the CPU unless told otherwise (JAX_PLATFORMS=cuda ... to test on a GPU).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
