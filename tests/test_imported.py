"""Pretrained MAT-files as run folders (ctl_jax.train.imported): bases to tune, FFDNet as a conditional
run, the pipeline's imported base / dedicated networks / reference rows, and the ctl-jax import command."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("h5py")

from test_matconvnet_import import relu, write_simplenn  # noqa: E402  (tests/ is on sys.path)

from ctl_jax.cli import main  # noqa: E402
from ctl_jax.nets.matconvnet import load_pretrained  # noqa: E402
from ctl_jax.tasks import make_task  # noqa: E402
from ctl_jax.testing import random_image, save_pixels  # noqa: E402
from ctl_jax.train.imported import import_run  # noqa: E402
from ctl_jax.train.loop import TrainConfig  # noqa: E402
from ctl_jax.train.runs import load_run  # noqa: E402
from ctl_jax.train.supervised import train_base, train_tuner  # noqa: E402

TASK = make_task({"kind": "restoration", "degradations": ["noise"], "level_a": [15], "level_b": [50]})
FFDNET_TASK = make_task({"kind": "restoration", "degradations": ["noise"], "level_a": [0], "level_b": [75]})


def conv(rng, cin, cout, name, std=0.1):
    return {"type": "conv", "name": name, "stride": 1.0, "pad": 1.0,
            "weights": [rng.normal(0, std, (3, 3, cin, cout)).astype(np.float32),
                        rng.normal(0, 0.02, (1, cout)).astype(np.float32)]}


def tiny_dncnn_mat(path, seed=0):
    """DnCNN variant "tiny" (depth 4, 8 features, grey) as a MatConvNet MAT-file."""
    rng = np.random.default_rng(seed)
    widths = [1, 8, 8, 8, 1]
    layers = []
    for i in range(4):
        layers.append(conv(rng, widths[i], widths[i + 1], f"c{i}"))
        if i < 3:
            layers.append(relu(f"r{i}"))
    write_simplenn(path, layers)
    return path


def ffdnet_gray_mat(path, seed=1):
    """The authors' grey FFDNet layout (15 convs of 64 features), random weights."""
    rng = np.random.default_rng(seed)
    widths = [5] + [64] * 14 + [4]
    layers = [{"type": "SubP", "name": "down", "scale": 0.5, "weights": []},
              {"type": "concat", "name": "map", "weights": []}]
    for i in range(15):
        layers.append(conv(rng, widths[i], widths[i + 1], f"c{i}", std=0.04))
        if i < 14:
            layers.append(relu(f"r{i}"))
    layers.append({"type": "SubP", "name": "up", "scale": 2.0, "weights": []})
    write_simplenn(path, layers)
    return path


class Crops:
    """A sampler of random grey crops: ``batch(step)`` (what the trainer's feed calls)."""

    def batch(self, step):
        return np.stack([random_image((16, 16, 1), seed=1000 * step + j) for j in range(2)])


def test_imported_dncnn_is_a_base_that_computes_what_the_file_holds(tmp_path):
    weights = tiny_dncnn_mat(tmp_path / "dncnn.mat")
    model = import_run(weights, TASK, tmp_path / "base")
    assert (model.meta.stage, model.meta.spec.name, model.meta.spec.variant) == ("base", "dncnn", "tiny")
    assert model.meta.imported == str(weights.resolve())
    module, params = load_pretrained(weights)
    x = random_image((1, 13, 17, 1))
    np.testing.assert_array_equal(np.asarray(load_run(tmp_path / "base")(x, 0.0)),
                                  np.asarray(module.apply({"params": params}, x)))


def test_a_tuner_tunes_an_imported_base_and_equals_it_at_alpha_0(tmp_path):
    import_run(tiny_dncnn_mat(tmp_path / "dncnn.mat"), TASK, tmp_path / "base")
    config = TrainConfig(steps=2, batch_size=2, patch_size=16, lr=1e-3, log_every=1, ckpt_every=2)
    train_tuner("ftn", TASK, Crops(), tmp_path / "ftn", config, base_workdir=tmp_path / "base")
    base, tuned = load_run(tmp_path / "base"), load_run(tmp_path / "ftn")
    x = random_image((1, 16, 16, 1), seed=3)
    np.testing.assert_array_equal(np.asarray(tuned(x, 0.0)), np.asarray(base(x, 0.0)))
    assert not np.allclose(np.asarray(tuned(x, 1.0)), np.asarray(base(x, 0.0)))


