"""Image-optimisation methods on the loss networks: Gatys style transfer (ctl_jax.classical.gatys),
Deep Dream (ctl_jax.classical.deep_dream) and their CLI commands. 32x32 images, the random loss
network, a handful of steps (one L-BFGS compilation shared by most tests: same size, same chunk)."""

import inspect
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ctl_jax import cli
from ctl_jax.classical import deep_dream, gatys
from ctl_jax.losses import perceptual

STEPS = 10  # one scan chunk (gatys' progress_every), so one compilation per optimiser


@pytest.fixture(scope="module")
def net():
    return perceptual.make_loss_network("random")


def _content(size=32):
    """A smooth colour ramp with a dark square: structure for the content layers."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    image = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.7 - 0.4 * x * y], axis=-1)
    image[size // 4:size // 2, size // 4:size // 2] = 0.1
    return image.astype(np.float32)


def _style(seed=0, size=40, period=6):
    """Saturated diagonal stripes of two random colours: a texture unlike the content."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    stripes = ((x + y) // (period // 2) % 2).astype(np.float32)[..., None]
    a, b = rng.random(3), rng.random(3)
    return (stripes * a + (1 - stripes) * b).astype(np.float32)


def _png(path, image):
    Image.fromarray(np.round(np.asarray(image) * 255).astype(np.uint8).squeeze()).save(path)
    return str(path)


# -- Gatys -----------------------------------------------------------------------------------------

