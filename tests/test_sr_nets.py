"""Super-resolution networks (RDN, RRDB, DRN, CFSNet x4): shapes, paper sizes, structure, the
dual regression branch, and the tuners' identities and per-pixel maps on them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.control import Control
from ctl_jax.nets.drn import DualRegression, dual_regression_loss
from ctl_jax.nets.registry import NetworkSpec
from ctl_jax.testing import perturb
from ctl_jax.tuners import apply_tuned, make_tuner
from ctl_jax.tuners.adafm import is_adafm_path
from ctl_jax.tuners.trees import flatten

SR_NETS = [("rdn", 2), ("rdn", 3), ("rrdb", 4), ("drn", 4), ("cfsnet", 4)]


def count(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def shapes(spec: NetworkSpec, x):
    return jax.eval_shape(spec.build().init, jax.random.key(0), x)["params"]


def random_params(spec: NetworkSpec, x, seed=0):
    """Parameters of the shapes ``init`` gives, drawn in numpy (no XLA compile: these graphs take
    10-30 s to compile on a CPU, and the values do not matter for these checks); AdaFM slots zero,
    as a base network's are."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        slot = is_adafm_path([k.key for k in path])
        return jnp.asarray(np.zeros(leaf.shape) if slot else rng.normal(0, 0.1, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes(spec, x))


@pytest.mark.parametrize("name,scale", SR_NETS)
def test_output_is_the_input_times_the_scale(name, scale):
    x = jnp.zeros((2, 7, 9, 3))
    spec = NetworkSpec(name, "tiny", 3, upscale=scale)
    y = jax.eval_shape(spec.build().apply, {"params": shapes(spec, x)}, x)
    assert y.shape == (2, 7 * scale, 9 * scale, 3) and spec.input_multiple == 1


def test_paper_sizes_and_scales_each_network_refuses():
    x = jnp.zeros((1, 8, 8, 3))
    # published parameter counts: RDN x2 22.1 M (22.3 M at x4), ESRGAN's RRDB 16.7 M
    assert abs(count(shapes(NetworkSpec("rdn", "paper", 3, upscale=2), x)) / 1e6 - 22.1) < 0.1
    assert abs(count(shapes(NetworkSpec("rrdb", "paper", 3, upscale=4), x)) / 1e6 - 16.7) < 0.1
    rdb = shapes(NetworkSpec("rdn", "paper", 3, upscale=2), x)["rdb_0"]
    assert rdb["conv_7"]["kernel"].shape == (3, 3, 64 + 7 * 64, 64)  # densely connected: all earlier outputs
    assert rdb["fusion"]["kernel"].shape == (1, 1, 64 + 8 * 64, 64)
    with pytest.raises(ValueError, match=r"scales x2, x4; got x3"):
        NetworkSpec("rrdb", "tiny", 3, upscale=3).build().init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"got x1"):
        NetworkSpec("rdn", "tiny", 3).build().init(jax.random.key(0), x)  # an SR network needs its scale
    with pytest.raises(ValueError, match="3 channel"):
        NetworkSpec("rdn", "tiny", 3, upscale=2).build().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))


def test_drn_dual_branch_maps_the_output_back_to_the_input_size_and_trains():
    lr = jax.random.uniform(jax.random.key(0), (2, 6, 5, 3))
    hr = jax.random.uniform(jax.random.key(1), (2, 12, 10, 3))
    spec = NetworkSpec("drn", "tiny", 3, upscale=2)
    primal, dual = spec.build(), DualRegression(3, 2)
    params = {"primal": random_params(spec, lr), "dual": dual.init(jax.random.key(3), hr)["params"]}
    assert set(params["dual"]) == {"stage_0_0", "stage_0_1"}  # one x2 stage
    assert set(jax.eval_shape(DualRegression(3, 8).init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]) \
        == {f"stage_{i}_{j}" for i in range(3) for j in range(2)}
    sr = primal.apply({"params": params["primal"]}, lr)
    back = dual.apply({"params": params["dual"]}, sr)
    assert sr.shape == hr.shape and back.shape == lr.shape
    loss_and_grad = jax.jit(jax.value_and_grad(lambda p: dual_regression_loss(primal, dual, p, lr, hr)[0]))
    loss, grads = loss_and_grad(params)
    np.testing.assert_allclose(loss, jnp.mean(jnp.abs(sr - hr)) + 0.1 * jnp.mean(jnp.abs(back - lr)), rtol=1e-5)
    assert float(jnp.abs(grads["dual"]["stage_0_0"]["kernel"]).max()) > 0  # the dual term reaches its branch
    assert float(jnp.abs(grads["primal"]["head"]["kernel"]).max()) > 0


