"""Perceptual losses against hand-computed values, and the style-transfer task on the training stack."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from ctl_jax.losses.perceptual import (content_loss, gram_matrix, make_loss_network, random_loss_network,  # noqa: E402
                                       style_loss, tv_loss)
from ctl_jax.tasks import make_task  # noqa: E402
from ctl_jax.testing import random_image  # noqa: E402


def test_gram_matrix_is_f_transpose_f_over_hwc():
    f = np.arange(2 * 2 * 3 * 2, dtype=np.float32).reshape(2, 2, 3, 2) / 10  # N=2, h=2, w=3, C=2
    flat = f[1].reshape(6, 2)
    expected = flat.T @ flat / (2 * 3 * 2)
    np.testing.assert_allclose(np.asarray(gram_matrix(jnp.asarray(f)))[1], expected, rtol=1e-6)
    # a one-pixel, one-channel map: G = value^2
    assert float(gram_matrix(jnp.full((1, 1, 1, 1), 3.0))[0, 0, 0]) == 9.0


def test_style_content_and_tv_losses_by_hand():
    a = {"l": jnp.ones((1, 2, 2, 1))}
    b = {"l": jnp.zeros((1, 2, 2, 1))}
    assert float(content_loss(a, b, ["l"])) == 1.0
    # G(ones (2x2x1)) = 4 / 4 = 1; against a zero target, mean squared = 1, two layers sum to 2
    assert float(style_loss({"l": a["l"], "m": a["l"]}, {"l": jnp.zeros((1, 1, 1)), "m": jnp.zeros((1, 1, 1))},
                            ["l", "m"])) == 2.0
    x = jnp.asarray([[0.0, 1.0], [0.0, 1.0]])[None, :, :, None]  # a vertical edge
    # vertical differences 0; horizontal |1 - 0| in both rows: mean 1
    assert float(tv_loss(x)) == 1.0


def test_random_loss_network_is_fixed_by_its_seed_and_checks_input():
    x = jnp.asarray(random_image((1, 16, 16, 3)))
    a, b = random_loss_network(0), random_loss_network(0)
    np.testing.assert_array_equal(a.features(x, ["relu2_1"])["relu2_1"], b.features(x, ["relu2_1"])["relu2_1"])
    assert not np.allclose(random_loss_network(1).features(x, ["relu1_1"])["relu1_1"], a.features(x, ["relu1_1"])["relu1_1"])
    assert a.features(x, ["relu3_1"])["relu3_1"].shape == (1, 4, 4, 128)
    with pytest.raises(ValueError, match="relu9_9"):
        a.features(x, ["relu9_9"])
    with pytest.raises(ValueError, match="RGB"):
        a.features(x[..., :1])
    with pytest.raises(ValueError, match="unknown loss network"):
        make_loss_network("resnet50")
    with pytest.raises(ValueError, match="needs its weights"):
        make_loss_network("vgg19")


@pytest.fixture
def styles(tmp_path):
    """Two style files: a red/white stripes RGB and a grey checkerboard with an alpha channel."""
    stripes = np.zeros((24, 24, 3), np.uint8)
    stripes[::4] = (255, 0, 0)
    Image.fromarray(stripes).save(tmp_path / "stripes.png")
    checker = ((np.indices((24, 24)).sum(0) // 3) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.dstack([checker, np.full_like(checker, 200)]), "LA").save(tmp_path / "checker.png")
    return str(tmp_path / "stripes.png"), str(tmp_path / "checker.png")


def style_task(styles, **kw):
    return make_task({"kind": "style", "style_a": styles[0], "style_b": styles[1], "style_size": 16, **kw})


def test_style_task_loss_targets_a_at_0_b_at_1_and_the_gram_mix_between(styles):
    task = style_task(styles)
    assert task.grams("b")["relu1_1"].shape == (1, 32, 32)  # a grey + alpha style is read as RGB
    pred = jnp.asarray(random_image((3, 16, 16, 3), seed=1))
    content = jnp.asarray(random_image((3, 16, 16, 3), seed=2))
    controls = jnp.asarray([0.0, 1.0, 0.25])
    terms = task.loss_terms(pred, content, controls)
    net = task.loss_network
    feats = net.features(pred, task.style_layers)
    for i, c in enumerate([0.0, 1.0, 0.25]):
        target = {l: (1 - c) * task.grams("a")[l] + c * task.grams("b")[l] for l in task.style_layers}
        expected = style_loss({l: f[i:i + 1] for l, f in feats.items()}, target, task.style_layers)
        assert float(terms["style"][i]) == pytest.approx(float(expected), rel=1e-5)
    # the batch loss is the weighted sum, averaged over the batch
    w = task.content_weight * terms["content"] + task.style_weight_a * terms["style"] + task.tv_weight * terms["tv"]
    assert float(task.batch_loss(pred, content, content, controls)) == pytest.approx(float(jnp.mean(w)), rel=1e-5)
    assert make_task(task.to_dict()) == task


def test_style_task_bad_input(styles):
    with pytest.raises(ValueError, match="nothing to control"):
        style_task((styles[0], styles[0]))
    assert style_task((styles[0], styles[0]), style_weight_a=1e3).style_weight_b == 1e4  # the strength control
    with pytest.raises(ValueError, match="no layer 'relu7_1'"):
        style_task(styles, style_layers=["relu7_1"])
    with pytest.raises(FileNotFoundError):
        style_task((styles[0], styles[0] + ".missing")).grams("b")


def test_two_stage_style_training_lowers_each_stage_loss_and_keeps_the_base(styles, tmp_path):
    from ctl_jax.data import PatchSampler, bundled_images
    from ctl_jax.nets.registry import NetworkSpec
    from ctl_jax.train.loop import TrainConfig
    from ctl_jax.train.runs import load_run
    from ctl_jax.train.supervised import train_base, train_tuner

    task = style_task(styles)
    spec = NetworkSpec("dncnn", "tiny", 3)
    sampler = PatchSampler(bundled_images("train", 3), 16, 4, seed=0)
    config = TrainConfig(steps=12, batch_size=4, patch_size=16, lr=3e-3, log_every=1, ckpt_every=12, seed=0)
    train_base(spec, task, sampler, tmp_path / "base", config)
    train_tuner(make_tuner_named("ftn"), task, sampler, tmp_path / "ftn", config, base_workdir=tmp_path / "base",
                spec=spec)
    base, tuned = load_run(tmp_path / "base"), load_run(tmp_path / "ftn")
    for run in ("base", "ftn"):
        losses = [m["loss"] for m in read_metrics(tmp_path / run)]
        assert np.mean(losses[-3:]) < np.mean(losses[:3]), (run, losses)
    jax.tree.map(np.testing.assert_array_equal, base.theta0, tuned.theta0)
    x = jnp.asarray(random_image((1, 16, 16, 3), seed=4))
    np.testing.assert_array_equal(np.asarray(tuned(x, 0.0)), np.asarray(base(x, 0.0)))
    # stage 2 moved towards style B: at alpha 1 the style-B term is lower than the base's
    assert float(task.loss_terms(tuned(x, 1.0), x, jnp.ones(1))["style"][0]) < \
        float(task.loss_terms(base(x, 0.0), x, jnp.ones(1))["style"][0])


def make_tuner_named(name):
    from ctl_jax.tuners import make_tuner

    return make_tuner(name)


def read_metrics(run_dir):
    import json

    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


def test_style_experiment_smoke_writes_the_report(style_smoke_run):
    """experiments/style.py:smoke: curves, strips, pixel-adaptive maps, costs; at alpha 0 every method
    is the stage-1 network, so their losses there agree."""
    import json

    out, curves = style_smoke_run
    report = out / "report"
    text = (report / "style.md").read_text()
    assert "| ftn |" in text and "| dynamic-net |" in text and "vs trained on B" in text
    assert {p.name for p in report.glob("map_*.png")} == {"map_ftn_logo.png", "map_dynamic-net_logo.png"}
    assert (report / "strip_ftn_logo.png").is_file() and (report / "style_curves.png").is_file()
    stored = json.loads((report / "curves.json").read_text())
    assert stored["ftn"]["style_a"][0] == pytest.approx(stored["dynamic-net"]["style_a"][0], rel=1e-5)
    assert curves["ftn"].alphas.tolist() == [0.0, 0.5, 1.0]
    from ctl_jax.train.runs import load_run

    # stage2_by_method: FTN tunes at its own learning rate, the others at stage2's
    assert load_run(out / "ftn").meta.config["lr"] == 3e-4
    assert load_run(out / "dynamic-net").meta.config["lr"] == 1e-3


def test_apply_runs_a_style_model_whole_on_any_size(style_smoke_run, tmp_path, capsys):
    """``ctl-jax apply`` on a style run: a content image of odd size (Transform-Net needs multiples
    of 4) and one far larger than the 16-pixel training crops run whole (padded, cropped back); alpha
    0 is the stage-1 network's output; a painted map equal to 0 everywhere is alpha 0."""
    from ctl_jax.cli import main
    from ctl_jax.train.runs import load_run

    out, _ = style_smoke_run
    model = out / "ftn"
    big = (random_image((130, 203, 3), seed=3) * 255).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    for alpha in ("0", "1"):
        assert main(["apply", "--model", str(model), "--input", str(tmp_path / "big.png"),
                     "--output", str(tmp_path / f"a{alpha}.png"), "--alpha", alpha]) == 0
    a0, a1 = (np.asarray(Image.open(tmp_path / f"a{alpha}.png")) for alpha in "01")
    assert a0.shape == a1.shape == big.shape and np.abs(a0.astype(int) - a1).max() > 0
    base = load_run(out / "base")
    padded = np.pad(big / np.float32(255), ((0, 2), (0, 1), (0, 0)), mode="edge")[None]
    expected = np.asarray(np.clip(np.round(np.asarray(base(padded)) * 255), 0, 255), np.uint8)[0, :130, :203]
    assert np.abs(a0.astype(int) - expected).max() <= 1
    Image.fromarray(np.zeros((130, 203), np.uint8)).save(tmp_path / "zeros.png")
    assert main(["apply", "--model", str(model), "--input", str(tmp_path / "big.png"),
                 "--output", str(tmp_path / "m.png"), "--alpha-map", str(tmp_path / "zeros.png")]) == 0
    assert np.abs(np.asarray(Image.open(tmp_path / "m.png")).astype(int) - a0).max() <= 1


