"""Control sweeps, their reports and plots (ctl_jax.eval.sweep / report / plots)."""

import dataclasses
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax import Control
from ctl_jax.degradations import jpeg_compress
from ctl_jax.eval.metrics import psnr, ssim
from ctl_jax.eval.plots import image_strip, per_pixel_demo, plot_psnr_vs_alpha
from ctl_jax.eval.report import read_sweep_json, write_report
from ctl_jax.eval.sweep import (METRICS, SweepResult, crop_to_multiple, outputs_over_controls, quantise, sweep,
                                sweep_fn)
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.tasks import Restoration
from ctl_jax.train.runs import ControllableModel
from ctl_jax.tuners import make_tuner

NOISE = Restoration("noise", 20, 80)
JPEG = Restoration("jpeg", 10, 40)
LEVELS = [20, 50]
ALPHAS = [0.0, 0.5, 1.0]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def perturb(tree, seed=1, scale=0.01):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def controllable(spec, tuner, theta0, phi, task, name=""):
    """A ControllableModel held in memory (what ``load_run`` returns for a run folder)."""
    return ControllableModel.in_memory(spec, task, theta0, phi, tuner, name=name)


def tuned(channels=3, task=NOISE):
    """Tiny AdaFM-Net with outputs of about 0.1-1 (gain 7 on the init) and a non-trivial FTN-gc16."""
    spec = NetworkSpec("adafm_net", "tiny", channels)
    theta0 = spec.build().init(jax.random.key(0), jnp.zeros((1, 32, 32, channels)))["params"]
    theta0 = jax.tree.map(lambda w: 7.0 * w, theta0)
    tuner = make_tuner("ftn-gc16")
    return controllable(spec, tuner, theta0, perturb(tuner.init(jax.random.key(1), theta0)), task)


def sample_images(channels=3):
    """Two smooth test images; the second is 33x32 and gets cropped to 32x32."""
    yy, xx = np.meshgrid(np.linspace(0, 1, 33), np.linspace(0, 1, 32), indexing="ij")
    a = np.stack([0.5 + 0.4 * np.sin(6 * xx + c) * np.cos(4 * yy) for c in range(channels)], -1)[:32]
    b = np.stack([(xx + yy + c / 3) % 1.0 for c in range(channels)], -1)
    return [a.astype(np.float32), b.astype(np.float32)]


@pytest.fixture(scope="module")
def setup():
    return tuned()


@pytest.fixture(scope="module")
def loop_result(setup):
    return sweep(setup, sample_images(), LEVELS, ALPHAS, seed=3, strategy="loop", progress=False)


def hand_made(name="m", offset=0.0):
    """Levels 20/50/80, alphas 0/0.25/0.5/1, peaks placed by hand."""
    psnr_values = np.array([[30.0, 29.0, 28.0, 25.0],
                            [26.0, 27.0, 27.5, 26.5],
                            [22.0, 23.0, 24.0, 24.5]]) + offset
    ssim_values = np.array([[0.90, 0.91, 0.85, 0.80],
                            [0.70, 0.75, 0.78, 0.77],
                            [0.60, 0.62, 0.64, 0.66]])
    return SweepResult(level_grid=[20, 50, 80], control_grid=[0.0, 0.25, 0.5, 1.0], psnr=psnr_values,
                       ssim=ssim_values, psnr_y=psnr_values + 1, ssim_y=ssim_values, task=NOISE.to_dict(), name=name,
                       input_psnr=[22.1, 14.2, 10.1])


def test_strategies_give_the_same_metrics(setup, loop_result):
    images = sample_images()
    for strategy, kwargs in (("vmap", {}), ("map", {"chunk": 2})):  # chunk 2 of 3 alphas: a remainder too
        other = sweep(setup, images, LEVELS, ALPHAS, seed=3, strategy=strategy, progress=False, **kwargs)
        assert other.strategy == strategy
        for m in METRICS:
            np.testing.assert_allclose(other.metric(m), loop_result.metric(m), rtol=1e-5, atol=1e-5, err_msg=m)
            np.testing.assert_allclose(other.per_image[m], loop_result.per_image[m], rtol=1e-5, atol=1e-5)
    assert loop_result.psnr.shape == (2, 3) and loop_result.per_image["ssim"].shape == (2, 3, 2)
    assert loop_result.level_grid.shape == (2, 1) and loop_result.control_grid.shape == (3, 1)
    np.testing.assert_array_equal(loop_result.levels, LEVELS)
    np.testing.assert_array_equal(loop_result.alphas, ALPHAS)
    assert loop_result.name == "ftn-gc16" and loop_result.task == NOISE.to_dict()
    assert np.ptp(loop_result.psnr[0]) > 0.01  # alpha matters, so the comparison means something


