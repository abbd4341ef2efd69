"""End to end: the ctl-jax command on the smoke preset of the main job, then apply and sweep."""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from ctl_jax.cli import build_parser, load_config, main

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "experiments" / "demo.py")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["run", "--config", DEMO + ":smoke", "--out", str(out)]) == 0
    return out


def test_run_writes_the_report_folder(demo_run):
    report = demo_run / "report"
    for name in ("sweep.json", "sweep.md", "psnr_vs_alpha.png", "per_pixel_demo.png",
                 "strip_ftn-gc16.png", "strip_adafm.png", "strip_dni.png", "noisy_input.png", "alpha_ramp.png"):
        assert (report / name).stat().st_size > 0, name
    result = json.loads((report / "sweep.json").read_text())
    assert result["levels"] == [20, 40, 60, 80] and len(result["alphas"]) == 3
    assert np.isfinite(np.asarray(result["psnr"])).all()
    assert "| level | ftn-gc16 | adafm | dni |" in (report / "sweep.md").read_text()


def test_rerun_resumes_without_training_again(demo_run, capsys):
    before = sorted(p.name for p in (demo_run / "base" / "checkpoints").iterdir())
    assert main(["run", "--config", DEMO + ":smoke", "--out", str(demo_run)]) == 0
    assert sorted(p.name for p in (demo_run / "base" / "checkpoints").iterdir()) == before


def test_apply_with_alpha_and_alpha_map(demo_run, tmp_path):
    noisy = tmp_path / "noisy.png"
    Image.fromarray((np.random.default_rng(0).random((30, 41, 3)) * 255).astype(np.uint8)).save(noisy)
    out = tmp_path / "out.png"
    assert main(["apply", "--model", str(demo_run / "ftn-gc16"), "--input", str(noisy), "--output", str(out),
                 "--alpha", "0.3"]) == 0
    assert np.asarray(Image.open(out)).shape == (30, 41, 3)  # odd sizes are padded and cropped back
    with pytest.raises(SystemExit, match="exists"):
        main(["apply", "--model", str(demo_run / "ftn-gc16"), "--input", str(noisy), "--output", str(out),
              "--alpha", "0.3"])
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 20).astype(np.uint8), (10, 1))).save(mask)  # other size
    assert main(["apply", "--model", str(demo_run / "adafm"), "--input", str(noisy), "--output", str(out),
                 "--alpha-map", str(mask), "--overwrite"]) == 0
    colour_mask = tmp_path / "colour.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(colour_mask)
    with pytest.raises(SystemExit, match="greyscale"):
        main(["apply", "--model", str(demo_run / "dni"), "--input", str(noisy), "--output", str(tmp_path / "b.png"),
              "--alpha-map", str(colour_mask)])
    assert main(["apply", "--model", str(tmp_path / "missing"), "--input", str(noisy),
                 "--output", str(tmp_path / "c.png"), "--alpha", "0.5"]) == 2


def test_readme_apply_examples_on_the_report_files(demo_run, tmp_path):
    report = demo_run / "report"
    out = tmp_path / "restored.png"
    assert main(["apply", "--model", str(demo_run / "ftn-gc16"), "--input", str(report / "noisy_input.png"),
                 "--output", str(out), "--alpha", "0.5"]) == 0
    assert main(["apply", "--model", str(demo_run / "ftn-gc16"), "--input", str(report / "noisy_input.png"),
                 "--output", str(out), "--alpha-map", str(report / "alpha_ramp.png"), "--overwrite"]) == 0
    assert np.asarray(Image.open(out)).shape == np.asarray(Image.open(report / "noisy_input.png")).shape


def test_sweep_command_compares_models(demo_run, tmp_path):
    assert main(["sweep", "--model", str(demo_run / "ftn-gc16"), "--model", str(demo_run / "dni"),
                 "--levels", "20", "50", "--alphas", "3", "--crop", "32", "--out", str(tmp_path / "r")]) == 0
    assert "| level | ftn-gc16 | dni |" in (tmp_path / "r" / "sweep.md").read_text()


def test_run_with_from_scratch_rows(tmp_path):
    assert main(["run", "--config", DEMO + ":smoke", "--out", str(tmp_path), "--set", "methods=['dni']",
                 "--set", "from_scratch=True", "--set", "sweep.levels=[20, 50]"]) == 0
    assert not (tmp_path / "scratch_20").exists()  # level A reuses the stage-1 base
    assert (tmp_path / "scratch_50" / "checkpoints").is_dir()
    assert "| level | dni | from scratch |" in (tmp_path / "report" / "sweep.md").read_text()


def test_config_overrides_and_help():
    config = load_config(DEMO + ":smoke", ["stage1.steps=7", "data.train=/some/folder"])
    assert config["stage1"]["steps"] == 7 and config["data"]["train"] == "/some/folder"
    with pytest.raises(SystemExit, match="unknown key"):
        load_config(DEMO, ["stage1.stepz=7"])
    parser = build_parser()
    for command in ("run", "train", "tune", "sweep", "apply"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0
