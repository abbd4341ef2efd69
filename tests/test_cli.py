"""End to end: the ctl-jax command on the smoke preset of the main job, then apply and sweep."""

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from ctl_jax import Control
from ctl_jax.cli import build_parser, load_config, main
from ctl_jax.eval.report import read_sweep_json
from ctl_jax.tasks import make_task
from ctl_jax.train.runs import load_run

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "experiments" / "demo.py")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["run", "--config", DEMO + ":smoke", "--out", str(out)]) == 0
    return out


@pytest.fixture()
def noisy(tmp_path):
    path = tmp_path / "noisy.png"
    Image.fromarray((np.random.default_rng(0).random((30, 41, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_run_writes_the_report_folder(demo_run):
    report = demo_run / "report"
    for name in ("sweep.json", "sweep.md", "psnr_vs_alpha.png", "per_pixel_demo.png",
                 "strip_ftn-gc16.png", "strip_adafm.png", "strip_dni.png", "noisy_input.png", "alpha_ramp.png",
                 "colour.md"):
        assert (report / name).stat().st_size > 0, name
    results = read_sweep_json(report / "sweep.json")  # every method's sweep, by name
    assert list(results) == ["ftn-gc16", "adafm", "dni"]
    for name, result in results.items():
        assert result.name == name
        assert result.levels.tolist() == [20, 40, 60, 80] and len(result.alphas) == 3
        assert make_task(result.task) == make_task(load_config(DEMO + ":smoke")["task"])
        assert np.isfinite(result.psnr).all() and result.per_image["psnr"].shape[-1] == 3
    assert "| level | ftn-gc16 | adafm | dni |" in (report / "sweep.md").read_text()


def test_runs_load_as_controllable_models(demo_run):
    base, ftn = load_run(demo_run / "base"), load_run(demo_run / "ftn-gc16")
    assert base.tuner is None and ftn.tuner.name == "ftn-gc16" and ftn.meta.stage == "tune"
    assert pathlib.Path(ftn.meta.base["workdir"]) == (demo_run / "base").resolve()
    x = np.random.default_rng(1).random((1, 16, 16, 3), dtype=np.float32)
    np.testing.assert_array_equal(ftn(x, 0.0), base(x))  # alpha 0 is the base (the run's own copy of it)
    assert float(np.abs(ftn(x, Control.scalar(1.0)) - base(x)).max()) > 0
    np.testing.assert_allclose(ftn(x, ftn.control_for([50])), ftn(x, 0.5), atol=1e-6)


def test_rerun_resumes_without_training_again(demo_run):
    """A second ``run`` into a finished experiment trains nothing: no run file is rewritten (same
    names, sizes and modification times), so neither checkpoints nor metrics change."""
    def files(run):
        return {str(p.relative_to(demo_run)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted((demo_run / run).rglob("*")) if p.is_file()}

    runs = ("base", "ftn-gc16", "adafm", "dni")
    before = {run: files(run) for run in runs}
    assert all(any("checkpoints" in name for name in before[run]) for run in runs)
    assert main(["run", "--config", DEMO + ":smoke", "--out", str(demo_run)]) == 0
    for run in runs:
        assert files(run) == before[run], run


def test_apply_with_alpha_and_alpha_map(demo_run, noisy, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert main(["apply", "--model", str(demo_run / "ftn-gc16"), "--input", str(noisy), "--output", str(out),
                 "--alpha", "0.3"]) == 0
    assert np.asarray(Image.open(out)).shape == (30, 41, 3)  # odd sizes are padded and cropped back
    assert main(["apply", "--model", str(demo_run / "ftn-gc16"), "--input", str(noisy), "--output", str(out),
                 "--alpha", "0.3"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 20).astype(np.uint8), (10, 1))).save(mask)  # other size
    assert main(["apply", "--model", str(demo_run / "adafm"), "--input", str(noisy), "--output", str(out),
                 "--alpha-map", str(mask), "--overwrite"]) == 0
    colour_mask = tmp_path / "colour.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(colour_mask)
    assert main(["apply", "--model", str(demo_run / "dni"), "--input", str(noisy), "--output", str(tmp_path / "b.png"),
                 "--alpha-map", str(colour_mask)]) == 2
    assert "must be a greyscale image" in capsys.readouterr().err
    assert main(["apply", "--model", str(tmp_path / "missing"), "--input", str(noisy),
                 "--output", str(tmp_path / "c.png"), "--alpha", "0.5"]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err
    assert main(["apply", "--model", str(demo_run), "--input", str(noisy),
                 "--output", str(tmp_path / "c.png"), "--alpha", "0.5"]) == 2
    assert "experiment folder, not a run" in capsys.readouterr().err
    assert main(["apply", "--model", str(demo_run / "dni"), "--input", str(noisy),
                 "--output", str(tmp_path / "c.txt"), "--alpha", "0.5"]) == 2
    assert "unsupported suffix '.txt'" in capsys.readouterr().err


def test_apply_at_a_level_is_apply_at_its_expected_alpha(demo_run, noisy, tmp_path, capsys):
    model = str(demo_run / "ftn-gc16")
    by_alpha, by_level = tmp_path / "alpha.png", tmp_path / "level.png"
    assert main(["apply", "--model", model, "--input", str(noisy), "--output", str(by_alpha), "--alpha", "0.5"]) == 0
    assert main(["apply", "--model", model, "--input", str(noisy), "--output", str(by_level), "--level", "50"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(by_alpha)), np.asarray(Image.open(by_level)))
    bad = [(["--alpha", "0.5", "--level", "50"], "exactly one of --alpha, --alpha-map and --level"),
           (["--alpha", "0.5", "0.5"], "takes 1 control value(s); got 2"),
           (["--alpha", "nan"], "finite"),
           (["--level", "300"], "sigma must lie in"),
           (["--param", "0.02", "--operator", "l0"], "--operator is for operator models")]
    for args, message in bad:
        assert main(["apply", "--model", model, "--input", str(noisy), "--output", str(tmp_path / "x.png"),
                     *args]) == 2, args
        assert message in capsys.readouterr().err, args
        assert not (tmp_path / "x.png").exists()


def test_readme_apply_examples_on_the_report_files(demo_run, tmp_path):
    report = demo_run / "report"
    out = tmp_path / "restored.png"
    assert main(["apply", "--model", str(demo_run / "ftn-gc16"), "--input", str(report / "noisy_input.png"),
                 "--output", str(out), "--alpha", "0.5"]) == 0
    assert main(["apply", "--model", str(demo_run / "ftn-gc16"), "--input", str(report / "noisy_input.png"),
                 "--output", str(out), "--alpha-map", str(report / "alpha_ramp.png"), "--overwrite"]) == 0
    assert np.asarray(Image.open(out)).shape == np.asarray(Image.open(report / "noisy_input.png")).shape


def test_sweep_command_compares_models(demo_run, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["sweep", "--model", str(demo_run / "ftn-gc16"), "--model", str(demo_run / "dni"),
                 "--levels", "20", "50", "--alpha-count", "3", "--crop", "32", "--out", str(out)]) == 0
    assert "| level | ftn-gc16 | dni |" in (out / "sweep.md").read_text()
    results = read_sweep_json(out / "sweep.json")
    assert list(results) == ["ftn-gc16", "dni"]
    assert results["dni"].levels.tolist() == [20, 50] and results["dni"].alphas.tolist() == [0, 0.5, 1]
    # a second sweep into the same folder needs --overwrite
    assert main(["sweep", "--model", str(demo_run / "dni"), "--levels", "30", "--alphas", "0.2", "0.9",
                 "--crop", "32", "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["sweep", "--model", str(demo_run / "dni"), "--levels", "30", "--alphas", "0.2", "0.9",
                 "--crop", "32", "--max-images", "1", "--out", str(out), "--overwrite"]) == 0
    result = read_sweep_json(out / "sweep.json")["dni"]
    assert result.levels.tolist() == [30] and result.alphas.tolist() == pytest.approx([0.2, 0.9])
    assert result.per_image["psnr"].shape == (1, 2, 1)


def test_sweep_refuses_a_level_tuple_for_a_one_dimensional_model(demo_run, tmp_path, capsys):
    assert main(["sweep", "--model", str(demo_run / "dni"), "--levels", "20,30", "--out", str(tmp_path / "s"),
                 "--crop", "32", "--alpha-count", "2"]) == 2
    assert "D = 1" in capsys.readouterr().err


def test_two_dimensional_model_from_the_command_line(tmp_path, noisy, capsys):
    """A base trained on noise then JPEG: D = 2 levels in sweep ("20,10") and apply (two values)."""
    two = ["--set", "task.degradations=['noise', 'jpeg']", "--set", "task.level_a=[20, 10]",
           "--set", "task.level_b=[80, 40]"]
    base = tmp_path / "base"
    assert main(["train", "--config", DEMO + ":smoke", *two, "--workdir", str(base)]) == 0
    assert load_run(base).control_dim == 2
    out = tmp_path / "report"
    assert main(["sweep", "--model", str(base), "--levels", "20,10", "50,30", "--alpha-count", "2",
                 "--crop", "32", "--max-images", "1", "--out", str(out)]) == 0
    result = read_sweep_json(out / "sweep.json")["base"]
    assert result.level_grid.tolist() == [[20, 10], [50, 30]]
    assert result.control_grid.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]  # the 2-D grid of --alpha-count 2
    assert "| σ=50, q=30 |" in (out / "sweep.md").read_text()
    assert main(["sweep", "--model", str(base), "--levels", "20", "--out", str(tmp_path / "bad"), "--crop", "32"]) == 2
    assert "D = 2" in capsys.readouterr().err
    image = tmp_path / "out.png"
    assert main(["apply", "--model", str(base), "--input", str(noisy), "--output", str(image),
                 "--alpha", "0.5", "0.5"]) == 0
    assert main(["apply", "--model", str(base), "--input", str(noisy), "--output", str(image), "--overwrite",
                 "--level", "50", "25"]) == 0
    assert main(["apply", "--model", str(base), "--input", str(noisy), "--output", str(image), "--overwrite",
                 "--alpha", "0.5"]) == 2
    assert "takes 2 control value(s); got 1" in capsys.readouterr().err
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(grey)
    assert main(["apply", "--model", str(base), "--input", str(noisy), "--output", str(image), "--overwrite",
                 "--alpha-map", str(grey)]) == 2
    assert "2-dimensional control" in capsys.readouterr().err


def test_run_with_from_scratch_rows(tmp_path):
    assert main(["run", "--config", DEMO + ":smoke", "--out", str(tmp_path), "--set", "methods=['dni']",
                 "--set", "from_scratch=True", "--set", "sweep.levels=[20, 50]"]) == 0
    assert not (tmp_path / "scratch_20").exists()  # level A reuses the stage-1 base
    assert (tmp_path / "scratch_50" / "checkpoints").is_dir()
    assert "| level | dni | from scratch |" in (tmp_path / "report" / "sweep.md").read_text()
    scratch = read_sweep_json(tmp_path / "report" / "sweep.json")["from scratch"]
    assert scratch.levels.tolist() == [20, 50] and scratch.alphas.tolist() == [0]


def test_config_overrides_and_help():
    config = load_config(DEMO + ":smoke", ["stage1.steps=7", "data.train=/some/folder"])
    assert config["stage1"]["steps"] == 7 and config["data"]["train"] == "/some/folder"
    assert config["task"]["degradations"] == ["noise"] and "degradation" not in config
    with pytest.raises(ValueError, match="unknown key"):
        load_config(DEMO, ["stage1.stepz=7"])
    parser = build_parser()
    for command in ("run", "train", "tune", "sweep", "apply", "prepare-ops", "train-ops"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0


# ---------------------------------------------------------------- inputs and outputs refused up front
# A missing --model in these tests proves the checks run before the model is loaded or run: were
# they later, the error would be "holds no checkpoint".


def apply_args(tmp_path, noisy, *extra, output=None):
    return ["apply", "--model", str(tmp_path / "no_model"), "--input", str(noisy),
            "--output", str(output or tmp_path / "out.png"), *extra]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ctl-jax: error: "), err
    return err


@pytest.mark.parametrize("content, message", [
    (b"", "is not an image file Pillow can read"),
    (bytes(range(256)) * 4, "is not an image file Pillow can read"),
    (None, "is a folder, not an image file"),
])
def test_apply_refuses_an_alpha_map_that_is_not_an_image(tmp_path, noisy, capsys, content, message):
    amap = tmp_path / "map.png"
    amap.mkdir() if content is None else amap.write_bytes(content)
    assert main(apply_args(tmp_path, noisy, "--alpha-map", str(amap))) == 2
    assert f"the alpha map {amap} {message}" in one_line_error(capsys)
    assert main(apply_args(tmp_path, noisy, "--alpha-map", str(tmp_path / "none.png"))) == 2
    assert "the alpha map" in one_line_error(capsys)


def test_apply_refuses_outputs_it_cannot_write(tmp_path, noisy, capsys, monkeypatch):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    cases = [(folder, "is a folder; give a file name"),
             (tmp_path / "missing" / "out.png", "does not exist; create it first"),
             (tmp_path / "out.gif", "unsupported suffix '.gif'; use one of .png, .jpg")]
    for output, message in cases:
        assert main(apply_args(tmp_path, noisy, "--alpha", "0.5", output=output)) == 2, output
        assert message in one_line_error(capsys), output
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    real_access = os.access  # root may write anywhere: answer as a read-only mount would
    monkeypatch.setattr(os, "access", lambda p, mode: False if pathlib.Path(p) == readonly else real_access(p, mode))
    assert main(apply_args(tmp_path, noisy, "--alpha", "0.5", output=readonly / "out.png")) == 2
    assert "the folder" in (err := one_line_error(capsys)) and "is read-only" in err
    assert not list(readonly.iterdir())


def test_apply_refuses_a_dangling_link_without_overwrite_naming_the_option(tmp_path, noisy, capsys):
    link = tmp_path / "out.png"
    link.symlink_to(tmp_path / "gone.png")
    assert main(apply_args(tmp_path, noisy, "--alpha", "0.5", output=link)) == 2
    err = one_line_error(capsys)
    assert "exists; pass --overwrite to replace it" in err and "overwrite=True" not in err


@pytest.mark.parametrize("alpha", ["1e30", "inf", "-101"])
def test_apply_refuses_absurd_controls_before_loading(tmp_path, noisy, capsys, alpha):
    assert main(apply_args(tmp_path, noisy, "--alpha", alpha)) == 2
    assert "control values must be finite and within [-100, 100]" in one_line_error(capsys)


def test_apply_says_when_the_input_is_a_folder(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    assert main(apply_args(tmp_path, folder, "--alpha", "0.5")) == 2
    assert f"{folder} is a folder, not an image file" in one_line_error(capsys)


@pytest.mark.parametrize("override, message", [
    ("stage1.steps=2.7", "override 'stage1.steps': expects an integer; got 2.7"),
    ("stage1=5", "override 'stage1': stage1 is a section of the config; set its keys"),
    ("stage1.lr_milestones=5", "override 'stage1.lr_milestones': expects a list of integers; got 5"),
    ("stage1.steps=0", "override of stage1: TrainConfig.steps must be >= 1; got 0"),
    ("stage2.loss='nope'", "override of stage2: unknown loss 'nope'"),
    ("sweep.seed=abc", "override 'sweep.seed': expects a number"),
    ("methods=dni", "override 'methods': expects a list"),
])
def test_set_values_of_the_wrong_type_are_refused_before_any_folder(tmp_path, capsys, override, message):
    for command in (["train", "--workdir", str(tmp_path / "w")], ["run", "--out", str(tmp_path / "w")]):
        assert main([command[0], "--config", DEMO + ":smoke", "--set", override, *command[1:]]) == 2
        assert message in one_line_error(capsys)
        assert not (tmp_path / "w").exists()


def test_every_train_config_field_can_be_set(capsys):
    config = load_config(DEMO + ":smoke", ["stage1.loss='l2'", "stage1.keep=1", "stage2.loss=[('l1', 1.0)]",
                                           "stage1.micro_batches=2", "stage1.lr=1"])
    assert config["stage1"]["loss"] == "l2" and config["stage1"]["keep"] == 1 and config["stage1"]["lr"] == 1
    assert config["stage2"]["loss"] == [("l1", 1.0)] and config["stage1"]["micro_batches"] == 2
    assert main(["train", "--config", DEMO + ":smoke", "--set", "stage1.keep=0", "--workdir", "unused"]) == 2
    assert "keep must be >= 1" in one_line_error(capsys)
    with pytest.raises(FileNotFoundError, match="no config file"):
        load_config("missing.py")


def test_apply_writes_every_suffix_it_accepts_and_a_failed_overwrite_keeps_the_old_file(
        demo_run, noisy, tmp_path, capsys, monkeypatch):
    apply = ["apply", "--model", str(demo_run / "dni"), "--input", str(noisy), "--alpha", "0.5", "--output"]
    for suffix in (".bmp", ".tif", ".jpeg"):  # accepted up front, so also written after the forward pass
        assert main(apply + [str(tmp_path / f"out{suffix}")]) == 0
        assert np.asarray(Image.open(tmp_path / f"out{suffix}")).shape == (30, 41, 3)
    out = tmp_path / "out.png"
    assert main(apply + [str(out)]) == 0
    before = out.read_bytes()

    def encoder_fails_half_way(self, fp, format=None, **params):
        fp.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4088)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", encoder_fails_half_way)
    capsys.readouterr()
    assert main(apply + [str(out), "--overwrite"]) == 2
    monkeypatch.undo()
    assert "No space left on device" in one_line_error(capsys)
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "gone.png")
    assert main(apply + [str(link), "--overwrite"]) == 0  # replaces the dangling link by the image
    assert not link.is_symlink() and np.asarray(Image.open(link)).shape == (30, 41, 3)