class CountingTuner:
    """Delegates to a tuner and counts how often its ``apply`` is traced or run."""

    def __init__(self, tuner):
        self.tuner, self.calls = tuner, 0

    def apply(self, *args):
        self.calls += 1
        return self.tuner.apply(*args)


def test_sweep_fn_scores_each_control_and_traces_once(setup):
    counting = CountingTuner(setup.tuner)
    model = dataclasses.replace(setup, tuner=counting)
    clean = jnp.asarray(crop_to_multiple(sample_images()[0], 2))[None]
    x = NOISE.eval_input(clean[0], [50], seed=0)[None]
    for strategy in ("loop", "vmap", "map"):
        counting.calls = 0
        evaluate = sweep_fn(model, strategy, chunk=2)
        first = evaluate(x, clean, jnp.asarray([[0.0], [1.0]]))
        assert first.shape == (2, 4, 1)
        traced = counting.calls
        assert traced >= 1
        again = evaluate(x, clean, jnp.asarray([[0.25], [1.0]]))  # new control values: no new trace
        assert counting.calls == traced, strategy
        np.testing.assert_allclose(again[1], first[1], rtol=1e-6)
        assert not np.allclose(again[0], first[0])
    with pytest.raises(ValueError, match="unknown sweep strategy"):
        sweep_fn(setup, "pmap")
    with pytest.raises(ValueError, match="chunk"):
        sweep_fn(setup, "map", chunk=0)


def test_alpha_0_and_1_are_the_base_and_endpoint_networks_scored_as_8_bit(setup, loop_result):
    theta1 = setup.tuner.endpoint(setup.phi, setup.theta0)
    for i, image in enumerate(sample_images()):
        clean = jnp.asarray(crop_to_multiple(image, 2))
        for row, level in enumerate(LEVELS):
            x = jnp.asarray(NOISE.eval_input(clean, [level], seed=3, index=i))[None]
            for col, params in ((0, setup.theta0), (2, theta1)):
                y = setup.network.apply({"params": params}, x)[0]
                y8 = quantise(y)
                np.testing.assert_allclose(np.asarray(y8) * 255, np.round(np.asarray(y8) * 255), atol=1e-4)
                assert float(psnr(y8, clean)) == pytest.approx(loop_result.per_image["psnr"][row, col, i], abs=1e-4)
                assert float(ssim(y8, clean, y_channel=True)) == pytest.approx(
                    loop_result.per_image["ssim_y"][row, col, i], abs=1e-5)
                # the 8-bit scores are not those of the float output
                assert float(psnr(jnp.clip(y, 0, 1), clean)) != pytest.approx(
                    loop_result.per_image["psnr"][row, col, i], abs=1e-6)
    np.testing.assert_allclose(loop_result.psnr, loop_result.per_image["psnr"].mean(-1))
    # the input PSNR is that of the 8-bit degraded inputs, averaged over the images
    for row, level in enumerate(LEVELS):
        values = []
        for i, image in enumerate(sample_images()):
            clean = jnp.asarray(crop_to_multiple(image, 2))
            values.append(float(psnr(quantise(NOISE.eval_input(clean, [level], seed=3, index=i)), clean)))
        assert loop_result.input_psnr[row] == pytest.approx(np.mean(values), abs=1e-4)
    assert loop_result.input_psnr[0] > loop_result.input_psnr[1]


def test_degraded_inputs_are_deterministic_and_per_level():
    clean = sample_images()[0]
    a = NOISE.eval_input(clean, [20], seed=0, index=0)
    np.testing.assert_array_equal(a, NOISE.eval_input(clean, [20], seed=0, index=0))
    assert not np.allclose(a, NOISE.eval_input(clean, [20], seed=0, index=1))
    assert not np.allclose(a, NOISE.eval_input(clean, [20], seed=1, index=0))
    assert np.std(np.asarray(NOISE.eval_input(clean, [50])) - clean) > np.std(np.asarray(a) - clean)
    np.testing.assert_array_equal(JPEG.eval_input(clean, [20]), jpeg_compress(clean, 20))
    assert crop_to_multiple(np.zeros((33, 35, 3)), 4).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="smaller than the required multiple"):
        crop_to_multiple(np.zeros((3, 35, 3)), 4)


