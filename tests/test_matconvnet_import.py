"""MatConvNet MAT-file import (ctl_jax.nets.matconvnet), on small MAT-files written here with h5py in
the layout of MATLAB 7.3 / MatConvNet simplenn (the released files need no ../shared here)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from ctl_jax.nets.dncnn import DnCNN  # noqa: E402
from ctl_jax.nets.ffdnet import FFDNet  # noqa: E402
from ctl_jax.nets.matconvnet import fold_bnorm, load_pretrained, read_matconvnet_layers  # noqa: E402
from ctl_jax.testing import random_image  # noqa: E402


# --- a minimal MATLAB 7.3 writer (what MATLAB's save -v7.3 produces for a simplenn net) -------------

class _MatWriter:
    def __init__(self, h5):
        self.h5, self.refs, self.n = h5, h5.create_group("#refs#"), 0

    def _name(self):
        self.n += 1
        return f"r{self.n}"

    def value(self, parent, key, v):
        """Store v under parent[key]: str -> char, list -> cell, dict -> struct, None -> empty, else
        a numeric array given in MATLAB's axis order (stored reversed, as MATLAB does)."""
        if isinstance(v, str):
            d = parent.create_dataset(key, data=np.array([[ord(ch)] for ch in v], np.uint16))
            d.attrs["MATLAB_class"], d.attrs["MATLAB_int_decode"] = np.bytes_(b"char"), np.int32(2)
        elif isinstance(v, list):
            if not v:
                d = parent.create_dataset(key, data=np.zeros(2, np.uint64))
                d.attrs["MATLAB_class"], d.attrs["MATLAB_empty"] = np.bytes_(b"cell"), np.uint8(1)
                return d
            refs = []
            for item in v:
                name = self._name()
                self.value(self.refs, name, item)
                refs.append(self.refs[name].ref)
            d = parent.create_dataset(key, data=np.array(refs, dtype=h5py.ref_dtype).reshape(len(refs), 1))
            d.attrs["MATLAB_class"] = np.bytes_(b"cell")
        elif isinstance(v, dict):
            g = parent.create_group(key)
            g.attrs["MATLAB_class"] = np.bytes_(b"struct")
            for k, item in v.items():
                self.value(g, k, item)
        elif v is None:
            d = parent.create_dataset(key, data=np.zeros(2, np.uint64))
            d.attrs["MATLAB_class"], d.attrs["MATLAB_empty"] = np.bytes_(b"single"), np.uint8(1)
        else:
            a = np.asarray(v)
            a = a.reshape(a.shape + (1,) * (2 - a.ndim)) if a.ndim < 2 else a  # MATLAB arrays are >= 2-d
            d = parent.create_dataset(key, data=a.T)
            d.attrs["MATLAB_class"] = np.bytes_(b"single" if a.dtype == np.float32 else b"double")


def write_simplenn(path, layers):
    with h5py.File(path, "w") as h5:
        w = _MatWriter(h5)
        net = h5.create_group("net")
        net.attrs["MATLAB_class"] = np.bytes_(b"struct")
        w.value(net, "layers", layers)


def conv(rng, cin, cout, name, bias=True):
    k = rng.normal(0, 0.3, (3, 3, cin, cout)).astype(np.float32)  # MATLAB (kh, kw, in, out)
    b = rng.normal(0, 0.1, (1, cout)).astype(np.float32) if bias else None
    return {"type": "conv", "name": name, "weights": [k, b], "stride": 1.0, "pad": 1.0}


def relu(name):
    return {"type": "relu", "name": name, "leak": 0.0}


def bnorm(rng, c, name):
    g = rng.uniform(0.5, 1.5, (c, 1)).astype(np.float32)
    b = rng.normal(0, 0.2, (c, 1)).astype(np.float32)
    moments = np.stack([rng.normal(0, 0.3, c), rng.uniform(0.5, 2.0, c)], axis=1).astype(np.float32)  # C x 2
    return {"type": "bnorm", "name": name, "weights": [g, b, moments]}


# --- numpy reference of the MatConvNet layers -------------------------------------------------------

def ref_conv(x, layer):
    """vl_nnconv, pad 1, stride 1: y[h, w, o] = sum_{u, v, c} k[u, v, c, o] x[h + u - 1, w + v - 1, c] + b[o]."""
    k, b = layer["weights"]
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    y = np.zeros(x.shape[:3] + (k.shape[3],), np.float64)
    for u in range(3):
        for v in range(3):
            y += np.einsum("nhwc,co->nhwo", xp[:, u:u + h, v:v + w], k[u, v])
    return y + (0 if b is None else b.ravel())


def ref_bnorm(x, layer):
    g, b, m = layer["weights"]
    return g.ravel() * (x - m[:, 0]) / m[:, 1] + b.ravel()


