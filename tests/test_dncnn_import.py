"""DnCNN module and PyTorch state-dict import (no shared data needed)."""

import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from ctl_jax.nets.dncnn import DnCNN
from ctl_jax.nets.torch_import import (
    conv_weight_oihw_to_hwio,
    dncnn_from_state_dict,
    dncnn_params_from_state_dict,
    load_torch_state_dict,
)
from ctl_jax.testing import random_image, tiny_dncnn

DEPTH, FEATURES, CHANNELS = 5, 8, 1
REPO_ROOT = Path(__file__).resolve().parents[1]


def numpy_state_dict(depth=DEPTH, features=FEATURES, channels=CHANNELS, seed=0):
    """A KAIR-layout DnCNN state dict with random numpy weights."""
    rng = np.random.default_rng(seed)
    sd = {}
    for i in range(depth):
        n_in = channels if i == 0 else features
        n_out = channels if i == depth - 1 else features
        sd[f"model.{2 * i}.weight"] = rng.normal(0, 0.2, (n_out, n_in, 3, 3)).astype(np.float32)
        sd[f"model.{2 * i}.bias"] = rng.normal(0, 0.1, (n_out,)).astype(np.float32)
    return sd


def test_matches_torch_sequential():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layers = []
    for i in range(DEPTH):
        n_in = CHANNELS if i == 0 else FEATURES
        n_out = CHANNELS if i == DEPTH - 1 else FEATURES
        layers.append(torch.nn.Conv2d(n_in, n_out, 3, padding=1, bias=True))
        if i < DEPTH - 1:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).eval()

    module, params = dncnn_from_state_dict(net.state_dict())
    assert (module.channels, module.depth, module.features) == (CHANNELS, DEPTH, FEATURES)

    x = random_image((2, 13, 10, CHANNELS), seed=1)
    with torch.no_grad():
        net_out = net(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    y = np.asarray(module.apply({"params": params}, x))
    np.testing.assert_allclose(y, x - net_out, atol=1e-5)


def test_kernel_layout_without_torch():
    sd = numpy_state_dict()
    params = dncnn_params_from_state_dict(sd, depth=DEPTH)
    assert sorted(params) == [f"conv_{i}" for i in range(DEPTH)]
    for i in range(DEPTH):
        w, k = sd[f"model.{2 * i}.weight"], np.asarray(params[f"conv_{i}"]["kernel"])
        assert k.shape == (3, 3, w.shape[1], w.shape[0]) and k.dtype == np.float32
        o, c, kh, kw = w.shape[0] - 1, w.shape[1] - 1, 0, 2  # an asymmetric position
        assert k[kh, kw, c, o] == w[o, c, kh, kw]
        np.testing.assert_array_equal(k, conv_weight_oihw_to_hwio(w))
        np.testing.assert_array_equal(params[f"conv_{i}"]["bias"], sd[f"model.{2 * i}.bias"])


def test_no_kernel_flip():
    # conv_0 = a PyTorch kernel with its single 1 at (kh=0, kw=1): cross-correlation reads the
    # pixel above, out[y, x] = in[y-1, x]; conv_1 = identity. So net(x) = x shifted down by one.
    w0 = np.zeros((1, 1, 3, 3), np.float32)
    w0[0, 0, 0, 1] = 1.0
    w1 = np.zeros((1, 1, 3, 3), np.float32)
    w1[0, 0, 1, 1] = 1.0
    sd = {"model.0.weight": w0, "model.0.bias": np.zeros(1, np.float32),
          "model.2.weight": w1, "model.2.bias": np.zeros(1, np.float32)}
    module, params = dncnn_from_state_dict(sd)
    assert (module.depth, module.features) == (2, 1)
    x = random_image((1, 6, 5, 1))
    noise = x - np.asarray(module.apply({"params": params}, x))
    expected = np.zeros_like(x)
    expected[:, 1:] = x[:, :-1]
    np.testing.assert_allclose(noise, expected, atol=1e-6)


def test_prefixes_are_stripped():
    sd = numpy_state_dict()
    reference = dncnn_params_from_state_dict(sd, depth=DEPTH)
    for variant in ({"module." + k: v for k, v in sd.items()},
                    {k[len("model."):]: v for k, v in sd.items()}):
        chex.assert_trees_all_equal(dncnn_params_from_state_dict(variant, depth=DEPTH), reference)


def test_bad_state_dicts():
    sd = numpy_state_dict()
    missing = {k: v for k, v in sd.items() if k != "model.4.bias"}
    with pytest.raises(ValueError, match=r"model\.4\.bias"):
        dncnn_params_from_state_dict(missing, depth=DEPTH)

    wrong = dict(sd, **{"model.2.weight": np.zeros((FEATURES, FEATURES, 5, 5), np.float32)})
    with pytest.raises(ValueError, match=r"model\.2\.weight.*\(8, 8, 3, 3\).*\(8, 8, 5, 5\)"):
        dncnn_params_from_state_dict(wrong, depth=DEPTH)

    extra = dict(sd, **{"model.1.running_mean": np.zeros(FEATURES, np.float32)})
    with pytest.raises(ValueError, match=r"model\.1\.running_mean"):
        dncnn_params_from_state_dict(extra, depth=DEPTH)

    with pytest.raises(ValueError, match=r"model\.8\.weight"):  # depth 6: model.8 is no longer the last conv
        dncnn_params_from_state_dict(sd, depth=DEPTH + 1)


def test_bad_module_inputs():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="channel"):
        DnCNN(channels=1, depth=3, features=4).init(key, np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="AdaFM kernel"):
        DnCNN(depth=3, features=4, adafm_kernel=4).init(key, np.zeros((1, 8, 8, 1), np.float32))


def test_adafm_slots_start_as_identity():
    x = random_image((1, 9, 7, CHANNELS))
    params = dncnn_params_from_state_dict(numpy_state_dict(), depth=DEPTH)
    tuned, tuned_params = tiny_dncnn(CHANNELS, DEPTH, FEATURES, adafm_kernel=3)
    tuned_params = dict(tuned_params)

    slots = sorted(name for name in tuned_params if name.startswith("adafm_"))
    assert slots == [f"adafm_{i}" for i in range(DEPTH - 1)]  # none after the last conv
    for name in slots:
        chex.assert_trees_all_equal(tuned_params[name], jax.tree.map(np.zeros_like, tuned_params[name]))
    chex.assert_shape(tuned_params["adafm_0"]["depthwise"]["kernel"], (3, 3, 1, FEATURES))

    tuned_params.update(params)  # share the conv params, keep the zero slots
    plain = DnCNN(depth=DEPTH, features=FEATURES).apply({"params": params}, x)
    modulated = tuned.apply({"params": tuned_params}, x)
    np.testing.assert_allclose(modulated, plain, atol=1e-6)


def test_load_torch_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    sd = numpy_state_dict()
    path = tmp_path / "dncnn.pth"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
    loaded = load_torch_state_dict(path)
    assert sorted(loaded) == sorted(sd)
    np.testing.assert_array_equal(loaded["model.2.weight"], sd["model.2.weight"])

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_torch_state_dict(garbage)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_torch_state_dict(tmp_path / "absent.pth")


def test_load_without_torch_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r"ctl_jax\[torch\]"):
        load_torch_state_dict(tmp_path / "any.pth")


def test_import_does_not_need_torch():
    code = ("import sys; sys.modules['torch'] = None; "
            "import ctl_jax.nets.torch_import, ctl_jax.nets.dncnn")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
