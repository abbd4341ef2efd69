"""The notebooks run top to bottom on a tiny checkpoint."""

import json
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import matplotlib

matplotlib.use("Agg")

from ctl_jax.pipeline import run_experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_notebook(path: pathlib.Path) -> dict:
    """Execute every code cell in one namespace (no kernel needed); returns the namespace."""
    namespace = {"__name__": "__main__"}
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}[cell {i}]", "exec"), namespace)
    return namespace


def test_explore_alpha_notebook(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo", ROOT / "experiments" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    config = demo.get_config("smoke")
    config["methods"] = ["ftn-gc16"]
    run_experiment(config, tmp_path)
    monkeypatch.setenv("CTL_MODEL", str(tmp_path / "ftn-gc16"))
    monkeypatch.setenv("CTL_NOTEBOOK_SIZE", "48")
    ns = run_notebook(ROOT / "notebooks" / "explore_alpha.ipynb")
    assert ns["painted"].shape == ns["noisy"].shape
    assert 0.0 <= float(ns["similarity"]["cosine"]) <= 1.0 + 1e-6