def test_style_images_grey_is_replicated_and_alpha_dropped(styles):
    from ctl_jax.tasks.style import read_style_image

    checker = read_style_image(styles[1], 24)  # a grey checkerboard with alpha 200
    assert checker.shape == (24, 24, 3)
    np.testing.assert_array_equal(checker[..., 0], checker[..., 2])
    assert set(np.unique(checker).tolist()) == {0.0, 1.0}  # not composited over anything


def test_cli_sweep_of_style_models_gives_the_loss_curves(style_smoke_run, tmp_path, capsys):
    import json

    from ctl_jax.cli import main

    out, _ = style_smoke_run
    argv = ["sweep", "--model", str(out / "ftn"), "--model", str(out / "dynamic-net"), "--crop", "32",
            "--max-images", "1", "--alpha-count", "3", "--out", str(tmp_path / "sweep")]
    assert main(argv) == 0
    text = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "| ftn |" in text and "| dynamic-net |" in text and (tmp_path / "sweep" / "style_curves.png").is_file()
    curves = json.loads((tmp_path / "sweep" / "curves.json").read_text())
    assert curves["ftn"]["alphas"] == [0.0, 0.5, 1.0]
    assert curves["ftn"]["style_a"][0] == pytest.approx(curves["dynamic-net"]["style_a"][0], rel=1e-5)  # the same base
    assert main(argv[:-2] + ["--levels", "3", "--out", str(tmp_path / "other")]) == 2
    assert "no degradation levels" in capsys.readouterr().err


def test_cli_tune_a_style_method_with_its_own_stage2_settings(style_smoke_run, tmp_path):
    """``ctl-jax tune`` on the style smoke config: FTN gets its stage2_by_method learning rate."""
    from ctl_jax.cli import main
    from ctl_jax.config import load_config
    from ctl_jax.pipeline import stage2_settings
    from ctl_jax.train.runs import load_run

    out, _ = style_smoke_run
    assert main(["tune", "--config", "experiments/style.py:smoke", "--base", str(out / "base"), "--method", "ftn",
                 "--workdir", str(tmp_path / "ftn")]) == 0
    assert load_run(tmp_path / "ftn").meta.config["lr"] == 3e-4
    config = load_config("experiments/style.py:smoke")
    config["stage2_by_method"] = {"dni": {"batch_size": 8}}
    with pytest.raises(ValueError, match="share stage2's batches"):
        stage2_settings(config, "dni")