def ref_subp_down(x):
    """vl_nnSubP scale 0.5: output channel 4c + 2j + i holds pixel (2h + i, 2w + j) of channel c."""
    n, hh, ww, c = x.shape
    y = np.zeros((n, hh // 2, ww // 2, 4 * c), x.dtype)
    for ch in range(c):
        for i in range(2):
            for j in range(2):
                y[..., 4 * ch + 2 * j + i] = x[:, i::2, j::2, ch]
    return y


def ref_subp_up(y):
    n, h, w, c4 = y.shape
    x = np.zeros((n, 2 * h, 2 * w, c4 // 4), y.dtype)
    for ch in range(c4 // 4):
        for i in range(2):
            for j in range(2):
                x[:, i::2, j::2, ch] = y[..., 4 * ch + 2 * j + i]
    return x


def ref_stack(x, layers):
    for layer in layers:
        t = layer["type"]
        x = ref_conv(x, layer) if t == "conv" else ref_bnorm(x, layer) if t == "bnorm" else np.maximum(x, 0)
    return x


def tiny_dncnn_layers(seed=0, channels=1, features=6):
    rng = np.random.default_rng(seed)
    return [conv(rng, channels, features, "c1"), relu("r1"),
            conv(rng, features, features, "c2", bias=False), bnorm(rng, features, "bn2"), relu("r2"),
            conv(rng, features, features, "c3"), bnorm(rng, features, "bn3"), relu("r3"),
            conv(rng, features, channels, "c4")]


def tiny_ffdnet_layers(seed=1, channels=1, features=6):
    rng = np.random.default_rng(seed)
    return [{"type": "SubP", "name": "s1", "scale": 0.5, "weights": []}, {"type": "concat", "name": "cat", "weights": []},
            conv(rng, 4 * channels + 1, features, "c1"), relu("r1"),
            conv(rng, features, features, "c2"), relu("r2"),
            conv(rng, features, 4 * channels, "c3"),
            {"type": "SubP", "name": "s2", "scale": 2.0, "weights": []}]


# --- tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
def test_dncnn_with_bnorm_matches_reference(tmp_path, channels):
    layers = tiny_dncnn_layers(channels=channels)
    write_simplenn(tmp_path / "net.mat", layers)
    module, params = load_pretrained(tmp_path / "net.mat")
    assert isinstance(module, DnCNN)
    assert (module.channels, module.depth, module.features) == (channels, 4, 6)
    assert sorted(params) == [f"conv_{i}" for i in range(4)]  # bnorm merged: no norm parameters
    x = random_image((2, 9, 7, channels), seed=3)  # non-square, odd: catches an H/W swap
    want = x - ref_stack(x.astype(np.float64), layers)  # the net predicts the noise
    got = np.asarray(module.apply({"params": params}, x))
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_kernel_layout_no_flip_no_transpose(tmp_path):
    rng = np.random.default_rng(0)
    layers = [conv(rng, 2, 3, "c1"), relu("r"), conv(rng, 3, 2, "c2")]
    write_simplenn(tmp_path / "net.mat", layers)
    with h5py.File(tmp_path / "net.mat") as h5:  # what h5py shows: MATLAB's axes reversed
        first = h5[h5["net/layers"][0, 0]]
        assert h5[first["weights"][0, 0]].shape == (3, 2, 3, 3)
    _, params = load_pretrained(tmp_path / "net.mat")
    k = layers[0]["weights"][0]
    np.testing.assert_array_equal(np.asarray(params["conv_0"]["kernel"]), k)  # MATLAB (kh, kw, in, out) = HWIO
    assert np.asarray(params["conv_0"]["kernel"])[0, 2, 1, 2] == k[0, 2, 1, 2]


def test_fold_bnorm_equals_conv_then_bnorm():
    rng = np.random.default_rng(5)
    c, bn = conv(rng, 3, 4, "c"), bnorm(rng, 4, "bn")
    folded = fold_bnorm({"kernel": c["weights"][0], "bias": c["weights"][1].ravel()}, bn["weights"])
    x = random_image((1, 6, 5, 3), seed=2).astype(np.float64)
    want = ref_bnorm(ref_conv(x, c), bn)
    got = ref_conv(x, {"weights": [folded["kernel"].astype(np.float64), folded["bias"]]})
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_ffdnet_matches_reference(tmp_path):
    layers = tiny_ffdnet_layers()
    write_simplenn(tmp_path / "ffd.mat", layers)
    module, params = load_pretrained(tmp_path / "ffd.mat")
    assert isinstance(module, FFDNet)
    assert (module.channels, module.depth, module.features, module.residual) == (1, 3, 6, False)
    x = random_image((2, 8, 6, 1), seed=4)
    sigma = np.float32(30 / 255)
    cond = np.full((1, 8, 6, 1), sigma, np.float32)
    z = np.concatenate([ref_subp_down(x.astype(np.float64)), np.full((2, 4, 3, 1), sigma)], axis=-1)
    want = ref_subp_up(ref_stack(z, layers[2:-1]))
    got = np.asarray(module.apply({"params": params}, x, cond))
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


def test_read_layers_fields(tmp_path):
    write_simplenn(tmp_path / "ffd.mat", tiny_ffdnet_layers())
    layers = read_matconvnet_layers(tmp_path / "ffd.mat")
    assert [la["type"] for la in layers] == ["SubP", "concat", "conv", "relu", "conv", "relu", "conv", "SubP"]
    assert layers[0]["name"] == "s1" and float(np.ravel(layers[0]["scale"])[0]) == 0.5
    assert layers[0]["weights"] == [] and layers[2]["weights"][1].shape == (1, 6)


def test_unknown_layer_type_is_named(tmp_path):
    layers = tiny_dncnn_layers()
    layers.insert(2, {"type": "pool", "name": "p1", "method": "max"})
    write_simplenn(tmp_path / "net.mat", layers)
    with pytest.raises(ValueError, match=r"unknown MatConvNet layer type 'pool' at layer 2 \('p1'\)"):
        load_pretrained(tmp_path / "net.mat")


def test_not_a_matconvnet_file(tmp_path):
    (tmp_path / "junk.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5" + bytes(200))
    with pytest.raises(ValueError, match="not a MATLAB 7.3"):
        load_pretrained(tmp_path / "junk.mat")
    with h5py.File(tmp_path / "other.mat", "w") as h5:
        h5.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="no 'net' struct"):
        load_pretrained(tmp_path / "other.mat")
    with pytest.raises(FileNotFoundError):
        load_pretrained(tmp_path / "missing.mat")


def test_bnorm_without_conv_and_bad_stride_refused(tmp_path):
    rng = np.random.default_rng(0)
    write_simplenn(tmp_path / "a.mat", [bnorm(rng, 1, "bn"), conv(rng, 1, 1, "c")])
    with pytest.raises(ValueError, match="bnorm layer must follow a conv"):
        load_pretrained(tmp_path / "a.mat")
    c = conv(rng, 1, 4, "c1")
    c["stride"] = 2.0
    write_simplenn(tmp_path / "b.mat", [c, relu("r"), conv(rng, 4, 1, "c2")])
    with pytest.raises(ValueError, match="stride=2 is not supported"):
        load_pretrained(tmp_path / "b.mat")


def test_module_imports_without_h5py(tmp_path):
    code = ("import sys; sys.modules['h5py'] = None\n"
            "from ctl_jax.nets.matconvnet import load_pretrained\n"
            "try:\n    load_pretrained(sys.argv[1])\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.mat")], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "needs h5py" in result.stdout and "ctl_jax[mat]" in result.stdout


def test_pretrained_denoisers_benchmark_end_to_end(tmp_path):
    """benchmarks/pretrained_denoisers.py end to end, every row, on tiny MAT-files written here and tiny
    images laid out like ../shared/data (odd sizes: FFDNet's padding; --limit 1 of two images)."""
    import re

    from PIL import Image

    weights, data = tmp_path / "weights", tmp_path / "test"
    (weights / "dncnn_matconvnet").mkdir(parents=True)
    (weights / "ffdnet").mkdir()
    for name in ["sigma=15", "sigma=25", "sigma=50", "DnCNN3"]:
        write_simplenn(weights / "dncnn_matconvnet" / f"{name}.mat", tiny_dncnn_layers(features=4))
    for sigma in [15, 25, 35, 50]:
        write_simplenn(weights / "dncnn_matconvnet" / f"color_sigma={sigma}.mat",
                       tiny_dncnn_layers(channels=3, features=4))
    write_simplenn(weights / "ffdnet" / "FFDNet_gray.mat", tiny_ffdnet_layers(features=4))
    write_simplenn(weights / "ffdnet" / "FFDNet_color.mat", tiny_ffdnet_layers(channels=3, features=4))
    rng = np.random.default_rng(0)
    for folder, shape in [("bsd68", (21, 17)), ("set12", (16, 16)), ("cbsd68", (19, 15, 3)), ("live1", (24, 20, 3))]:
        (data / folder).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(data / folder / f"{i}.png")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "pretrained_denoisers.py"
    done = subprocess.run([sys.executable, str(script), "--weights", str(weights), "--data", str(data), "--limit", "1"],
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "Images per set: BSD68 1, Set12 1, CBSD68 1, LIVE1 1" in out, out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 6 + 4 + 5 + 5 + 4, out
    for want in ["| DnCNN-S (sigma=15.mat) | BSD68 | sigma 15 |", "| DnCNN-S (sigma=50.mat) | Set12 | sigma 50 |",
                 "| CDnCNN (color_sigma=35.mat) | CBSD68 | sigma 35 |", "| FFDNet grey | BSD68 | sigma 75 |",
                 "| FFDNet colour | CBSD68 | sigma 15 |", "| DnCNN-3 JPEG (Y) | LIVE1 | q40 |"]:
        assert any(line.startswith(want) for line in rows), (want, out)
    assert "| 29.58 (CDnCNN-B's) |" in out and "| 33.96 |" in out
    deltas = [abs(float(line.split("|")[-2])) for line in rows if "CDnCNN-B" not in line]
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"max \|delta\| vs published: \d+\.\d{3} dB", last), last
    assert float(last.split(": ")[1].split()[0]) == pytest.approx(max(deltas), abs=1e-3)
    assert "they are not in the line below" in out
