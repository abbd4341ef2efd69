"""Decoupled learning end to end: operator cache, sampler, gamma space, training, loading, CLI."""

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ctl_jax import Control
from ctl_jax.cli import load_config, main
from ctl_jax.data.images import write_image
from ctl_jax.data.operator_pairs import OperatorPairSampler, load_operator_cache, prepare_operator_cache
from ctl_jax.operator_pipeline import evaluate_operator_model, train_operator_model, tuner_of, with_overrides
from ctl_jax.tasks.operators import OperatorImitation
from ctl_jax.train.runs import load_run
from ctl_jax.tuners.gamma import GammaSpace

ROOT = pathlib.Path(__file__).resolve().parents[1]


def smoke_config(**changes):
    return with_overrides(load_config(f"{ROOT / 'experiments' / 'operators.py'}:smoke"), **changes)


def photos(n=2, size=40):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    return [np.clip(np.stack([xx, yy, (xx + yy) / 2], -1) * (0.5 + 0.5 * (xx > 0.3 + 0.2 * k))[..., None]
                    + 0.05 * rng.standard_normal((size, size, 3)), 0, 1).astype(np.float32) for k in range(n)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    prepare_operator_cache(photos(), ["a", "b"], ["l0", "denoise"], out, per_image=2, crop=32, progress=False)
    return out


def test_cache_holds_every_pair_and_reruns_reuse_it(cache):
    pairs = load_operator_cache(cache)
    assert len(pairs) == 2 * 2 * 2
    for p in pairs:
        assert p.input.shape == p.target.shape == (32, 32, 3) and p.input.dtype == np.uint8
        spec_low, spec_high = {"l0": (0.002, 0.2), "denoise": (10, 70)}[p.operator]
        assert spec_low <= p.value <= spec_high
    denoise = [p for p in pairs if p.operator == "denoise"][0]
    assert np.abs(denoise.input.astype(int) - denoise.target).mean() > 2  # the input is the noisy one
    stamps = {f: f.stat().st_mtime_ns for f in cache.glob("*.npz")}
    prepare_operator_cache(photos(), ["a", "b"], ["l0", "denoise"], cache, per_image=2, crop=32, progress=False)
    assert {f: f.stat().st_mtime_ns for f in cache.glob("*.npz")} == stamps
    with pytest.raises(ValueError, match="holds a cache made with"):
        prepare_operator_cache(photos(), ["a", "b"], ["l0"], cache, per_image=3, crop=32, progress=False)


def test_gamma_space_encodes_and_refuses():
    one, two = GammaSpace(("l0",)), GammaSpace(("l0", "denoise"))
    np.testing.assert_allclose(one.encode("l0", 0.02), [0.5], atol=1e-6)  # the log-midpoint of [0.002, 0.2]
    np.testing.assert_allclose(two.encode("denoise", 40), [0.5, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"\[0.002, 0.2\]"):
        one.encode("l0", 0.5)
    np.testing.assert_allclose(one.encode("l0", 0.5, clamp=True), [1.0])
    with pytest.raises(ValueError, match="trained on \\['l0'\\], not on 'wls'"):
        one.encode("wls", 1.0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        two.check([0.5])
    with pytest.raises(ValueError, match="unknown"):
        GammaSpace(("nope",))


def test_sampler_is_deterministic_and_crops_pairs_together(cache):
    pairs = load_operator_cache(cache)
    space = GammaSpace(("l0", "denoise"))
    sampler = OperatorPairSampler(pairs, space, patch_size=16, batch_size=4, seed=3)
    a, b = sampler.batch(5), OperatorPairSampler(pairs, space, 16, 4, seed=3).batch(5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    inputs, targets, gammas = a
    assert inputs.shape == targets.shape == (4, 16, 16, 3) and gammas.shape == (4, 2)
    encoded = {tuple(space.encode(p.operator, p.value)) for p in pairs}
    assert all(tuple(g) in encoded for g in gammas)
    # the same crop of input and target: the l0 target is a smoothed input, close to it
    for x, y, g in zip(inputs, targets, gammas):
        if g[1] == 0.5:
            assert np.abs(x - y).mean() < 0.1


@pytest.mark.parametrize("method", ["hyper", "baseline18"])
def test_train_load_apply_and_evaluate(cache, tmp_path, method, capsys):
    config = smoke_config(method=method, operators=["l0", "denoise"])
    run = tmp_path / "run"
    model = train_operator_model(config, cache, run)
    assert model.tuner.kind == ("conditional" if method == "baseline18" else "hypernetwork")
    assert model.tuner == tuner_of(config, model.task) and model.control_dim == 2 and model.theta0 == {}
    assert model.task == OperatorImitation(("l0", "denoise"))
    x = jnp.asarray(photos(1, 16)[0])[None]
    gamma_a = Control.vector(model.task.control_for([0.01], "l0"))
    out_a = model(x, gamma_a)
    out_b = model(x, Control.vector(model.task.control_for([30], "denoise")))
    assert out_a.shape == x.shape and np.all(np.isfinite(out_a))
    assert out_b.shape == x.shape and float(jnp.abs(out_a - out_b).max()) > 0
    per_sample = model(jnp.concatenate([x, x]), Control.per_sample([gamma_a.values[0, 0, 0], [0.5, 1.0]]))
    np.testing.assert_allclose(per_sample[0], out_a[0], atol=1e-5)
    scores = evaluate_operator_model(model, cache, "l0")
    assert len(scores) == 4 and all(np.isfinite(s["psnr"]) and s["images"] == 1 for s in scores.values())
    with pytest.raises(TypeError, match="ambiguous"):  # a bare gamma vector: say which control form
        model(x, jnp.zeros((2,)))
    with pytest.raises(ValueError, match="takes 2-dimensional control; got a 3-dimensional one"):
        model(x, Control.vector(jnp.zeros((3,))))
    with pytest.raises(ValueError, match="say which operator"):
        model.task.control_for([0.01])
    np.testing.assert_array_equal(load_run(run)(x, gamma_a), out_a)
    # the command line: --operator says which one, --param its value (or --alpha the raw gamma)
    image, out = tmp_path / "in.png", tmp_path / "out.png"
    write_image(image, photos(1, 16)[0])
    apply = ["apply", "--model", str(run), "--input", str(image), "--output", str(out), "--overwrite"]
    assert main(apply + ["--operator", "l0", "--param", "0.01"]) == 0
    by_param = np.asarray(Image.open(out))
    assert main(apply + ["--alpha", *map(str, gamma_a.values.ravel().tolist())]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), by_param)
    assert main(apply + ["--param", "0.01"]) == 2
    assert "say which operator" in capsys.readouterr().err
    assert main(apply + ["--alpha", "0.5"]) == 2
    assert "takes 2 control value(s); got 1" in capsys.readouterr().err


@pytest.mark.parametrize("method, operators", [
    ("hyper", ["l0"]),
    ("baseline18", ["l0"]),  # stored by name: Conditional() is the registered "conditional"
    ("baseline18", ["l0", "denoise"]),
])
def test_rerun_resumes_without_training_again(cache, tmp_path, method, operators):
    config, run = smoke_config(method=method, operators=operators), tmp_path / "run"
    model = train_operator_model(config, cache, run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    again = train_operator_model(config, cache, run)
    assert again.step == model.step and sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    x = jnp.asarray(photos(1, 16)[0])[None]
    gamma = Control.vector(np.full((len(operators),), 0.5))
    np.testing.assert_array_equal(again(x, gamma), model(x, gamma))


def test_fixed_values_select_the_single_parameter_pairs(tmp_path):
    cache = tmp_path / "fixed"
    prepare_operator_cache(photos(), ["a", "b"], ["l0"], cache, values=[0.01, 0.1], crop=32, progress=False)
    assert sorted({p.value for p in load_operator_cache(cache)}) == [0.01, 0.1]
    model = train_operator_model(smoke_config(values={"l0": [0.1]}), cache, tmp_path / "single")
    assert set(evaluate_operator_model(model, cache, "l0")) == {0.01, 0.1}
    with pytest.raises(ValueError, match="no pairs at the requested values"):
        train_operator_model(smoke_config(values={"l0": [0.05]}), cache, tmp_path / "none")


def test_grid_caches_share_values_across_images(tmp_path):
    from ctl_jax.operators import get_operator

    assert get_operator("l0").grid(3) == [0.002, 0.02, 0.2]
    assert get_operator("super_resolution").grid(5) == [2.0, 3.0, 4.0]  # whole scales, no duplicates
    cache = tmp_path / "grid"
    assert main(["prepare-ops", "--operators", "l0", "super_resolution", "--max-images", "2", "--grid", "3",
                 "--crop", "32", "--out", str(cache)]) == 0
    pairs = load_operator_cache(cache)
    assert sorted({p.value for p in pairs if p.operator == "l0"}) == [0.002, 0.02, 0.2]
    assert len(pairs) == 2 * (3 + 3)
    other = prepare_operator_cache(photos(), ["a", "b"], ["denoise"], tmp_path / "other", values=[30.0], crop=32,
                                   progress=False)
    both = load_operator_cache([cache, other], ["l0", "denoise"])  # several caches train one model
    assert len(both) == 2 * 3 + 2 and {p.operator for p in both} == {"l0", "denoise"}


def test_cli_prepare_train_apply(tmp_path, capsys):
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["prepare-ops", "--operators", "l0", "--max-images", "2", "--per-image", "1", "--crop", "32",
                 "--out", str(cache)]) == 0
    assert main(["train-ops", "--config", str(ROOT / "experiments" / "operators.py") + ":smoke",
                 "--cache", str(cache), "--workdir", str(run)]) == 0
    image = tmp_path / "in.png"
    write_image(image, photos(1, 21)[0])  # odd size: padded and cropped back
    out = tmp_path / "out.png"
    assert main(["apply", "--model", str(run), "--input", str(image), "--output", str(out), "--param", "0.05"]) == 0
    assert np.asarray(Image.open(out)).shape == (21, 21, 3)
    assert main(["apply", "--model", str(run), "--input", str(image), "--output", str(out), "--param", "5",
                 "--overwrite"]) == 2
    assert "[0.002, 0.2]" in capsys.readouterr().err
    # an operator model's --alpha is gamma itself: 0.5 is the log-midpoint 0.02 of [0.002, 0.2], 1 the top
    for param, alpha in (("0.02", "0.5"), ("0.2", "1")):
        assert main(["apply", "--model", str(run), "--input", str(image), "--output", str(out), "--param", param,
                     "--overwrite"]) == 0
        by_param = np.asarray(Image.open(out))
        assert main(["apply", "--model", str(run), "--input", str(image), "--output", str(out), "--alpha", alpha,
                     "--overwrite"]) == 0
        np.testing.assert_array_equal(np.asarray(Image.open(out)), by_param)
    assert main(["apply", "--model", str(run), "--input", str(image), "--output", str(out), "--param", "0.02",
                 "--operator", "wls", "--overwrite"]) == 2
    assert "trained on ['l0'], not on 'wls'" in capsys.readouterr().err
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 21).astype(np.uint8), (21, 1))).save(mask)
    assert main(["apply", "--model", str(run), "--input", str(image), "--output", str(out), "--alpha-map",
                 str(mask), "--overwrite"]) == 2  # a hypernetwork predicts one set of weights per image
    assert "per-pixel" in capsys.readouterr().err