def test_an_imported_folder_is_neither_retrained_nor_overwritten(tmp_path):
    weights = tiny_dncnn_mat(tmp_path / "dncnn.mat")
    model = import_run(weights, TASK, tmp_path / "base")
    config = TrainConfig(steps=2, batch_size=2, patch_size=16, log_every=1, ckpt_every=2)
    with pytest.raises(ValueError, match="imported from .*not trained here"):
        train_base(model.meta.spec, TASK, Crops(), tmp_path / "base", config)
    with pytest.raises(ValueError, match="already holds a run"):
        import_run(weights, TASK, tmp_path / "base")


def test_imported_ffdnet_takes_the_level_as_its_control(tmp_path):
    weights = ffdnet_gray_mat(tmp_path / "ffdnet.mat")
    model = import_run(weights, FFDNET_TASK, tmp_path / "ffdnet")
    assert (model.meta.stage, model.meta.spec.variant, model.tuner.kind) == ("tune", "gray", "conditional")
    module, params = load_pretrained(weights)
    x = random_image((1, 12, 16, 1))
    control = float(FFDNET_TASK.control_for([[30.0]])[0, 0])  # 0.4: sigma 30 of 0..75
    expected = module.apply({"params": params}, x, jnp.full((1, 12, 16, 1), 30 / 255))
    np.testing.assert_allclose(np.asarray(model(x, control)), np.asarray(expected), atol=1e-5)
    from ctl_jax import Control

    per_pixel = model(x, Control.per_pixel(np.full((12, 16), control, np.float32)))
    np.testing.assert_allclose(np.asarray(per_pixel), np.asarray(model(x, control)), atol=1e-6)


