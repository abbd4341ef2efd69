"""Alpha sweeps, their reports and plots (ctl_jax.eval.sweep / report / plots)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.data.degrade import Degradation, jpeg_compress
from ctl_jax.eval.metrics import psnr, ssim
from ctl_jax.eval.plots import image_strip, per_pixel_demo, plot_psnr_vs_alpha
from ctl_jax.eval.report import write_report
from ctl_jax.eval.sweep import METRICS, SweepResult, crop_to_multiple, degrade, outputs_over_alphas, sweep
from ctl_jax.nets.adafm_net import adafm_net
from ctl_jax.tuning import make_tuner

NOISE = Degradation("noise", 20, 80)
LEVELS = [20, 50]
ALPHAS = [0.0, 0.5, 1.0]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def perturb(tree, seed=1, scale=0.01):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def tuned(channels=3):
    """Tiny AdaFM-Net with outputs of about 0.1-1 (gain 7 on the init) and a non-trivial FTN-gc16."""
    model = adafm_net("tiny", channels=channels)
    theta0 = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, channels)))["params"]
    theta0 = jax.tree.map(lambda w: 7.0 * w, theta0)
    tuner = make_tuner("ftn-gc16")
    return model, tuner, theta0, perturb(tuner.init(jax.random.key(1), theta0))


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
    return sweep(*setup, sample_images(), NOISE, LEVELS, ALPHAS, seed=3, strategy="loop", progress=False)


def hand_made(name="m", offset=0.0):
    """Levels 20/50/80, alphas 0/0.25/0.5/1, peaks placed by hand."""
    psnr_values = np.array([[30.0, 29.0, 28.0, 25.0],
                            [26.0, 27.0, 27.5, 26.5],
                            [22.0, 23.0, 24.0, 24.5]]) + offset
    ssim_values = np.array([[0.90, 0.91, 0.85, 0.80],
                            [0.70, 0.75, 0.78, 0.77],
                            [0.60, 0.62, 0.64, 0.66]])
    return SweepResult(levels=[20, 50, 80], alphas=[0.0, 0.25, 0.5, 1.0], psnr=psnr_values, ssim=ssim_values,
                       psnr_y=psnr_values + 1, ssim_y=ssim_values, degradation=NOISE, name=name,
                       input_psnr=[22.1, 14.2, 10.1])


def test_strategies_give_the_same_metrics(setup, loop_result):
    images = sample_images()
    for strategy, kwargs in (("vmap", {}), ("map", {"chunk": 2})):  # chunk 2 of 3 alphas: a remainder too
        other = sweep(*setup, images, NOISE, LEVELS, ALPHAS, seed=3, strategy=strategy, progress=False, **kwargs)
        assert other.strategy == strategy
        for m in METRICS:
            np.testing.assert_allclose(other.metric(m), loop_result.metric(m), rtol=1e-5, atol=1e-5, err_msg=m)
            np.testing.assert_allclose(other.per_image[m], loop_result.per_image[m], rtol=1e-5, atol=1e-5)
    assert loop_result.psnr.shape == (2, 3) and loop_result.per_image["ssim"].shape == (2, 3, 2)
    assert np.ptp(loop_result.psnr[0]) > 0.01  # alpha matters, so the comparison means something


def test_alpha_0_and_1_are_the_base_and_endpoint_networks(setup, loop_result):
    model, tuner, theta0, phi = setup
    theta1 = tuner.endpoint(phi, theta0)
    for i, image in enumerate(sample_images()):
        clean = jnp.asarray(crop_to_multiple(image, 2))
        for row, level in enumerate(LEVELS):
            x = jnp.asarray(degrade(clean, NOISE, level, seed=3, index=i))[None]
            for col, params in ((0, theta0), (2, theta1)):
                y = jnp.clip(model.apply({"params": params}, x), 0, 1)[0]
                assert float(psnr(y, clean)) == pytest.approx(loop_result.per_image["psnr"][row, col, i], abs=1e-4)
                assert float(ssim(y, clean, y_channel=True)) == pytest.approx(
                    loop_result.per_image["ssim_y"][row, col, i], abs=1e-5)
    np.testing.assert_allclose(loop_result.psnr, loop_result.per_image["psnr"].mean(-1))


def test_degraded_inputs_are_deterministic_and_per_level():
    clean = sample_images()[0]
    a = degrade(clean, NOISE, 20, seed=0, index=0)
    np.testing.assert_array_equal(a, degrade(clean, NOISE, 20, seed=0, index=0))
    assert not np.allclose(a, degrade(clean, NOISE, 20, seed=0, index=1))
    assert not np.allclose(a, degrade(clean, NOISE, 20, seed=1, index=0))
    assert np.std(np.asarray(degrade(clean, NOISE, 50)) - clean) > np.std(np.asarray(a) - clean)
    np.testing.assert_array_equal(degrade(clean, Degradation("jpeg", 10, 40), 20), jpeg_compress(clean, 20))
    assert crop_to_multiple(np.zeros((33, 35, 3)), 4).shape == (32, 32, 3)


def test_grey_jpeg_sweep_uses_the_image_as_y():
    model, tuner, theta0, phi = tuned(channels=1)
    result = sweep(model, tuner, theta0, phi, sample_images(channels=1), Degradation("jpeg", 10, 40), [10, 30],
                   [0.0, 1.0], progress=False)
    np.testing.assert_allclose(result.psnr_y, result.psnr, rtol=1e-6)
    np.testing.assert_allclose(result.ssim_y, result.ssim, rtol=1e-6)
    assert result.expected_alpha(30) == pytest.approx(2 / 3)
    assert result.input_psnr.shape == (2,) and result.input_psnr[1] > result.input_psnr[0]


def test_best_and_expected_alpha():
    r = hand_made()
    assert [r.best_alpha(lv) for lv in (20, 50, 80)] == [0.0, 0.5, 1.0]
    assert [r.best_alpha(lv, "ssim") for lv in (20, 50, 80)] == [0.25, 0.5, 1.0]
    assert r.best_value(50) == 27.5
    assert [r.expected_alpha(lv) for lv in (20, 50, 80)] == [0.0, 0.5, 1.0]
    assert r.expected_alpha(35) == pytest.approx(0.25)  # the mapping, also for levels not swept
    with pytest.raises(ValueError, match="not swept"):
        r.best_alpha(30)
    with pytest.raises(ValueError, match="unknown metric"):
        r.best_alpha(20, "mse")


def test_json_round_trip(loop_result):
    for result in (hand_made(), loop_result):
        back = SweepResult.from_json(result.to_json())
        assert back.degradation == result.degradation and back.name == result.name
        for field in ("levels", "alphas", "input_psnr") + METRICS:
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
    for name in ("sweep.json", "sweep.md", "psnr_vs_alpha.png", "sweep_adafm.json", "sweep_dni.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert paths["plot"].read_bytes().startswith(PNG_MAGIC)
    assert SweepResult.from_json((tmp_path / "sweep.json").read_text()).name == "ftn-gc16"
    md = (tmp_path / "sweep.md").read_text()
    assert md.startswith("# tiny report")

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


def test_report_of_one_method_from_a_sweep(loop_result, tmp_path):
    paths = write_report(loop_result, tmp_path, title="one method")
    md = paths["markdown"].read_text()
    assert "## Comparison" not in md and "## ftn-gc16" in md
    rows = table_rows(md, "| level \\ α")
    np.testing.assert_allclose([[float(c) for c in row[1:]] for row in rows], loop_result.psnr, atol=0.006)


def test_plots_are_written(setup, tmp_path):
    model, tuner, theta0, phi = setup
    clean = crop_to_multiple(sample_images()[0], 2)
    noisy = degrade(clean, NOISE, 50)
    outputs = outputs_over_alphas(model, tuner, theta0, phi, noisy, ALPHAS)
    assert outputs.shape == (3, 32, 32, 3) and outputs.min() >= 0 and outputs.max() <= 1
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
        sweep(*setup, images, NOISE, LEVELS, ALPHAS, strategy="pmap", progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sweep(*setup, [images[0] * 255], NOISE, LEVELS, ALPHAS, progress=False)
    with pytest.raises(ValueError, match="finite"):
        sweep(*setup, images, NOISE, LEVELS, [0.0, float("nan")], progress=False)
    with pytest.raises(ValueError, match="JPEG quality"):
        sweep(*setup, images, Degradation("jpeg", 10, 40), [10.5], ALPHAS, progress=False)
    with pytest.raises(ValueError, match="shape"):
        SweepResult(levels=[1], alphas=[0, 1], psnr=[[1, 2, 3]], ssim=[[1, 2]], psnr_y=[[1, 2]], ssim_y=[[1, 2]],
                    degradation=NOISE)
