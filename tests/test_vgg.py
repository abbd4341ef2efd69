"""VGG-16 / VGG-19 loss networks (ctl_jax.nets.vgg): equality with torchvision's ``features`` on
random weights, the Keras .h5 importer on files written here with h5py, and the error messages.

Nothing is downloaded: torchvision models are built with ``weights=None`` from a fixed seed and the
Keras files hold random weights under the real layer and dataset names.
"""

import sys

import jax.numpy as jnp
import numpy as np
import pytest

from ctl_jax.losses.perceptual import IMAGENET_MEAN, IMAGENET_STD, LossNetwork, make_loss_network
from ctl_jax.nets.vgg import (CAFFE_BGR_MEAN, VGG, VGG_LAYERS, conv_shapes, torch_feature_indices,
                              vgg_loss_network, vgg_params_from_keras_h5, vgg_params_from_torch)

RTOL = 1e-5
_KEEP = []  # torch.library.Library objects must stay alive for their definitions to stay


def _torchvision():
    """torchvision, or skip. PyPI's torchvision wheels are CUDA builds: next to the CPU build of
    torch their compiled ops do not load and ``import torchvision`` fails registering a fake kernel
    for ``torchvision::nms``. The models are pure Python, so then the two op schemas are declared
    (without kernels) and the import is retried."""
    torch = pytest.importorskip("torch")
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _KEEP.append(lib)
        import torchvision
    except ImportError:
        pytest.skip("torchvision is not installed")
    return torch, torchvision


