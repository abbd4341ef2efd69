"""VGG-16 and VGG-19 as loss networks (Simonyan & Zisserman, ICLR 2015), with importers for
torchvision ``.pth`` state dicts and Keras applications ``.h5`` weight files.

Only the convolutional part is built (torchvision's ``features``; configurations 'D' = VGG-16 and
'E' = VGG-19): five blocks of 3x3 convs (stride 1, zero padding 1, with bias) each followed by a
ReLU, and 2x2 max-pooling with stride 2 (floor for odd sizes) after every block. Widths are
64, 128, 256, 512, 512; VGG-16 has 2, 2, 3, 3, 3 convs per block, VGG-19 has 2, 2, 4, 4, 4.

Names: parameters ``conv{b}_{i}`` (block b = 1..5, conv i within it) with ``kernel`` (3, 3, Cin,
Cout) (Flax HWIO) and ``bias`` (Cout,); returned activations are the ReLU outputs ``relu{b}_{i}``
and the pooling outputs ``pool{b}`` (NHWC), listed shallow to deep in :data:`VGG_LAYERS`.

Input preprocessing (the :class:`VGG` field ``preprocess``); the input is always RGB (N, H, W, 3)
in [0, 1]:

* ``"torch"`` (torchvision weights): ``(x - mean) / std`` per channel with the ImageNet statistics
  (:func:`~ctl_jax.losses.perceptual.imagenet_normalise`).
* ``"caffe"`` (Keras weights, which were converted from the original Caffe models): the
  channels reversed to BGR, scaled to [0, 255] and the BGR means (103.939, 116.779, 123.68)
  subtracted, as ``keras.applications.vgg16.preprocess_input`` does (its default mode "caffe"). The
  module then computes exactly what Keras computes on preprocessed input, padding included.
  Activations are on a 0-255 input scale, so they are larger (by roughly 255 * std ~ 57 at the
  first layer) than the torchvision network's: loss weights tuned for one do not carry over.

torch (``pip install 'ctl_jax[torch]'``) and h5py (``pip install 'ctl_jax[mat]'``) are optional and
imported only by the importers that need them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.losses.perceptual import LossNetwork, imagenet_normalise
from ctl_jax.nets.torch_import import _to_numpy, conv_weight_oihw_to_hwio, load_torch_state_dict

WIDTHS = (64, 128, 256, 512, 512)
CONVS_PER_BLOCK = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
PREPROCESSING = ("torch", "caffe")

_H5PY_HINT = "pip install 'ctl_jax[mat]' (or pip install h5py)"


def _block_layers(block: int, convs: int) -> tuple:
    return tuple(f"relu{block}_{i}" for i in range(1, convs + 1)) + (f"pool{block}",)


VGG_LAYERS = {variant: sum((_block_layers(b + 1, n) for b, n in enumerate(counts)), ())
              for variant, counts in CONVS_PER_BLOCK.items()}

CONTENT_LAYERS = {"vgg16": ("relu3_3",), "vgg19": ("relu4_2",)}
STYLE_LAYERS = {"vgg16": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                "vgg19": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")}


def _check_variant(variant: str) -> None:
    if variant not in CONVS_PER_BLOCK:
        raise ValueError(f"unknown VGG variant {variant!r}; choose one of {list(CONVS_PER_BLOCK)}")


def conv_shapes(variant: str) -> dict:
    """{"conv{b}_{i}": (Cin, Cout)} of every conv of ``variant``, in forward order."""
    _check_variant(variant)
    shapes, cin = {}, 3
    for b, (n, width) in enumerate(zip(CONVS_PER_BLOCK[variant], WIDTHS), start=1):
        for i in range(1, n + 1):
            shapes[f"conv{b}_{i}"] = (cin, width)
            cin = width
    return shapes


def caffe_preprocess(x: jax.Array) -> jax.Array:
    """(N, H, W, 3) RGB in [0, 1] -> (N, H, W, 3) BGR in [0, 255] minus the BGR ImageNet means."""
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"a loss network takes RGB batches (N, H, W, 3); got shape {x.shape}")
    return 255.0 * x[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN, x.dtype)


class VGG(nn.Module):
    """The convolutional part of VGG-16 / VGG-19 as a loss network.

    ``apply({"params": p}, x)`` with x (N, H, W, 3) RGB in [0, 1] returns ``{name: (N, h, w, C)}``
    for every name of ``VGG_LAYERS[variant]`` up to ``last`` (inclusive; the forward pass stops
    there). Block b's activations are (H / 2^(b-1), W / 2^(b-1)) (floored), ``pool{b}`` halves them.
    ``preprocess``: "torch" (ImageNet mean/std, torchvision weights) or "caffe" (BGR, 0-255,
    mean-subtracted: Keras weights); see the module docstring.
    """

    variant: str = "vgg19"
    last: str = "pool5"
    preprocess: str = "torch"

    def _check_fields(self) -> None:
        _check_variant(self.variant)
        if self.last not in VGG_LAYERS[self.variant]:
            raise ValueError(f"{self.variant} has no layer {self.last!r}; "
                             f"its layers are {list(VGG_LAYERS[self.variant])}")
        if self.preprocess not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {self.preprocess!r}; choose one of {list(PREPROCESSING)}")

    @nn.compact
    def __call__(self, x: jax.Array) -> dict:
        self._check_fields()
        h = imagenet_normalise(x) if self.preprocess == "torch" else caffe_preprocess(x)
        out = {}
        for b, (n, width) in enumerate(zip(CONVS_PER_BLOCK[self.variant], WIDTHS), start=1):
            for i in range(1, n + 1):
                h = nn.relu(nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), name=f"conv{b}_{i}")(h))
                out[f"relu{b}_{i}"] = h
                if f"relu{b}_{i}" == self.last:
                    return out
            h = nn.max_pool(h, (2, 2), strides=(2, 2))
            out[f"pool{b}"] = h
            if f"pool{b}" == self.last:
                return out
        return out


# -- torchvision ---------------------------------------------------------------------------------

def torch_feature_indices(variant: str) -> dict:
    """{"conv{b}_{i}": k}: the index k of each conv in torchvision's ``features`` Sequential
    (each conv is followed by its ReLU at k + 1, each block by a MaxPool2d)."""
    indices, k = {}, 0
    for name in conv_shapes(variant):
        if name.endswith("_1") and name != "conv1_1":
            k += 1
        indices[name] = k
        k += 2
    return indices


def _feature_entries(state_dict: Mapping) -> dict:
    """{key without a ``module.`` prefix: value}, ``classifier.*`` entries dropped."""
    out = {}
    for key, value in state_dict.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if not name.startswith("classifier."):
            out[name] = value
    return out


def vgg_params_from_torch(state_dict_or_path, variant: str = "vgg19") -> dict:
    """torchvision VGG weights -> the :class:`VGG` ``params`` (float32, HWIO kernels).

    ``state_dict_or_path``: a state dict (``{key: tensor or array}``, as ``model.state_dict()``) or
    the path of a ``.pth`` file holding one (read with ``torch.load(..., weights_only=True)``).
    Keys ``features.{k}.weight`` (Cout, Cin, 3, 3) and ``features.{k}.bias`` (Cout,) are used
    (k from :func:`torch_feature_indices`); a DataParallel ``module.`` prefix is stripped and
    ``classifier.*`` is ignored. Use the result with ``VGG(variant, preprocess="torch")``.
    Raises ValueError naming the missing and unexpected keys (e.g. a VGG-16 file read as VGG-19,
    or a batch-norm VGG) or the key and both shapes on a shape mismatch.
    """
    _check_variant(variant)
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        state_dict_or_path = load_torch_state_dict(state_dict_or_path)
    entries = _feature_entries(state_dict_or_path)
    shapes = conv_shapes(variant)
    indices = torch_feature_indices(variant)
    expected = {f"features.{indices[name]}.{suffix}" for name in shapes for suffix in ("weight", "bias")}
    missing, unexpected = sorted(expected - set(entries)), sorted(set(entries) - expected)
    if missing or unexpected:
        raise ValueError(f"not a torchvision {variant} state dict: missing keys {missing}, "
                         f"unexpected keys {unexpected}")
    params = {}
    for name, (cin, cout) in shapes.items():
        weight = _checked(entries, f"features.{indices[name]}.weight", (cout, cin, 3, 3))
        bias = _checked(entries, f"features.{indices[name]}.bias", (cout,))
        params[name] = {"kernel": jnp.asarray(conv_weight_oihw_to_hwio(weight)), "bias": jnp.asarray(bias)}
    return params


def _checked(entries: Mapping, key: str, shape: tuple) -> np.ndarray:
    value = _to_numpy(entries[key])
    if value.shape != shape:
        raise ValueError(f"key {key!r}: expected shape {shape}, got {tuple(value.shape)}")
    return value.astype(np.float32)


# -- Keras ---------------------------------------------------------------------------------------

_KERNEL_NAME = re.compile(r"(kernel|.*_W(_\d+)?)(:\d+)?")
_BIAS_NAME = re.compile(r"(bias|.*_b(_\d+)?)(:\d+)?")


def _h5py():
    try:
        import h5py
    except ImportError as err:
        raise ImportError(f"reading Keras .h5 files needs h5py: {_H5PY_HINT}") from err
    return h5py


def _keras_layer_weights(group) -> tuple:
    """(kernel, bias) numpy arrays of one Keras layer group, found by dataset name anywhere below it
    (``kernel:0`` / ``bias:0``, or Keras 1's ``<layer>_W_1:0`` / ``<layer>_b_1:0``)."""
    datasets = {}

    def collect(path, node):
        if hasattr(node, "shape"):
            datasets[path] = node

    group.visititems(collect)
    found = []
    for pattern in (_KERNEL_NAME, _BIAS_NAME):
        paths = [p for p in datasets if pattern.fullmatch(p.rsplit("/", 1)[-1])]
        if len(paths) != 1:
            raise ValueError(f"layer {group.name!r}: expected one {'kernel' if pattern is _KERNEL_NAME else 'bias'} "
                             f"dataset, found {paths} among {sorted(datasets)}")
        found.append((f"{group.name}/{paths[0]}", np.asarray(datasets[paths[0]])))
    return tuple(found)


def _check_keras_layers(present: set, wanted: set, context: str) -> None:
    missing = sorted(wanted - present)
    unexpected = sorted(n for n in present - wanted if re.fullmatch(r"block\d+_conv\d+", n))
    if missing or unexpected:
        raise ValueError(f"{context}: missing layers {missing}, unexpected conv layers {unexpected}")


def vgg_params_from_keras_h5(path, variant: str = "vgg19") -> dict:
    """Keras applications VGG16 / VGG19 weights (``.h5``) -> the :class:`VGG` ``params``.

    Reads the layer groups ``block{b}_conv{i}`` (each holding ``block{b}_conv{i}/kernel:0`` (3, 3,
    Cin, Cout) and ``.../bias:0``, or the old ``block{b}_conv{i}_W_1:0`` / ``_b_1:0``) at the file's
    root (weights-only files, e.g. ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``) or under
    ``model_weights`` (full-model files). Other layers (pooling, fc, predictions) are ignored.
    Keras' kernels are already HWIO, with input channels in BGR order: use the result with
    ``VGG(variant, preprocess="caffe")``, which feeds them what Keras' caffe preprocessing does.
    Raises FileNotFoundError for a missing file and ValueError naming missing conv layers, conv
    layers that ``variant`` does not have, or a dataset and both shapes on a shape mismatch.
    """
    _check_variant(variant)
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no Keras weight file at {path!r}")
    shapes = conv_shapes(variant)
    keras_names = {name: "block{}_conv{}".format(*name[len("conv"):].split("_")) for name in shapes}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        _check_keras_layers(set(root.keys()), set(keras_names.values()),
                            f"{path!r} is not a Keras {variant} weight file")
        return {name: _keras_conv(root[keras_names[name]], cin, cout, path)
                for name, (cin, cout) in shapes.items()}


def _keras_conv(group, cin: int, cout: int, path: str) -> dict:
    """{"kernel": (3, 3, cin, cout), "bias": (cout,)} float32 of one Keras conv layer group."""
    (kernel_key, kernel), (bias_key, bias) = _keras_layer_weights(group)
    for key, value, shape in ((kernel_key, kernel, (3, 3, cin, cout)), (bias_key, bias, (cout,))):
        if value.shape != shape:
            raise ValueError(f"{path!r}: dataset {key!r}: expected shape {shape}, got {value.shape}")
    return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}