def test_grey_jpeg_sweep_uses_the_image_as_y():
    model = tuned(channels=1, task=JPEG)
    result = sweep(model, sample_images(channels=1), [10, 30], [0.0, 1.0], progress=False)
    np.testing.assert_allclose(result.psnr_y, result.psnr, rtol=1e-6)
    np.testing.assert_allclose(result.ssim_y, result.ssim, rtol=1e-6)
    assert result.expected_alpha(30) == pytest.approx(2 / 3)
    assert result.input_psnr.shape == (2,) and result.input_psnr[1] > result.input_psnr[0]
    assert result.level_label(30) == "q=30"


def test_two_dimensional_levels_and_controls(tmp_path):
    """A D = 2 task (noise then JPEG): levels (L, 2) and controls (K, 2) in one call."""
    task = Restoration(("noise", "jpeg"), (20, 10), (80, 40))
    spec = NetworkSpec("adafm_net", "tiny", 3)
    theta0 = spec.build().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    base = controllable(spec, None, theta0, None, task)
    assert base.control_dim == 2
    levels, controls = [[20, 10], [50, 30]], [[0.0, 0.0], [1.0, 0.5], [0.5, 1.0]]
    result = sweep(base, sample_images(), levels, controls, progress=False)
    assert result.psnr.shape == (2, 3) and result.dim == 2
    np.testing.assert_array_equal(result.levels, levels)
    np.testing.assert_array_equal(result.alphas, controls)
    np.testing.assert_allclose(result.psnr, result.psnr[:, :1].repeat(3, 1))  # a base ignores the control
    assert result.level_label([20, 10]) == "σ=20, q=10"
    np.testing.assert_allclose(result.expected_alpha([50, 30]), [0.5, 2 / 3])
    assert len(result.best_control([50, 30])) == 2
    back = SweepResult.from_json(result.to_json())
    np.testing.assert_array_equal(back.level_grid, result.level_grid)
    np.testing.assert_array_equal(back.control_grid, result.control_grid)
    other = dataclasses.replace(result, name="other", psnr=result.psnr + 1)
    paths = write_report(result, tmp_path, title="two levels", method_results={"other": other})
    assert "plot" not in paths and not (tmp_path / "psnr_vs_alpha.png").exists()  # curves need D = 1
    assert not any(k.startswith("plot_") for k in paths)  # these controls are no full grid: no heat map
    md = paths["markdown"].read_text()
    assert "## base" in md and "## other" in md  # the primary result is reported too
    rows = table_rows(md, "| levels | expected control | best control |")
    assert [row[:2] for row in rows] == [["σ=20, q=10", "(0, 0)"], ["σ=50, q=30", "(0.5, 0.667)"]]
    assert rows[1][3] == f"{result.best_value([50, 30]):.2f}"
    back = read_sweep_json(paths["json"])
    assert list(back) == ["base", "other"]
    np.testing.assert_array_equal(back["other"].psnr, other.psnr)
    grid = [[a, b] for a in (0.0, 1.0) for b in (0.0, 0.5, 1.0)]  # a full 2 x 3 grid: heat maps
    full = sweep(base, sample_images()[:1], levels, grid, progress=False)
    paths = write_report(full, tmp_path / "grid", title="grid")
    assert paths["plot_base"].read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        sweep(base, sample_images(), levels, [0.0, 1.0], progress=False)
    with pytest.raises(ValueError, match="D = 2"):
        sweep(base, sample_images(), [[20, 10, 5]], controls, progress=False)


def test_best_and_expected_alpha():
    r = hand_made()
    assert [r.best_alpha(lv) for lv in (20, 50, 80)] == [0.0, 0.5, 1.0]
    assert [r.best_alpha(lv, "ssim") for lv in (20, 50, 80)] == [0.25, 0.5, 1.0]
    assert r.best_value(50) == 27.5
    assert [r.expected_alpha(lv) for lv in (20, 50, 80)] == [0.0, 0.5, 1.0]
    assert r.expected_alpha(35) == pytest.approx(0.25)  # the mapping, also for levels not swept
    np.testing.assert_array_equal(r.best_control(50), [0.5])
    with pytest.raises(ValueError, match="not swept"):
        r.best_alpha(30)
    with pytest.raises(ValueError, match="unknown metric"):
        r.best_alpha(20, "mse")