def _torch_features(torch, features, x_nhwc: np.ndarray) -> dict:
    """{relu{b}_{i} / pool{b}: NHWC numpy} of torchvision's ``features`` on ImageNet-normalised x,
    named by walking the Sequential (a block ends at each MaxPool2d)."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    h = (torch.from_numpy(x_nhwc).permute(0, 3, 1, 2) - mean) / std
    out, block, conv = {}, 1, 0
    with torch.no_grad():
        for layer in features:
            h = layer(h)
            if isinstance(layer, torch.nn.Conv2d):
                conv += 1
            elif isinstance(layer, torch.nn.ReLU):
                out[f"relu{block}_{conv}"] = h.permute(0, 2, 3, 1).numpy().copy()
            elif isinstance(layer, torch.nn.MaxPool2d):
                out[f"pool{block}"] = h.permute(0, 2, 3, 1).numpy().copy()
                block, conv = block + 1, 0
    return out


def _relative_errors(ours: dict, reference: dict) -> dict:
    return {name: float(np.max(np.abs(np.asarray(ours[name]) - ref)) / max(float(np.max(np.abs(ref))), 1e-12))
            for name, ref in reference.items()}


@pytest.mark.parametrize("variant", ["vgg16", "vgg19"])
def test_matches_torchvision(variant):
    torch, torchvision = _torchvision()
    torch.manual_seed(0)
    model = getattr(torchvision.models, variant)(weights=None).eval()
    x = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    reference = _torch_features(torch, model.features, x)
    assert tuple(reference) == VGG_LAYERS[variant]

    params = vgg_params_from_torch(model.state_dict(), variant)
    ours = VGG(variant).apply({"params": params}, jnp.asarray(x))
    assert tuple(ours) == VGG_LAYERS[variant]
    for name, ref in reference.items():
        assert ours[name].shape == ref.shape, name
    errors = _relative_errors(ours, reference)
    print(f"{variant}: max |jax - torch| / max |torch| per layer: "
          + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert max(errors.values()) < RTOL, errors


def _random_torch_state_dict(variant: str, seed: int = 0) -> dict:
    """{features.{k}.weight / bias: float32 numpy} with He-scaled random weights."""
    rng = np.random.default_rng(seed)
    indices, out = torch_feature_indices(variant), {}
    for name, (cin, cout) in conv_shapes(variant).items():
        out[f"features.{indices[name]}.weight"] = (rng.standard_normal((cout, cin, 3, 3), np.float32)
                                                   * np.float32(np.sqrt(2 / (9 * cin))))
        out[f"features.{indices[name]}.bias"] = rng.standard_normal(cout, np.float32) * np.float32(0.1)
    return out


def test_torch_prefix_and_classifier_keys():
    state = _random_torch_state_dict("vgg16")
    wrapped = {f"module.{k}": v for k, v in state.items()}
    wrapped["module.classifier.0.weight"] = np.zeros((4, 2), np.float32)
    a, b = vgg_params_from_torch(state, "vgg16"), vgg_params_from_torch(wrapped, "vgg16")
    assert set(a) == set(conv_shapes("vgg16"))
    for name in a:
        np.testing.assert_array_equal(a[name]["kernel"], b[name]["kernel"])
        assert a[name]["kernel"].shape == (3, 3) + conv_shapes("vgg16")[name]
    np.testing.assert_array_equal(a["conv2_1"]["kernel"], state["features.5.weight"].transpose(2, 3, 1, 0))


def test_vgg16_state_dict_as_vgg19_names_the_keys():
    with pytest.raises(ValueError) as err:
        vgg_params_from_torch(_random_torch_state_dict("vgg16"), "vgg19")
    message = str(err.value)
    assert "missing" in message and "features.16.weight" in message and "features.34.bias" in message
    assert "unexpected" in message and "features.17.weight" in message


def test_wrong_shape_names_key_and_shapes():
    state = _random_torch_state_dict("vgg16")
    state["features.0.weight"] = np.zeros((64, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"features\.0\.weight.*\(64, 3, 3, 3\).*\(64, 1, 3, 3\)"):
        vgg_params_from_torch(state, "vgg16")


def test_unknown_layer_and_variant():
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match="relu5_4.*relu1_1"):
        VGG("vgg16", last="relu5_4").init(np.zeros(2, np.uint32), x)
    with pytest.raises(ValueError, match="vgg11"):
        VGG("vgg11").init(np.zeros(2, np.uint32), x)


@pytest.mark.parametrize("preprocess", ["torch", "caffe"])
def test_grey_input_is_refused(preprocess):
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        VGG("vgg16", last="relu1_1", preprocess=preprocess).init(np.zeros(2, np.uint32), jnp.zeros((1, 8, 8, 1)))


def test_stops_at_last():
    module = VGG("vgg16", last="pool2")
    x = jnp.zeros((2, 12, 12, 3))
    params = module.init(np.zeros(2, np.uint32), x)["params"]
    assert set(params) == {"conv1_1", "conv1_2", "conv2_1", "conv2_2"}
    out = module.apply({"params": params}, x)
    assert tuple(out) == VGG_LAYERS["vgg16"][:6]
    assert out["relu2_2"].shape == (2, 6, 6, 128) and out["pool2"].shape == (2, 3, 3, 128)


def test_missing_file_and_unknown_suffix(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        vgg_loss_network("vgg16", missing)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        make_loss_network(f"vgg19:{missing}")
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        vgg_params_from_keras_h5(tmp_path / "nope.h5", "vgg16")
    other = tmp_path / "weights.npz"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.pth.*\.h5"):
        vgg_loss_network("vgg16", other)


def test_make_loss_network_from_pth(tmp_path):
    torch = pytest.importorskip("torch")
    state = _random_torch_state_dict("vgg16")
    path = tmp_path / "vgg16.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    net = make_loss_network(f"vgg16:{path}")
    assert isinstance(net, LossNetwork)
    assert net.layers == VGG_LAYERS["vgg16"]
    assert net.content_layers == ("relu3_3",) and net.style_layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    feats = net.features(jnp.full((1, 16, 16, 3), 0.5), ["relu2_2"])
    assert set(feats) == {"relu2_2"} and feats["relu2_2"].shape == (1, 8, 8, 128)
    assert np.all(np.isfinite(feats["relu2_2"]))
    with pytest.raises(ValueError, match="relu5_4"):
        net.features(jnp.zeros((1, 16, 16, 3)), ["relu5_4"])


# -- Keras ---------------------------------------------------------------------------------------

def _keras_weights(variant: str, seed: int = 1) -> dict:
    """{"block{b}_conv{i}": (kernel (3, 3, Cin, Cout), bias (Cout,))} float32, He-scaled."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (cin, cout) in conv_shapes(variant).items():
        b, i = name[len("conv"):].split("_")
        kernel = rng.standard_normal((3, 3, cin, cout), np.float32) * np.float32(np.sqrt(2 / (9 * cin)))
        out[f"block{b}_conv{i}"] = (kernel, rng.uniform(-20, 20, cout).astype(np.float32))
    return out