def test_stylize_lowers_its_loss_and_stays_in_range(net):
    content = _content()
    image, history = gatys.stylize(content, _style(), alpha=0.5, loss_net=net, steps=STEPS)
    assert image.shape == (32, 32, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert history.shape == (STEPS + 1,) and np.all(np.isfinite(history))
    assert history[-1] < 0.92 * history[0] and np.all(np.diff(history) <= 1e-6), history  # measured: 0.88
    targets = gatys.make_targets(net, content, [_style()], [1.0], net.content_layers, net.style_layers)
    terms = lambda x: [float(v) for v in gatys.loss_terms(jnp.asarray(x)[None], targets, net, net.content_layers,
                                                          net.style_layers)]
    (c0, s0, _), (c1, s1, _) = terms(content), terms(image)
    assert c0 == 0.0 < c1 and s1 < 0.85 * s0, (s0, s1)  # style traded against content
    assert np.abs(image - content).mean() > 0.05  # measured: 0.065


def test_alpha_zero_with_content_init_returns_the_content(net):
    content = _content()
    image, history = gatys.stylize(content, _style(), alpha=0.0, loss_net=net, steps=STEPS)
    assert history[0] < 1e-5  # the content is the optimum of the alpha-0 objective (TV scales with alpha)
    np.testing.assert_allclose(image, content, atol=0.01)


def test_two_styles_target_the_weighted_mix_of_their_grams(net):
    s1, s2 = _style(1), _style(2, size=48, period=10)
    weights = gatys.style_mix_weights(2, [1.0, 3.0])
    np.testing.assert_allclose(weights, [0.25, 0.75])
    mix = gatys.mixed_style_grams(net, [s1, s2], weights, net.style_layers)
    for layer in net.style_layers:
        f1 = net.features(jnp.asarray(s1)[None], [layer])[layer]
        f2 = net.features(jnp.asarray(s2)[None], [layer])[layer]
        by_hand = 0.25 * perceptual.gram_matrix(f1) + 0.75 * perceptual.gram_matrix(f2)
        np.testing.assert_allclose(mix[layer], by_hand, rtol=1e-5, atol=1e-8)
    # and stylize optimises against that mix: weights (0, 1) are the second style alone
    alone, _ = gatys.stylize(_content(), s2, loss_net=net, steps=STEPS)
    mixed, _ = gatys.stylize(_content(), [s1, s2], style_weights=[0.0, 1.0], loss_net=net, steps=STEPS)
    np.testing.assert_allclose(mixed, alone, atol=1e-5)


def test_adam_runs_and_lowers_the_loss(net):
    image, history = gatys.stylize(_content(), _style(), loss_net=net, steps=STEPS, optimizer="adam", lr=0.1)
    assert np.all(np.isfinite(image)) and 0.0 <= image.min() and image.max() <= 1.0
    assert history[-1] < history[0]


def test_sweep_alpha_moves_away_from_the_content_as_alpha_grows(net):
    content = _content()
    images = gatys.sweep_alpha(content, _style(), [0.0, 0.5, 1.0], loss_net=net, steps=STEPS)
    distances = [float(np.abs(image - content).mean()) for image in images]
    assert len(images) == 3 and distances[0] < distances[1] < distances[2], distances


def test_stylize_input_rules(net):
    content, style = _content(), _style()
    bad = content.copy()
    bad[3, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gatys.stylize(bad, style, loss_net=net, steps=0)
    with pytest.raises(ValueError, match="at least one style"):
        gatys.stylize(content, [], loss_net=net, steps=0)
    with pytest.raises(ValueError, match="1 style weight.*2 style image"):
        gatys.stylize(content, [style, style], style_weights=[1.0], loss_net=net, steps=0)
    with pytest.raises(ValueError, match=">= 0"):
        gatys.stylize(content, [style, style], style_weights=[1.0, -1.0], loss_net=net, steps=0)
    with pytest.raises(ValueError, match="alpha"):
        gatys.stylize(content, style, alpha=1.5, loss_net=net, steps=0)
    with pytest.raises(ValueError, match="0..255|\\[0, 1\\]"):
        gatys.stylize(content * 255, style, loss_net=net, steps=0)
    with pytest.raises(ValueError, match="optimizer"):
        gatys.stylize(content, style, loss_net=net, steps=0, optimizer="sgd")
    with pytest.raises(ValueError, match="no style layer"):
        gatys.stylize(content, style, loss_net=net, steps=0, style_layers=["conv9"])
    with warnings.catch_warnings():  # a grey style is a valid style: no warning
        warnings.simplefilter("error")
        image, _ = gatys.stylize(content, style.mean(-1), loss_net=net, steps=0)
    np.testing.assert_allclose(image, content, atol=1e-5)  # steps 0: the (content) start
    with pytest.warns(UserWarning, match="grey"):
        gatys.stylize(content.mean(-1, keepdims=True), style, loss_net=net, steps=0)
    with pytest.warns(UserWarning, match="alpha channel"):
        image, _ = gatys.stylize(np.concatenate([content, np.ones_like(content[..., :1])], -1), style,
                                 loss_net=net, steps=0)
    assert image.shape == (32, 32, 3)


# -- Deep Dream ------------------------------------------------------------------------------------

def test_dream_raises_its_layer_objective_and_changes_the_image(net):
    image = _content()
    out, values = deep_dream.dream(image, loss_net=net, layer="relu2_1", steps=5, octaves=2, jitter=4,
                                   strength=0.02, history=True)
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert len(values) == 2 and values[-1][-1] > values[-1][0]
    before = float(deep_dream.dream_objective(jnp.asarray(image)[None], net, "relu2_1"))
    after = float(deep_dream.dream_objective(jnp.asarray(out)[None], net, "relu2_1"))
    assert after > 1.5 * before, (before, after)
    assert np.abs(out - image).mean() > 0.01


def test_dream_unknown_layer_lists_the_valid_ones(net):
    with pytest.raises(ValueError, match="no layer 'conv5_4'; valid layers: relu1_1, relu1_2, .*relu4_2"):
        deep_dream.dream(_content(), loss_net=net, layer="conv5_4")


def test_dream_octaves_are_smallest_first_and_skip_tiny_scales():
    assert deep_dream.octave_shapes(64, 48, 3, 2.0) == [(16, 12), (32, 24), (64, 48)][1:]  # 12 px < MIN_SIDE
    assert deep_dream.octave_shapes(100, 100, 2, 1.4) == [(71, 71), (100, 100)]


# -- CLI -------------------------------------------------------------------------------------------

def test_cli_defaults_are_the_modules_defaults():
    args = cli.build_parser().parse_args(["stylize", "--content", "c", "--style", "s", "--out", "o.png"])
    assert (args.content_weight, args.style_weight, args.tv_weight, args.lr) == (
        gatys.DEFAULT_CONTENT_WEIGHT, gatys.DEFAULT_STYLE_WEIGHT, gatys.DEFAULT_TV_WEIGHT, gatys.DEFAULT_ADAM_LR)
    args = cli.build_parser().parse_args(["dream", "--image", "i", "--layer", "relu3_1", "--out", "o.png"])
    defaults = inspect.signature(deep_dream.dream).parameters
    for name in ("strength", "steps", "octaves", "octave_scale", "jitter", "seed"):
        assert getattr(args, name) == defaults[name].default, name


def test_cli_stylize_writes_one_file_or_one_per_alpha_and_a_strip(tmp_path, capsys):
    content = _png(tmp_path / "content.png", _content())
    style = _png(tmp_path / "style.png", _style())
    grey = _png(tmp_path / "grey.png", _style(3).mean(-1))
    common = ["--content", content, "--style", style, "--size", "32", "--steps", "3"]
    out = tmp_path / "styled.png"
    assert cli.main(["stylize", *common, "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)
    assert cli.main(["stylize", *common, "--out", str(out)]) == 2  # exists: refused like `apply`
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["stylize", *common, "--style", grey, "--style-weights", "1", "1", "--alphas", "0.2", "0.8",
                     "--out", str(tmp_path / "sweep.png")]) == 0
    assert "grey" in capsys.readouterr().err  # a note, not an error
    for name in ("sweep_alpha0.2.png", "sweep_alpha0.8.png"):
        assert np.asarray(Image.open(tmp_path / name)).shape == (32, 32, 3)
    strip = np.asarray(Image.open(tmp_path / "sweep_strip.png"))
    assert strip.shape[0] == 32 and strip.shape[1] == 5 * 32 + 4 * 4  # content, 2 results, 2 styles


def test_cli_stylize_fails_cleanly(tmp_path, capsys):
    content = _png(tmp_path / "content.png", _content())
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    cases = [
        (["--content", str(tmp_path / "missing.png"), "--style", content], "does not exist"),
        (["--content", content, "--style", str(tmp_path / "broken.jpg")], "not an image file"),
        (["--content", content, "--style", content, "--style-weights", "1", "2"], "2 style weight"),
        (["--content", content, "--style", content, "--alpha", "2"], "alpha must lie in [0, 1]"),
        (["--content", content, "--style", content, "--loss-net", "alexnet"], "unknown loss network"),
    ]
    for extra, message in cases:
        assert cli.main(["stylize", *extra, "--size", "32", "--steps", "1", "--out", str(tmp_path / "o.png")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert cli.main(["stylize", "--content", content, "--style", content, "--out",
                     str(tmp_path / "no_such_folder" / "o.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_cli_dream_writes_its_file_and_fails_cleanly(tmp_path, capsys):
    image = _png(tmp_path / "image.png", _content())
    out = tmp_path / "dream.png"
    common = ["--size", "32", "--steps", "3", "--octaves", "2", "--jitter", "4"]
    assert cli.main(["dream", "--image", image, "--layer", "relu2_1", *common, "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)
    capsys.readouterr()
    assert cli.main(["dream", "--image", image, "--layer", "fc7", *common, "--out", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert "valid layers: relu1_1" in err and err.count("\n") == 1
    assert cli.main(["dream", "--image", str(tmp_path / "missing.png"), "--layer", "relu2_1", *common,
                     "--out", str(tmp_path / "d.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "d.png").exists()