def test_json_round_trip(loop_result):
    for result in (hand_made(), loop_result):
        back = SweepResult.from_json(result.to_json())
        assert back.task == result.task and back.name == result.name
        for field in ("level_grid", "control_grid", "levels", "alphas", "input_psnr") + METRICS:
            np.testing.assert_array_equal(getattr(back, field), getattr(result, field))
    back = SweepResult.from_json(loop_result.to_json())
    for m in METRICS:
        np.testing.assert_array_equal(back.per_image[m], loop_result.per_image[m])
    assert back.best_alpha(50) == loop_result.best_alpha(50)


def table_rows(markdown: str, header_start: str) -> list[list[str]]:
    """Cells of the first Markdown table whose header starts with ``header_start`` (bold removed)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().replace("**", "") for c in line.strip("|").split("|")])
    return rows


def test_report_files_and_tables(tmp_path):
    main = hand_made("ftn-gc16")
    methods = {"ftn-gc16": main, "adafm": hand_made("adafm", -0.5), "dni": hand_made("dni", 0.25)}
    paths = write_report(main, tmp_path, title="tiny report", method_results=methods)
    for name in ("sweep.json", "sweep.md", "psnr_vs_alpha.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert paths["plot"].read_bytes().startswith(PNG_MAGIC)
    assert not list(tmp_path.glob("sweep_*.json"))  # every method lives in sweep.json
    back = read_sweep_json(tmp_path / "sweep.json")
    assert list(back) == ["ftn-gc16", "adafm", "dni"]
    for name, result in methods.items():
        assert back[name].name == name
        np.testing.assert_array_equal(back[name].psnr, result.psnr)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writes leave no temporary files
    md = (tmp_path / "sweep.md").read_text()
    assert md.startswith("# tiny report")
    assert "outputs scored as 8-bit images" in md
    assert "noise: level A σ=20 at control 0, level B σ=80 at control 1" in md

    psnr_rows = table_rows(md, "| level \\ α | 0 | 0.25 | 0.5 | 1 |")
    assert [row[0] for row in psnr_rows] == ["σ=20", "σ=50", "σ=80"]
    assert [[float(c) for c in row[1:]] for row in psnr_rows] == main.psnr.tolist()
    assert "**27.50**" in md

    best_rows = table_rows(md, "| level | expected α | best α (PSNR)")
    assert [row[:4] for row in best_rows] == [["σ=20", "0", "0", "30.00"], ["σ=50", "0.5", "0.5", "27.50"],
                                              ["σ=80", "1", "1", "24.50"]]

    compare = table_rows(md, "| level | ftn-gc16 | adafm | dni |")
    assert compare[1] == ["σ=50", "27.50 (α=0.5)", "27.00 (α=0.5)", "27.75 (α=0.5)"]
    assert re.search(r"\| σ=50 \| 27\.50 \(α=0\.5\) \| 27\.00 \(α=0\.5\) \| \*\*27\.75 \(α=0\.5\)\*\* \|", md)

    ssim_at = md.index("\nSSIM (RGB):")
    ssim_rows = table_rows(md[ssim_at:], "| level \\ α")
    assert [[float(c) for c in row[1:]] for row in ssim_rows] == main.ssim.tolist()

    with pytest.raises(ValueError, match="another result named"):
        write_report(hand_made("adafm"), tmp_path, title="clash", method_results={"adafm": main})


def test_report_of_one_method_from_a_sweep(loop_result, tmp_path):
    paths = write_report(loop_result, tmp_path, title="one method")
    md = paths["markdown"].read_text()
    assert "## Comparison" not in md and "## ftn-gc16" in md
    rows = table_rows(md, "| level \\ α")
    np.testing.assert_allclose([[float(c) for c in row[1:]] for row in rows], loop_result.psnr, atol=0.006)
    assert list(json.loads(paths["json"].read_text())) == ["ftn-gc16"]


def test_plots_are_written(setup, tmp_path):
    clean = crop_to_multiple(sample_images()[0], 2)
    noisy = np.asarray(NOISE.eval_input(clean, [50]))
    outputs = outputs_over_controls(setup, noisy, ALPHAS)
    assert outputs.shape == (3, 32, 32, 3) and outputs.min() >= 0 and outputs.max() <= 1
    np.testing.assert_allclose(outputs * 255, np.round(outputs * 255), atol=1e-4)  # the 8-bit images
    np.testing.assert_array_equal(outputs[2], np.asarray(quantise(setup(noisy[None], Control.scalar(1.0))))[0])
    files = [
        image_strip(list(outputs), ALPHAS, tmp_path / "strip.png", degraded=noisy, clean=clean),
        image_strip(list(outputs[..., :1]), ALPHAS, tmp_path / "grey.png", labels=["a", "b", "c"]),
        per_pixel_demo(noisy, outputs[1], np.tile(np.linspace(0, 1, 8), (8, 1)), tmp_path / "pixel.png"),
        plot_psnr_vs_alpha(hand_made(), tmp_path / "curves.png", "one"),
        plot_psnr_vs_alpha({"a": hand_made(), "b": hand_made(offset=1)}, tmp_path / "two.png", "two"),
    ]
    for path in files:
        data = open(path, "rb").read()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, path
    with pytest.raises(ValueError, match="3 alphas"):
        image_strip(list(outputs[:2]), ALPHAS, tmp_path / "bad.png")


def test_bad_arguments_have_clear_errors(setup):
    images = sample_images()
    with pytest.raises(ValueError, match="unknown sweep strategy"):
        sweep(setup, images, LEVELS, ALPHAS, strategy="pmap", progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sweep(setup, [images[0] * 255], LEVELS, ALPHAS, progress=False)
    with pytest.raises(ValueError, match="finite"):
        sweep(setup, images, LEVELS, [0.0, float("nan")], progress=False)
    with pytest.raises(ValueError, match="jpeg quality must be a whole number"):
        sweep(tuned(task=JPEG), images, [10.5], ALPHAS, progress=False)
    with pytest.raises(ValueError, match="sigma must lie in"):
        sweep(setup, images, [300], ALPHAS, progress=False)
    with pytest.raises(ValueError, match="at least one test image"):
        sweep(setup, [], LEVELS, ALPHAS, progress=False)
    with pytest.raises(ValueError, match="2 image names for 1 images"):
        sweep(setup, images[:1], LEVELS, ALPHAS, progress=False, image_names=["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        SweepResult(level_grid=[1], control_grid=[0, 1], psnr=[[1, 2, 3]], ssim=[[1, 2]], psnr_y=[[1, 2]],
                    ssim_y=[[1, 2]], task=NOISE.to_dict())


def _levels_result(name, controls, psnr):
    task = {"kind": "restoration", "degradations": ["noise"], "level_a": [15], "level_b": [50]}
    psnr = np.asarray(psnr, float)
    return SweepResult(level_grid=[15, 30, 50], control_grid=controls, psnr=psnr, ssim=psnr / 100, psnr_y=psnr,
                       ssim_y=psnr / 100, task=task, name=name)


def test_gap_table_and_level_plot_against_from_scratch(tmp_path):
    from ctl_jax.eval.report import gap_table

    # at sigma 30 (the only unseen level) the tuner's best is 27.5 at alpha 0.5, the linear alpha is
    # 15/35 = 0.4286, the dedicated network scores 28.0: gap -0.50 dB, |best - linear| 0.07
    tuner = _levels_result("ftn", [0.0, 0.5, 1.0], [[31, 29, 20], [26, 27.5, 25], [18, 24, 26]])
    scratch = _levels_result("from scratch", [0.0], [[31], [28], [26.2]])
    methods = {"ftn": tuner, "from scratch": scratch}
    table = gap_table(methods)
    row = next(line for line in table.splitlines() if line.startswith("| ftn"))
    assert row == "| ftn | -0.50 | – | 0.07 | 1 / 0 |"
    assert gap_table({"ftn": tuner}) == ""
    paths = write_report(tuner, tmp_path, title="t", method_results=methods)
    assert paths["levels_plot"].stat().st_size > 0
    assert "mean gap to from scratch" in paths["markdown"].read_text()