def test_cli_import_then_apply_notes_extrapolation_and_grey_conversion(tmp_path, capsys):
    weights = ffdnet_gray_mat(tmp_path / "ffdnet.mat")
    run = str(tmp_path / "ffdnet")
    assert main(["import", "--weights", str(weights), "--levels", "0", "75", "--workdir", run]) == 0
    assert "ffdnet (gray), tune run" in capsys.readouterr().out
    colour = save_pixels(tmp_path / "colour.png", (random_image((12, 16, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out.png"
    assert main(["apply", "--model", run, "--input", str(colour), "--output", str(out), "--level", "90"]) == 0
    err = capsys.readouterr().err
    assert "grey network; the colour input was converted to grey" in err
    assert "control 1.2 lies outside [0, 1]" in err and "extrapolates" in err
    assert out.is_file()
    assert main(["import", "--weights", str(tmp_path / "missing.mat"), "--levels", "15", "50",
                 "--workdir", str(tmp_path / "x")]) == 2
    assert "missing.mat" in capsys.readouterr().err


def test_pipeline_with_an_imported_base_dedicated_networks_and_a_reference(tmp_path, monkeypatch):
    from ctl_jax.pipeline import run_experiment

    for level in (15, 50):
        tiny_dncnn_mat(tmp_path / f"sigma={level}.mat", seed=level)
    config = {
        "title": "imported",
        "network": {"name": "dncnn", "variant": "tiny", "channels": 1},
        "task": {"kind": "restoration", "degradations": ["noise"], "level_a": [15], "level_b": [50]},
        "base": {"import": str(tmp_path / "sigma=15.mat")},
        "data": {"train": "bundled", "test": "bundled", "test_crop": 16, "max_test_images": 1},
        "stage1": dict(steps=1, batch_size=2, patch_size=16),
        "stage2": dict(steps=2, batch_size=2, patch_size=16, log_every=1, ckpt_every=2),
        "methods": ["dni"],
        "from_scratch": {"import": str(tmp_path) + "/sigma={level:g}.mat"},
        "references": [{"name": "FFDNet (true sigma)", "import": str(ffdnet_gray_mat(tmp_path / "ffdnet.mat")),
                        "levels": [0, 75]}],
        "sweep": {"levels": [15, 50], "alphas": [0.0, 1.0], "seed": 0},
    }
    results = run_experiment(config, tmp_path / "out")
    assert set(results) == {"dni", "from scratch", "FFDNet (true sigma)"}
    # at level A the dedicated network is the base itself (same file): DNI at alpha 0 scores the same
    dni, scratch = results["dni"], results["from scratch"]
    assert dni.metric("psnr")[0, 0] == pytest.approx(scratch.metric("psnr")[0, 0], abs=1e-6)
    stored = json.loads((tmp_path / "out" / "report" / "sweep.json").read_text())
    assert "FFDNet (true sigma)" in json.dumps(stored)


    def no_sweep(*args, **kwargs):
        raise AssertionError("a re-run swept again")

    # a re-run resumes: imports and sweeps are reused, the reference's one sweep per level included
    monkeypatch.setattr("ctl_jax.eval.sweep.sweep", no_sweep)
    again = run_experiment(config, tmp_path / "out")
    assert again["FFDNet (true sigma)"].metric("psnr").tolist() == results["FFDNet (true sigma)"].metric("psnr").tolist()


def test_dni_of_independent_networks_script(tmp_path, capsys):
    """experiments/dni_independent.py on a pipeline run with an imported tiny base: both DNI rows and
    the similarity table (the independent endpoint shares no starting point with the base)."""
    import importlib.util
    import pathlib

    from ctl_jax.pipeline import run_experiment

    for level in (15, 50):
        tiny_dncnn_mat(tmp_path / f"sigma={level}.mat", seed=level)
    (tmp_path / "test").mkdir()
    save_pixels(tmp_path / "test" / "a.png", (random_image((24, 24)) * 255).astype(np.uint8))
    config = {
        "network": {"name": "dncnn", "variant": "tiny", "channels": 1},
        "task": {"kind": "restoration", "degradations": ["noise"], "level_a": [15], "level_b": [50]},
        "base": {"import": str(tmp_path / "sigma=15.mat")},
        "data": {"train": "bundled", "test": str(tmp_path / "test")},
        "stage1": dict(steps=1, batch_size=2, patch_size=16),
        "stage2": dict(steps=2, batch_size=2, patch_size=16, log_every=1, ckpt_every=2),
        "methods": ["dni"], "sweep": {"levels": [15, 50], "alphas": [0.0, 1.0], "seed": 0},
    }
    run_experiment(config, tmp_path / "out")
    script = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "dni_independent.py"
    spec = importlib.util.spec_from_file_location("dni_independent", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--experiment", str(tmp_path / "out"), "--weights", str(tmp_path / "sigma=50.mat"),
                        "--data", str(tmp_path / "test"), "--crop", "16", "--images", "1", "--levels", "15", "50"]) == 0
    table = (tmp_path / "out" / "dni_independent" / "similarity.md").read_text()
    rows = {line.split("|")[1].strip(): float(line.split("|")[3]) for line in table.splitlines() if line.startswith("| DNI")}
    assert rows["DNI (fine-tuned copy)"] > rows["DNI of independent networks"]
    assert "DNI of independent networks" in (tmp_path / "out" / "dni_independent" / "sweep.md").read_text()
    assert module.main(["--experiment", str(tmp_path / "nothing")]) == 2
    assert "pass --experiment" in capsys.readouterr().err


def test_whole_image_script_scores_each_method_at_its_crop_alpha(tmp_path):
    """experiments/cll_whole_images.py: every row at every level on whole images; the dedicated row
    equals a direct sweep of that network; the DCT row denoises."""
    import importlib.util
    import pathlib

    from ctl_jax.eval.sweep import sweep
    from ctl_jax.pipeline import run_experiment

    for level in (15, 50):
        tiny_dncnn_mat(tmp_path / f"sigma={level}.mat", seed=level)
    (tmp_path / "test").mkdir()
    for name, shape in (("a", (24, 20)), ("b", (18, 26))):  # smooth images: the DCT row must denoise them
        yy, xx = np.mgrid[:shape[0], :shape[1]]
        smooth = 0.5 + 0.3 * np.sin(xx / 5.0 + len(name)) * np.cos(yy / 7.0)
        save_pixels(tmp_path / "test" / f"{name}.png", np.round(smooth * 255).astype(np.uint8))
    config = {
        "network": {"name": "dncnn", "variant": "tiny", "channels": 1},
        "task": {"kind": "restoration", "degradations": ["noise"], "level_a": [15], "level_b": [50]},
        "base": {"import": str(tmp_path / "sigma=15.mat")},
        "data": {"train": "bundled", "test": str(tmp_path / "test"), "test_crop": 16},
        "stage1": dict(steps=1, batch_size=2, patch_size=16),
        "stage2": dict(steps=2, batch_size=2, patch_size=16, log_every=1, ckpt_every=2),
        "methods": ["dni"], "sweep": {"levels": [15, 50], "alphas": [0.0, 0.5, 1.0], "seed": 0},
        "from_scratch": {"import": str(tmp_path) + "/sigma={level:g}.mat"},
    }
    run_experiment(config, tmp_path / "out")
    (tmp_path / "dct.json").write_text(json.dumps({"sweep": {"hard/15": {"best_r": 2.6}, "hard/50": {"best_r": 2.9}}}))
    script = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "cll_whole_images.py"
    spec = importlib.util.spec_from_file_location("cll_whole_images", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--experiment", str(tmp_path / "out"), "--data", str(tmp_path / "test"),
                        "--dct-results", str(tmp_path / "dct.json")]) == 0
    table = (tmp_path / "out" / "whole_test" / "table.md").read_text()
    assert "DCT (hard, r(σ))" in table and "from scratch" in table and "dni" in table
    assert (tmp_path / "out" / "whole_test" / "best_vs_level.png").is_file()

    from ctl_jax.pipeline import test_images

    images, _ = test_images({"test": str(tmp_path / "test")}, 1)
    assert images[0].shape == (24, 20, 1)  # whole, not the experiment's 16x16 crops
    direct = sweep(load_run(tmp_path / "out" / "scratch_50"), images, [50], [0.0], seed=0)
    cached = json.loads((tmp_path / "out" / "scratch_50" / "sweep.json").read_text()).values()
    assert float(direct.psnr[0, 0]) in [entry["psnr"][0][0] for entry in cached]
    row = next(line for line in table.splitlines() if line.startswith("| σ=50"))
    assert row.count("(α=") == 3  # dni, from scratch and the DCT row all scored at sigma 50
    dct = float(row.rstrip(" |").split("|")[-1].split("(")[0].strip("* "))
    assert dct > direct.input_psnr[0] + 3  # the DCT denoiser denoises (sigma on the 0-255 scale)


def test_dejpeg_live1_script_scores_both_protocols(tmp_path):
    """experiments/dejpeg_live1.py on a tiny imported base tuned from q40 to q10: a row per method and
    the blind reference; the reference at alpha 0 is the base itself, so both give the same numbers."""
    import importlib.util
    import pathlib

    from ctl_jax.pipeline import run_experiment

    weights = tiny_dncnn_mat(tmp_path / "blind.mat")
    (tmp_path / "live1").mkdir()
    for name, shape in (("a", (20, 28, 3)), ("b", (24, 24, 3))):
        save_pixels(tmp_path / "live1" / f"{name}.png", (random_image(shape, seed=shape[0]) * 255).astype(np.uint8))
    config = {
        "network": {"name": "dncnn", "variant": "tiny", "channels": 1},
        "task": {"kind": "restoration", "degradations": ["jpeg"], "level_a": [40], "level_b": [10]},
        "base": {"import": str(weights)},
        "data": {"train": "bundled", "test": str(tmp_path / "live1"), "test_crop": 16},
        "stage1": dict(steps=1, batch_size=2, patch_size=16),
        "stage2": dict(steps=2, batch_size=2, patch_size=16, log_every=1, ckpt_every=2),
        "methods": ["dni"], "sweep": {"levels": [10, 40], "alphas": [0.0, 1.0], "seed": 0},
        "references": [{"name": "DnCNN-3 (blind)", "import": str(weights), "levels": [40, 10]}],
    }
    run_experiment(config, tmp_path / "out")
    script = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "dejpeg_live1.py"
    spec = importlib.util.spec_from_file_location("dejpeg_live1", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--experiment", str(tmp_path / "out"), "--data", str(tmp_path / "live1"), "--crop", "0",
                        "--qualities", "10", "40"]) == 0
    table = (tmp_path / "out" / "live1" / "table.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert {"JPEG input", "dni", "DnCNN-3 (blind)"} <= set(rows)
    # the reference is the base at alpha 0; where DNI chose alpha 0 it is the same network, same numbers
    dni_cells, ref_cells = rows["dni"].split("|")[2:4], rows["DnCNN-3 (blind)"].split("|")[2:4]
    for dni, ref in zip(dni_cells, ref_cells):
        if "(α=0)" in dni:
            assert dni.split("(")[0] == ref.split("(")[0]
    assert module.main(["--experiment", str(tmp_path / "nothing")]) == 2


def test_rgb_protocol_of_a_perfect_restorer_is_the_chroma_loss_only():
    """With the Y channel restored exactly, the RGB protocol's loss comes from chroma and rounding
    alone, and is far smaller than the JPEG input's."""
    import importlib.util
    import pathlib

    script = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "dejpeg_live1.py"
    spec = importlib.util.spec_from_file_location("dejpeg_live1", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from PIL import Image

    rgb8 = (random_image((32, 32, 3), seed=5) * 255).astype(np.uint8)
    true_y = np.asarray(Image.fromarray(rgb8, "RGB").convert("YCbCr"))[..., 0]
    jpeg_in, restored = module.rgb_protocol(rgb8, 10, lambda y8: true_y)
    assert restored > jpeg_in + 1.0
    y_in, y_out = module.y_protocol(rgb8, 10, lambda y8: y8)  # the identity restorer scores the input
    assert y_out == pytest.approx(y_in)