# -- loss network --------------------------------------------------------------------------------

def vgg_loss_network(kind: str, path) -> LossNetwork:
    """A :class:`LossNetwork` of VGG ``kind`` ("vgg16" / "vgg19") with the weights in ``path``.

    ``.pth`` / ``.pt``: a torchvision state dict (preprocess "torch"); ``.h5``: Keras applications
    weights (preprocess "caffe"). Content / style layers are Johnson et al.'s: relu3_3 /
    relu1_2, relu2_2, relu3_3, relu4_3 for VGG-16; relu4_2 / relu1_1, relu2_1, relu3_1, relu4_1,
    relu5_1 for VGG-19. Raises FileNotFoundError naming a missing file, ValueError for another suffix.
    """
    _check_variant(kind)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {kind} weight file at {path!r}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".pth", ".pt"):
        module, params = VGG(kind, preprocess="torch"), vgg_params_from_torch(path, kind)
    elif suffix == ".h5":
        module, params = VGG(kind, preprocess="caffe"), vgg_params_from_keras_h5(path, kind)
    else:
        raise ValueError(f"cannot tell the format of {path!r}: "
                         "expected a torchvision .pth / .pt or a Keras .h5 file")
    return LossNetwork(f"{kind}:{path}", module, params, VGG_LAYERS[kind],
                       content_layers=CONTENT_LAYERS[kind], style_layers=STYLE_LAYERS[kind])