def test_shared_gamma_batches_hold_one_value_and_train(tmp_path):
    cache = tmp_path / "grid"
    prepare_operator_cache(photos(3), ["a", "b", "c"], ["l0"], cache, values=[0.01, 0.1], crop=32, progress=False)
    pairs = load_operator_cache(cache)
    sampler = OperatorPairSampler(pairs, GammaSpace(("l0",)), 16, 4, seed=0, shared_gamma=True)
    seen = set()
    for step in range(8):
        gammas = sampler.batch(step)[2]
        assert np.all(gammas == gammas[0])
        seen.add(float(gammas[0, 0]))
    assert len(seen) == 2
    model = train_operator_model(smoke_config(per_sample="shared"), cache, tmp_path / "run")
    assert len(evaluate_operator_model(model, cache, "l0")) == 2
    one_image_per_value = [p for p in pairs if p.value == 0.01][:1] + [p for p in pairs if p.value == 0.1][:1]
    with pytest.raises(ValueError, match="fixed values"):
        OperatorPairSampler(one_image_per_value, GammaSpace(("l0",)), 16, 4, 0, shared_gamma=True)


def load_experiment(name: str):
    """An experiments/ script as a module (its main() is not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decouple_tables_denoiser_on_the_table2_protocol(tmp_path):
    tables = load_experiment("decouple_tables")
    with pytest.raises(SystemExit, match="pass --train FOLDER"):  # ../shared absent: one line, what to pass
        tables.main(["--train", str(tmp_path / "none"), "--test", str(tmp_path), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="pass --test FOLDER"):
        tables.main(["--train", str(tmp_path), "--test", str(tmp_path / "none"), "--out", str(tmp_path / "out")])
    cache = prepare_operator_cache(photos(), ["a", "b"], ["denoise_20_80"], tmp_path / "cache", values=[20.0, 80.0],
                                   crop=32, progress=False)
    model = train_operator_model(smoke_config(operators=["denoise_20_80"]), cache, tmp_path / "run")
    test = tmp_path / "test"
    test.mkdir()
    for i, image in enumerate(photos(2, 36)):
        write_image(test / f"{i}.png", image)
    rows = tables.table2_protocol(model, test)
    assert len(rows) == 4 and all(np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in rows.values())
    assert "| sigma 20, Table 2 protocol (2 images, 128x128) |" in tables.markdown({"denoise": rows})


def test_operator_presets_and_tuner_of():
    for preset in ("cpu", "paper", "smoke"):
        config = load_config(f"{ROOT / 'experiments' / 'operators.py'}:{preset}")
        tuner = tuner_of(config, OperatorImitation(tuple(config["operators"])))
        assert tuner.kind == "hypernetwork" and tuner.control_dim == 1 and tuner.predict == ("conv*/kernel",)
    with pytest.raises(ValueError, match="unknown preset"):
        load_config(f"{ROOT / 'experiments' / 'operators.py'}:huge")
    task = OperatorImitation(("l0", "wls"))
    assert tuner_of(smoke_config(method="baseline18"), task).control_dim == 2  # gamma + operator id
    cheap = tuner_of(smoke_config(hyper={"predict": ["norm13/*"], "hidden": 16, "relu": True}), task)
    assert (cheap.predict, cheap.hidden, cheap.relu, cheap.gamma_dim) == (("norm13/*",), 16, True, 2)
    assert tuner_of(smoke_config(per_sample="shared"), task).per_sample == "map"  # one gamma per batch is the
    # training stack's shared control; the tuner itself falls back to map for per-sample controls
    with pytest.raises(ValueError, match="method must be"):
        tuner_of(smoke_config(method="nope"), task)
    with pytest.raises(ValueError, match="per_sample must be"):
        tuner_of(smoke_config(per_sample="nope"), task)
    with pytest.raises(ValueError, match="unknown"):
        tuner_of(smoke_config(hyper={"preset": "nope"}), task)


def one_image_folder(tmp_path, size=24):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "a.png", photos(1, size)[0])
    return folder


@pytest.mark.parametrize("option, value", [("--crop", "0"), ("--per-image", "0"), ("--per-image", "-1"),
                                           ("--max-images", "0"), ("--grid", "0")])
def test_prepare_ops_refuses_numbers_below_one(tmp_path, capsys, option, value):
    out = tmp_path / "cache"
    assert main(["prepare-ops", "--operators", "l0", "--data", str(one_image_folder(tmp_path)), "--crop", "16",
                 "--out", str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert f"{option} must be a whole number >= 1; got {value}" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before any folder was made
    with pytest.raises(ValueError, match="crop must be a whole number >= 1; got 0"):
        prepare_operator_cache(photos(1), ["a"], ["l0"], out, crop=0, progress=False)
    with pytest.raises(ValueError, match="at least one image"):
        prepare_operator_cache([], [], ["l0"], out, progress=False)
    with pytest.raises(ValueError, match="image a: .*divide by 255"):
        prepare_operator_cache([photos(1)[0] * 255], ["a"], ["l0"], out, progress=False)


def test_a_corrupt_cache_file_is_named_by_train_ops_and_rewritten_by_prepare_ops(tmp_path, capsys):
    cache = tmp_path / "cache"
    prepare = ["prepare-ops", "--operators", "l0", "--data", str(one_image_folder(tmp_path)), "--per-image", "2",
               "--crop", "16", "--out", str(cache)]
    assert main(prepare) == 0
    good, bad = sorted(cache.glob("a__l0__*.npz"))
    intact = bad.read_bytes()
    bad.write_bytes(np.random.default_rng(0).bytes(300))  # not a zip file any more
    train = ["train-ops", "--config", str(ROOT / "experiments" / "operators.py") + ":smoke", "--cache", str(cache),
             "--workdir", str(tmp_path / "run")]
    capsys.readouterr()
    assert main(train) == 2
    err = capsys.readouterr().err.strip()
    assert f"corrupt operator cache file {bad} (not an .npz archive, 300 bytes)" in err and "re-run `ctl-jax prepare-ops`" in err
    assert len(err.splitlines()) == 1
    good_stamp = good.stat().st_mtime_ns
    with pytest.warns(UserWarning, match=f"rewriting {bad}: corrupt operator cache file"):
        assert main(prepare) == 0
    assert bad.read_bytes() == intact and good.stat().st_mtime_ns == good_stamp  # only the corrupt one rewritten
    bad.write_bytes(b"")  # an empty file, as a full disk leaves it
    with pytest.raises(ValueError, match=f"corrupt operator cache file {bad} .not an .npz archive, 0 bytes"):
        load_operator_cache(cache)
    np.savez(bad, input=np.zeros((4, 4, 3), np.uint8), value=0.1, operator="l0")  # a zip without the target
    with pytest.raises(ValueError, match=f"corrupt operator cache file {bad} .KeyError: 'target is not a file"):
        load_operator_cache(cache)
