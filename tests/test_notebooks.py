"""The notebooks run top to bottom on a tiny checkpoint."""

import json
import pathlib

import matplotlib

matplotlib.use("Agg")

from ctl_jax.cli import load_config
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
    config = load_config(f"{ROOT / 'experiments' / 'demo.py'}:smoke")
    config["methods"] = ["ftn-gc16"]
    run_experiment(config, tmp_path)
    monkeypatch.setenv("CTL_MODEL", str(tmp_path / "ftn-gc16"))
    monkeypatch.setenv("CTL_NOTEBOOK_SIZE", "48")
    ns = run_notebook(ROOT / "notebooks" / "explore_alpha.ipynb")
    assert ns["painted"].shape == ns["noisy"].shape
    assert 0.0 <= float(ns["similarity"]["cosine"]) <= 1.0 + 1e-6


def test_operators_notebook(tmp_path, monkeypatch):
    from ctl_jax.data.operator_pairs import prepare_operator_cache
    from ctl_jax.operator_pipeline import train_operator_model, with_overrides
    from ctl_jax.pipeline import test_images

    config = with_overrides(load_config(f"{ROOT / 'experiments' / 'operators.py'}:smoke"),
                            hyper={"preset": "norm7"})  # a cheap-tuning model
    images, names = test_images({"test": "bundled-train", "max_test_images": 2}, 3)
    prepare_operator_cache(images, names, ["l0"], tmp_path / "cache", per_image=1, crop=32, progress=False)
    train_operator_model(config, tmp_path / "cache", tmp_path / "run")
    monkeypatch.setenv("CTL_OPERATOR_MODEL", str(tmp_path / "run"))
    monkeypatch.setenv("CTL_NOTEBOOK_SIZE", "32")
    ns = run_notebook(ROOT / "notebooks" / "operators.ipynb")
    assert ns["switch_time"] > 0 and ns["full_time"] > 0
    assert ns["compare"](0.02)[2].shape == (32, 32, 3)