@pytest.mark.parametrize("name,method", [("rdn", "ftn"), ("rdn", "adafm"), ("rrdb", "ftn-gc4"), ("drn", "ftn"),
                                         ("cfsnet", "adafm")])
def test_tuners_start_exactly_at_the_base(name, method):
    x = jnp.zeros((1, 6, 7, 3))
    spec = NetworkSpec(name, "tiny", 3, upscale=4 if name != "rdn" else 2, adafm_kernel=3 if method == "adafm" else None)
    theta0 = random_params(spec, x)
    tuner = make_tuner(method)
    phi = tuner.init(jax.random.key(2), theta0)
    endpoint = flatten(tuner.endpoint(phi, theta0))
    for path, leaf in flatten(theta0).items():
        np.testing.assert_array_equal(endpoint[path], leaf, err_msg=str(path))
    if method == "adafm":  # a slot after every dense-layer conv (RDN) or every conv but the last (CFSNet)
        assert sum(k.startswith("adafm") for p in flatten(phi) for k in p) >= 4


def test_a_constant_map_through_the_upsampler_is_the_global_alpha():
    x = jax.random.uniform(jax.random.key(0), (1, 6, 7, 3))
    spec = NetworkSpec("rdn", "tiny", 3, upscale=2, adafm_kernel=3)
    model, tuner = spec.build(), make_tuner("adafm")
    theta0 = random_params(spec, x)
    trained = perturb(tuner.init(None, theta0), scale=0.05)
    y_base = model.apply({"params": theta0}, x)
    y_global = apply_tuned(model, tuner, theta0, trained, x, 0.4)
    assert float(jnp.abs(y_global - y_base).max()) > 1e-4
    # the map is given at the input's size; the mixing resizes it to every layer, the up-sampled ones too
    y_map = apply_tuned(model, tuner, theta0, trained, x, Control.per_pixel(jnp.full((6, 7), 0.4)))
    np.testing.assert_allclose(y_map, y_global, rtol=1e-5, atol=1e-5)


def test_sr_networks_experiment_smoke(tmp_path):
    """experiments/sr_networks.py end to end on a bundled picture: trains, scores both inputs."""
    import importlib.util
    import json
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "sr_networks.py"
    spec = importlib.util.spec_from_file_location("sr_networks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path / "sr"), "--preset", "smoke"]) == 0
    rows = json.loads((tmp_path / "sr" / "report" / "sr_networks.json").read_text())["rows"]
    assert {(r["net"], r["input"]) for r in rows} >= {("bicubic up-sampling", "decimated"), ("drn (tiny)", "bicubic")}
    assert all(np.isfinite(r["psnr"]) for r in rows)
    # decimation aliases: plain up-sampling of decimated inputs is worse than of bicubic ones
    reference = {r["input"]: r["psnr"] for r in rows if r["net"] == "bicubic up-sampling"}
    assert reference["decimated"] < reference["bicubic"]
    assert (tmp_path / "sr" / "report" / "mismatch_rdn_x2.png").is_file()


def test_apply_super_resolves_whole_and_refuses_an_input_that_does_not_fit(tmp_path, capsys, monkeypatch):
    from PIL import Image

    import ctl_jax.memory
    from ctl_jax.cli import main
    from ctl_jax.data import PatchSampler
    from ctl_jax.tasks.perceptual_sr import PerceptualSR
    from ctl_jax.train.loop import TrainConfig
    from ctl_jax.train.supervised import train_base

    photos = [np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)]
    train_base(NetworkSpec("rdn", "tiny", 3, upscale=2), PerceptualSR(2), PatchSampler(photos, 16, 2, seed=0),
               tmp_path / "sr", TrainConfig(steps=1, batch_size=2, patch_size=16, progress=False))
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(1).random((21, 30, 3)) * 255).astype(np.uint8)).save(photo)
    args = ["apply", "--model", str(tmp_path / "sr"), "--input", str(photo), "--alpha", "0"]
    assert main([*args, "--output", str(tmp_path / "out.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "out.png")).shape == (42, 60, 3)  # x2, any size
    monkeypatch.setattr(ctl_jax.memory, "free_memory_bytes", lambda device=None: 10_000)
    assert main([*args, "--output", str(tmp_path / "big.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctl-jax: error: the 30x21 input needs about") and "megapixels" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "big.png").exists()
