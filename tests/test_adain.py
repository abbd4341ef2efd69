"""AdaIN (ctl_jax.classical.adain): the layer against hand-computed statistics, the decoder's shapes,
training on the project's loop, the test-time controls and bad input."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ctl_jax.classical.adain import (AdaINConfig, AdaINDecoder, adain, adain_loss, channel_stats,  # noqa: E402
                                     encoder_widths, load_adain, train_adain)
from ctl_jax.tasks.style import cached_loss_network  # noqa: E402


def test_adain_gives_the_content_the_styles_channel_statistics():
    x = jnp.asarray([[1.0, 3.0], [5.0, 7.0]])[None, :, :, None]   # mean 4, variance 5
    y = jnp.asarray([[0.0, 10.0], [0.0, 10.0]])[None, :, :, None]  # mean 5, variance 25
    out = adain(x, y, eps=0.0)
    # (x - 4) / sqrt(5) * 5 + 5
    np.testing.assert_allclose(out[0, :, :, 0], (np.array([[1, 3], [5, 7]]) - 4) / np.sqrt(5) * 5 + 5, rtol=1e-6)
    c = jax.random.normal(jax.random.key(0), (2, 6, 5, 4)) * 3 + 1
    s = jax.random.uniform(jax.random.key(1), (1, 9, 7, 4))
    mu, sigma = channel_stats(adain(c, s))
    mu_s, sigma_s = channel_stats(s)
    np.testing.assert_allclose(mu, jnp.broadcast_to(mu_s, mu.shape), atol=1e-5)
    np.testing.assert_allclose(sigma, jnp.broadcast_to(sigma_s, sigma.shape), atol=1e-3)


def test_decoder_mirrors_the_encoder_up_to_its_layer():
    net = cached_loss_network("random")  # the instance the other style tests share
    assert encoder_widths(net, "relu4_1") == (32, 64, 128, 256)
    assert encoder_widths(net, "relu2_1") == (32, 64)
    decoder = AdaINDecoder((8, 16, 32))
    params = jax.eval_shape(decoder.init, jax.random.key(0), jnp.zeros((1, 3, 5, 32)))
    assert jax.eval_shape(decoder.apply, params, jnp.zeros((2, 3, 5, 32))).shape == (2, 12, 20, 3)
    with pytest.raises(ValueError, match="first ReLU of a stage"):
        encoder_widths(net, "relu3_2")


def test_identity_term_is_the_l1_of_the_decoded_content_features():
    net = cached_loss_network("random")
    decoder = AdaINDecoder(encoder_widths(net, "relu2_1"))
    params = decoder.init(jax.random.key(0), jnp.zeros((1, 4, 4, 64)))["params"]
    content, style = (jax.random.uniform(jax.random.key(k), (2, 16, 16, 3)) for k in (1, 2))
    plain, parts = adain_loss(params, decoder, net, AdaINConfig(layer="relu2_1"), content, style)
    mixed, parts3 = adain_loss(params, decoder, net, AdaINConfig(layer="relu2_1", identity_weight=3.0), content, style)
    by_hand = jnp.mean(jnp.abs(decoder.apply({"params": params}, net.features(content, ["relu2_1"])["relu2_1"]) - content))
    assert parts["identity"] == 0.0
    np.testing.assert_allclose(parts3["identity"], by_hand, rtol=1e-6)
    np.testing.assert_allclose(mixed, plain + 3.0 * by_hand, rtol=1e-5)
    with pytest.raises(ValueError, match="non-negative"):
        AdaINConfig(identity_weight=-1.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ctl_jax.data import PatchSampler, bundled_images
    from ctl_jax.train.loop import TrainConfig

    images = bundled_images("train", 3)
    workdir = tmp_path_factory.mktemp("adain") / "run"
    train = TrainConfig(steps=8, batch_size=2, patch_size=32, lr=2e-3, log_every=1, ckpt_every=8, progress=False)
    model = train_adain(PatchSampler(images, 32, 2, seed=0), PatchSampler(images[::-1], 32, 2, seed=1), workdir,
                        AdaINConfig(), train)
    return model, workdir, images


def test_training_lowers_the_loss_and_the_run_loads_back(trained):
    import json

    model, workdir, images = trained
    losses = [json.loads(line)["loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    content, style = images[0][:40, :48], images[1][:56, :64]
    np.testing.assert_array_equal(load_adain(workdir).stylise(content, [style]), model.stylise(content, [style]))


def test_the_test_time_controls(trained):
    model, _, images = trained
    content, s1, s2 = images[0][:32, :40], images[1][:48, :48], images[2][:40, :40]
    full = model.stylise(content, [s1], alpha=1.0)
    assert full.shape == (32, 40, 3) and full.min() >= 0 and full.max() <= 1
    # alpha 0 decodes the content's own features: no style statistics enter
    np.testing.assert_allclose(model.stylise(content, [s1], alpha=0.0), model.stylise(content, [s2], alpha=0.0))
    assert np.abs(model.stylise(content, [s1], alpha=0.5) - full).max() > 0
    # interpolation weights (1, 0) are the first style alone; weights are normalised
    np.testing.assert_allclose(model.stylise(content, [s1, s2], weights=[2, 0]), full, atol=1e-6)
    assert np.abs(model.stylise(content, [s1, s2], weights=[1, 1]) - full).max() > 0


def test_bad_input(trained, tmp_path):
    model, workdir, images = trained
    content, style = images[0][:32, :32], images[1][:32, :32]
    with pytest.raises(ValueError, match="divisible by 8"):
        model.stylise(images[0][:30, :32], [style])
    with pytest.raises(ValueError, match="one per style"):
        model.stylise(content, [style], weights=[1, 1])
    with pytest.raises(ValueError, match="NaN"):
        model.stylise(content, [np.full((32, 32, 3), np.nan, np.float32)])
    with pytest.raises(ValueError, match="finite"):
        model.stylise(content, [style], alpha=float("nan"))
    with pytest.warns(UserWarning, match="alpha channel"):  # an RGBA style: the alpha channel is dropped
        rgba = model.stylise(content, [np.dstack([style, np.ones((32, 32, 1), np.float32)])])
    np.testing.assert_array_equal(rgba, model.stylise(content, [style]))
    grey = model.stylise(content, [style.mean(-1)])  # a grey style is replicated into RGB
    assert grey.shape == (32, 32, 3)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_adain(tmp_path / "nothing")


def test_adain_experiment_smoke(tmp_path):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "adain.py"
    spec = importlib.util.spec_from_file_location("adain_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path / "adain"), "--preset", "smoke"]) == 0
    report = tmp_path / "adain" / "report"
    assert (report / "tradeoff_photo.png").is_file() and (report / "interpolation_photo.png").is_file()
    assert "Loss" in (report / "adain.md").read_text()


def test_adain_command(trained, tmp_path, capsys):
    from PIL import Image

    from ctl_jax.cli import main

    model, workdir, images = trained
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray((images[0][:37, :50] * 255).astype(np.uint8)).save(content)
    Image.fromarray((images[1][:40, :40].mean(-1) * 255).astype(np.uint8)).save(style)  # grey: used as RGB
    base = ["adain", "--model", str(workdir), "--content", str(content), "--style", str(style), "--size", "50"]
    assert main([*base, "--alpha", "0.5", "--out", str(tmp_path / "out.png")]) == 0
    err = capsys.readouterr().err
    assert "cropped from 50x37 to 48x32" in err and "grey" in err
    out = np.asarray(Image.open(tmp_path / "out.png"), np.float32) / 255
    assert out.shape == (32, 48, 3)
    reference = model.stylise(images[0][:37, :50][:32, :48], [np.repeat(images[1][:40, :40].mean(-1, keepdims=True), 3, -1)],
                              alpha=0.5)
    assert np.abs(out - reference).mean() < 0.02  # the same model, up to 8-bit rounding of the files
    assert main([*base, "--alphas", "0", "1", "--style", str(content), "--style-weights", "1", "0",
                 "--out", str(tmp_path / "many.png")]) == 0
    assert {p.name for p in tmp_path.glob("many_*")} == {"many_alpha0.png", "many_alpha1.png", "many_strip.png"}
    assert main([*base, "--alpha", "1.5", "--out", str(tmp_path / "bad.png")]) == 2
    assert "alpha must lie in [0, 1]" in capsys.readouterr().err
    assert main([*base, "--alpha", "0.5", "--out", str(tmp_path / "out.png")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["adain", "--model", str(tmp_path), "--content", str(content), "--style", str(style),
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "no checkpoint" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
