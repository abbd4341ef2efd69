"""The notebooks run top to bottom on a tiny checkpoint."""

import json
import pathlib
import re

import matplotlib
import numpy as np

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


PUBLIC_IMPORTS = ("import ctl_jax as ctl", "from ctl_jax.train.runs import load_run", "from ctl_jax.eval.sweep import")


def ctl_imports(path: pathlib.Path) -> list[str]:
    """The lines of the notebook's code cells that import from ctl_jax."""
    lines = [line.strip() for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"
             for line in "".join(cell["source"]).splitlines()]
    return [line for line in lines if re.match(r"(from|import) ctl_jax\b", line)]


def test_explore_alpha_notebook_uses_the_public_api_only():
    imports = ctl_imports(ROOT / "notebooks" / "explore_alpha.ipynb")
    assert imports and all(line.startswith(PUBLIC_IMPORTS) for line in imports), imports


def test_operators_notebook_imports():
    # the public API plus the hypernetwork's trunk/head split for the switching-time demo
    imports = ctl_imports(ROOT / "notebooks" / "operators.ipynb")
    allowed = PUBLIC_IMPORTS + ("from ctl_jax.tuners.hyper import hyper_head, hyper_trunk",)
    assert imports and all(line.startswith(allowed) for line in imports), imports


def test_style_notebook_imports():
    imports = ctl_imports(ROOT / "notebooks" / "style.ipynb")
    allowed = PUBLIC_IMPORTS + ("from ctl_jax.eval.style import",)
    assert imports and all(line.startswith(allowed) for line in imports), imports


def test_style_notebook(style_smoke_run, monkeypatch):
    """On the smoke style run (FTN): the slider's interpolated parameters give the model's own output,
    a ramp map moves from style A at the left edge to style B at the right, the curves are finite."""
    out, _ = style_smoke_run
    monkeypatch.setenv("CTL_STYLE_MODEL", str(out / "ftn"))
    monkeypatch.setenv("CTL_NOTEBOOK_SIZE", "40")
    ns = run_notebook(ROOT / "notebooks" / "style.ipynb")
    model, x = ns["model"], ns["x"]
    assert x.shape == (1, 40, 40, 3)  # the astronaut (square), longer side 40
    for alpha in (0.0, 1.0):
        np.testing.assert_allclose(ns["stylise"](alpha), np.clip(np.asarray(model(x, alpha))[0], 0, 1), atol=1e-5)
    ramp = ns["painted"]["ramp"]
    a, b = ns["stylise"](0.0), ns["stylise"](1.0)
    # the left edge follows style A's output, the right edge style B's (the ramp is 0 and 1 there)
    assert np.abs(ramp[:, :2] - a[:, :2]).mean() < np.abs(ramp[:, :2] - b[:, :2]).mean()
    assert np.abs(ramp[:, -2:] - b[:, -2:]).mean() < np.abs(ramp[:, -2:] - a[:, -2:]).mean()
    assert np.all(np.isfinite(ns["curves"].style_a)) and len(ns["curves"].steps) == 5


def test_explore_alpha_notebook(tmp_path, monkeypatch):
    config = load_config(f"{ROOT / 'experiments' / 'demo.py'}:smoke")
    config["methods"] = ["ftn-gc16"]
    run_experiment(config, tmp_path)
    monkeypatch.setenv("CTL_MODEL", str(tmp_path / "ftn-gc16"))
    monkeypatch.setenv("CTL_NOTEBOOK_SIZE", "48")
    ns = run_notebook(ROOT / "notebooks" / "explore_alpha.ipynb")
    assert ns["painted"].shape == ns["noisy"].shape == (48, 48, 3)
    assert 0.0 <= float(ns["similarity"]["cosine"]) <= 1.0 + 1e-6
    np.testing.assert_allclose(ns["expected"], [0.5])  # sigma 50, midway between 20 and 80
    for alpha in (0.0, 1.0):  # the slider's precomputed parameters give the model's own output
        np.testing.assert_array_equal(ns["restore"](alpha), ns["quantise"](ns["model"](ns["x"], alpha))[0])


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
    inp, target, out = ns["compare"](0.02)
    assert inp.shape == target.shape == out.shape == (32, 32, 3)
    assert float(np.abs(target - inp).max()) > 0  # the operator's own output differs from its input
    # the head from the shared trunk gives the full network's output
    full = ns["apply"](ns["x"], ns["gamma"])
    head = ns["head"](ns["state"], ns["gamma"].global_value())
    np.testing.assert_allclose(head, full, atol=1e-5)


def test_explore_alpha_notebook_on_an_imported_ffdnet(tmp_path, monkeypatch):
    """FFDNet imported from its MAT-file: the slider is sigma (0..75) and the painted map its noise map."""
    import pytest

    pytest.importorskip("h5py")
    from test_imported import FFDNET_TASK, ffdnet_gray_mat

    from ctl_jax.train.imported import import_run

    import_run(ffdnet_gray_mat(tmp_path / "ffdnet.mat"), FFDNET_TASK, tmp_path / "ffdnet")
    monkeypatch.setenv("CTL_MODEL", str(tmp_path / "ffdnet"))
    monkeypatch.setenv("CTL_NOTEBOOK_SIZE", "32")
    ns = run_notebook(ROOT / "notebooks" / "explore_alpha.ipynb")
    assert ns["painted"].shape == ns["noisy"].shape == (32, 32, 1)
    np.testing.assert_allclose(ns["expected"], [0.5])  # sigma 37.5 of 0..75
    # the painted map is a per-pixel sigma: where it is 0.5 everywhere it equals the global control
    uniform = ns["model"](ns["x"], ns["ctl"].Control.per_pixel(np.full((32, 32), 0.5, np.float32)))
    np.testing.assert_allclose(np.asarray(uniform), np.asarray(ns["model"](ns["x"], 0.5)), atol=1e-6)
