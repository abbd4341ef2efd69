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


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def style_smoke_run(tmp_path_factory):
    """experiments/style.py:smoke through ``run_experiment`` with two methods (FTN, and Dynamic-Net at
    its three places): (experiment folder, the curves it returned). Shared by the style report,
    ``apply`` and notebook tests."""
    from ctl_jax.config import load_config
    from ctl_jax.pipeline import run_experiment

    config = load_config("experiments/style.py:smoke")
    config["methods"] = [m for m in config["methods"] if m in ("ftn",) or isinstance(m, dict)]
    assert len(config["methods"]) == 2
    out = tmp_path_factory.mktemp("style") / "out"
    return out, run_experiment(config, out)