def _write_keras_h5(path, weights: dict, layout: str) -> None:
    """A Keras 2 legacy weight file: "weights_only" (save_weights: layer groups at the root, datasets
    ``<layer>/<layer>/kernel:0``), "full_model" (model.save: the same under ``model_weights``) or
    "keras1" (datasets ``<layer>_W_1:0`` / ``<layer>_b_1:0`` directly in the layer group)."""
    h5py = pytest.importorskip("h5py")
    layer_names = ["input_1"] + [n for block in sorted({k.split("_")[0] for k in weights})
                                 for n in sorted(k for k in weights if k.startswith(block + "_")) + [f"{block}_pool"]]
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if layout == "full_model" else f
        if layout == "full_model":
            f.attrs["model_config"] = b'{"class_name": "Functional"}'
        root.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.1.5" if layout != "keras1" else b"1.2.2"
        for name in layer_names:
            group = root.create_group(name)
            if name not in weights:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            kernel, bias = weights[name]
            if layout == "keras1":
                names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            else:
                names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            group.create_dataset(names[0], data=kernel)
            group.create_dataset(names[1], data=bias)


def _conv_relu_numpy(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 cross-correlation with zero padding 1, + bias, ReLU; x (N, H, W, Cin) -> (N, H, W, Cout)."""
    n, h, w, _ = x.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = sum(np.einsum("nhwc,co->nhwo", padded[:, a:a + h, b:b + w], kernel[a, b].astype(np.float64))
              for a in range(3) for b in range(3))
    return np.maximum(out + bias, 0)


@pytest.fixture(scope="module")
def keras_vgg16():
    return _keras_weights("vgg16")


@pytest.mark.parametrize("layout", ["weights_only", "full_model", "keras1"])
def test_keras_h5_matches_numpy(tmp_path, keras_vgg16, layout):
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_keras_h5(path, keras_vgg16, layout)
    params = vgg_params_from_keras_h5(path, "vgg16")
    for name in conv_shapes("vgg16"):
        b, i = name[len("conv"):].split("_")
        np.testing.assert_array_equal(params[name]["kernel"], keras_vgg16[f"block{b}_conv{i}"][0])
        np.testing.assert_array_equal(params[name]["bias"], keras_vgg16[f"block{b}_conv{i}"][1])

    x = np.random.default_rng(2).uniform(size=(2, 10, 12, 3)).astype(np.float32)
    caffe = 255.0 * x[..., ::-1].astype(np.float64) - np.asarray(CAFFE_BGR_MEAN)
    relu1_1 = _conv_relu_numpy(caffe, *keras_vgg16["block1_conv1"])
    relu1_2 = _conv_relu_numpy(relu1_1, *keras_vgg16["block1_conv2"])
    pool1 = relu1_2.reshape(2, 5, 2, 6, 2, 64).max(axis=(2, 4))
    ours = VGG("vgg16", last="pool1", preprocess="caffe").apply({"params": params}, jnp.asarray(x))
    errors = _relative_errors(ours, {"relu1_1": relu1_1, "relu1_2": relu1_2, "pool1": pool1})
    assert max(errors.values()) < RTOL, errors


def test_keras_loss_network_and_missing_layers(tmp_path, keras_vgg16):
    path = tmp_path / "vgg16.h5"
    _write_keras_h5(path, keras_vgg16, "weights_only")
    net = vgg_loss_network("vgg16", path)
    assert net.module.preprocess == "caffe" and net.layers == VGG_LAYERS["vgg16"]
    assert net.features(jnp.full((1, 32, 32, 3), 0.5))["pool5"].shape == (1, 1, 1, 512)
    with pytest.raises(ValueError, match=r"missing layers \['block3_conv4', 'block4_conv4', 'block5_conv4'\]"):
        vgg_params_from_keras_h5(path, "vgg19")
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "a") as f:
        del f["block1_conv1/block1_conv1/kernel:0"]
        f["block1_conv1/block1_conv1/kernel:0"] = np.zeros((3, 3, 1, 64), np.float32)
    with pytest.raises(ValueError, match=r"block1_conv1/kernel:0.*\(3, 3, 3, 64\).*\(3, 3, 1, 64\)"):
        vgg_params_from_keras_h5(path, "vgg16")
