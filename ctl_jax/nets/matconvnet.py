"""Import the authors' MatConvNet networks (MATLAB 7.3 MAT-files) into the library's Flax modules.

The DnCNN and FFDNet authors released their trained networks as MatConvNet ``simplenn`` structs saved
with ``save -v7.3``: HDF5 files with a ``net`` struct whose ``layers`` cell holds one struct per layer
(``type``, ``name``, ``weights`` and per-type fields). h5py is optional: this module imports without
it and only :func:`read_matconvnet_layers` (and so :func:`load_pretrained`) needs it
(``pip install 'ctl_jax[mat]'``).

Layouts (checked against the released files, see tests/test_matconvnet_import.py):

* MATLAB arrays are column-major; h5py shows them with the axes reversed. Every array is read back
  in MATLAB's axis order (``np.asarray(dataset).T``).
* A MatConvNet conv filter is ``(kh, kw, C_in, C_out)`` in MATLAB order (h5py: ``(C_out, C_in, kw,
  kh)``, i.e. the h5py array transposed (3, 2, 1, 0)), which is Flax's HWIO ``nn.Conv`` kernel
  unchanged. ``vl_nnconv`` computes a correlation, as ``nn.Conv`` does: no kernel flip. MATLAB's
  first image axis is the row (H), as in NHWC.
* Biases are ``1 x C_out`` (an empty cell entry is a conv without bias: zeros are imported).
* ``bnorm`` (weights: multipliers ``g``, biases ``b``, moments ``[mu, sigma]`` as a ``C x 2`` array
  whose second column is already ``sqrt(var + eps)``) computes ``g * (x - mu) / sigma + b`` at test
  time. It is merged into the preceding conv at import: ``W' = W * g / sigma`` (per output channel),
  ``b' = (b_conv - mu) * g / sigma + b``. The imported network has no batch-norm layer.
* ``relu`` (``leak`` 0 only); FFDNet's ``SubP`` (the authors' ``vl_nnSubP``, scale 0.5: 2x2
  pixel-unshuffle, scale 2: the inverse) and ``concat`` (the noise-level map appended as the last
  channel of the first conv's input) are the structure of :class:`~ctl_jax.nets.ffdnet.FFDNet`.

Recognised networks: ``[conv (bnorm) relu] * (d-1), conv`` -> :class:`~ctl_jax.nets.dncnn.DnCNN`
(residual: the net predicts the noise, as the authors' demos subtract it), and ``SubP(0.5), concat,
[conv relu] * (d-1), conv, SubP(2)`` -> :class:`~ctl_jax.nets.ffdnet.FFDNet`. All convs are 3x3,
stride 1, pad 1, dilation 1. Anything else raises a one-line ValueError naming the problem.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from ctl_jax.nets.dncnn import DnCNN, dncnn_variant
from ctl_jax.nets.ffdnet import VARIANTS as FFDNET_VARIANTS
from ctl_jax.nets.ffdnet import FFDNet
from ctl_jax.nets.registry import NetworkSpec

_H5PY_HINT = "pip install 'ctl_jax[mat]' (or pip install h5py)"
KNOWN_TYPES = ("conv", "bnorm", "relu", "SubP", "concat")


def _h5py():
    try:
        import h5py
    except ImportError as err:
        raise ImportError(f"reading MatConvNet MAT-files needs h5py: {_H5PY_HINT}") from err
    return h5py


def _read_value(h5, node):
    """One MATLAB value stored in HDF5 -> str (char), list (cell, in MATLAB's column-major order),
    None (empty) or a numpy array in MATLAB's axis order."""
    h5py = _h5py()
    if isinstance(node, h5py.Group):
        return {k: _read_value(h5, node[k]) for k in node.keys()}
    cls = node.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if node.attrs.get("MATLAB_empty", 0):
        return [] if cls == "cell" else None
    value = node[()]
    if cls == "char":
        return "".join(map(chr, np.asarray(value).T.ravel()))
    if cls == "cell" or value.dtype == h5py.ref_dtype:
        return [_read_value(h5, h5[ref]) for ref in np.asarray(value).T.ravel()]
    return np.asarray(value).T


def read_matconvnet_layers(path) -> list[dict]:
    """The layers of a MatConvNet ``simplenn`` MAT-file (v7.3), in order: one dict per layer with
    its fields (``type``, ``name``, ``weights`` as a list of numpy arrays in MATLAB axis order, ...).

    Raises FileNotFoundError for a missing file and ValueError when the file is not an HDF5
    MAT-file holding ``net.layers`` (e.g. a DagNN net, or an older MAT-file version)."""
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no MatConvNet MAT-file at {path!r}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path!r} is not a MATLAB 7.3 (HDF5) MAT-file; re-save it in MATLAB with save(..., '-v7.3')")
    with h5py.File(path, "r") as h5:
        net = h5.get("net")
        if net is None or not isinstance(net, h5py.Group):
            raise ValueError(f"{path!r} is not a MatConvNet net: no 'net' struct (top-level keys: {sorted(h5.keys())})")
        if "layers" not in net or not isinstance(net["layers"], h5py.Dataset):
            kind = "a DagNN net (vars/params), not simplenn" if "params" in net else f"fields {sorted(net.keys())}"
            raise ValueError(f"{path!r} is not a MatConvNet simplenn net: 'net' has no 'layers' cell ({kind})")
        layers = _read_value(h5, net["layers"])
    if not isinstance(layers, list) or not all(isinstance(layer, dict) and "type" in layer for layer in layers):
        raise ValueError(f"{path!r} is not a MatConvNet simplenn net: 'net.layers' is not a cell of layer structs")
    return layers


def _scalar(layer, key, default):
    v = layer.get(key)
    if v is None:
        return default
    v = np.asarray(v, np.float64).ravel()
    if v.size and not np.all(v == v[0]):
        raise ValueError(f"layer {layer.get('name')!r}: {key}={v.tolist()} is not supported (only a uniform {key})")
    return float(v[0]) if v.size else default


def _conv_params(layer, index) -> dict:
    """A MatConvNet conv layer -> ``{"kernel": (kh, kw, in, out), "bias": (out,)}`` (float32 numpy)."""
    name = f"layer {index} ({layer.get('name')!r})"
    weights = layer.get("weights") or []
    if not weights or weights[0] is None:
        raise ValueError(f"{name}: conv layer without filters")
    kernel = np.asarray(weights[0], np.float32)
    if kernel.ndim == 2:  # MATLAB drops trailing singleton axes: (kh, kw) = 1 input, 1 output
        kernel = kernel[:, :, None, None]
    elif kernel.ndim == 3:
        kernel = kernel[..., None]
    if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
        raise ValueError(f"{name}: expected 3x3 filters (kh, kw, in, out); got shape {kernel.shape}")
    bias = weights[1] if len(weights) > 1 else None
    bias = np.zeros(kernel.shape[3], np.float32) if bias is None else np.asarray(bias, np.float32).ravel()
    if bias.shape != (kernel.shape[3],):
        raise ValueError(f"{name}: {bias.size} biases for {kernel.shape[3]} filters")
    for key, want in (("stride", 1), ("pad", 1), ("dilate", 1)):
        got = _scalar(layer, key, want)
        if got != want:
            raise ValueError(f"{name}: conv {key}={got:g} is not supported (the networks here use {key}={want})")
    return {"kernel": kernel, "bias": bias}


def fold_bnorm(conv: dict, bnorm_weights) -> dict:
    """Merge a MatConvNet test-time bnorm ``g * (x - mu) / sigma + b`` into the conv before it.

    ``bnorm_weights`` = [multipliers (C,), biases (C,), moments (C, 2) with columns mu, sigma], in
    MATLAB axis order (any shapes that ravel to those sizes; moments as C x 2)."""
    if len(bnorm_weights) != 3 or any(w is None for w in bnorm_weights):
        raise ValueError("bnorm layer needs 3 weights (multipliers, biases, moments)")
    c = conv["kernel"].shape[3]
    g = np.asarray(bnorm_weights[0], np.float64).ravel()
    b = np.asarray(bnorm_weights[1], np.float64).ravel()
    moments = np.asarray(bnorm_weights[2], np.float64)
    if moments.shape == (2, c) and c != 2:
        moments = moments.T
    if g.shape != (c,) or b.shape != (c,) or moments.shape != (c, 2):
        raise ValueError(f"bnorm shapes {g.shape}, {b.shape}, {moments.shape} do not fit a conv with {c} filters")
    scale = g / moments[:, 1]
    kernel = (conv["kernel"].astype(np.float64) * scale).astype(np.float32)
    bias = ((conv["bias"].astype(np.float64) - moments[:, 0]) * scale + b).astype(np.float32)
    return {"kernel": kernel, "bias": bias}


def _convs_and_relus(layers, start, stop) -> list[dict]:
    """Parse ``[conv (bnorm) relu] * (d-1), conv`` in layers[start:stop] -> the d conv param dicts."""
    convs, expect_relu = [], False
    for i in range(start, stop):
        layer, kind = layers[i], layers[i]["type"]
        where = f"layer {i} ({layer.get('name')!r})"
        if kind == "conv":
            if expect_relu:
                raise ValueError(f"{where}: two convs without a relu between them are not supported")
            convs.append(_conv_params(layer, i))
            expect_relu = True
        elif kind == "bnorm":
            if not expect_relu or layers[i - 1]["type"] != "conv":
                raise ValueError(f"{where}: a bnorm layer must follow a conv layer (it is merged into it)")
            convs[-1] = fold_bnorm(convs[-1], layer.get("weights") or [])
        elif kind == "relu":
            if not expect_relu:
                raise ValueError(f"{where}: a relu must follow a conv (or its bnorm)")
            if _scalar(layer, "leak", 0.0) != 0.0:
                raise ValueError(f"{where}: leaky relu (leak={_scalar(layer, 'leak', 0.0):g}) is not supported")
            expect_relu = False
        else:
            raise ValueError(f"{where}: layer type {kind!r} is not expected inside the conv/relu stack")
    if not convs or not expect_relu:
        raise ValueError("the conv/relu stack must end with a conv (no relu after the last conv)")
    for a, b in zip(convs, convs[1:]):
        if a["kernel"].shape[3] != b["kernel"].shape[2]:
            raise ValueError(f"conv channels do not chain: {a['kernel'].shape} then {b['kernel'].shape}")
    return convs


def _params_tree(convs) -> dict:
    return {f"conv_{i}": {"kernel": jnp.asarray(c["kernel"]), "bias": jnp.asarray(c["bias"])}
            for i, c in enumerate(convs)}


def network_from_layers(layers: list[dict]):
    """MatConvNet layer dicts (see :func:`read_matconvnet_layers`) -> (module, params): a
    :class:`DnCNN` or :class:`FFDNet` and its ``params`` tree."""
    for i, layer in enumerate(layers):
        if layer["type"] not in KNOWN_TYPES:
            raise ValueError(f"unknown MatConvNet layer type {layer['type']!r} at layer {i} ({layer.get('name')!r}); "
                             f"the importer knows {', '.join(KNOWN_TYPES)}")
    types = [layer["type"] for layer in layers]
    if types and types[0] == "SubP":
        if types[:2] != ["SubP", "concat"] or types[-1] != "SubP" or "SubP" in types[2:-1] or "concat" in types[2:]:
            raise ValueError(f"an FFDNet net is SubP, concat, conv/relu..., SubP; got layer types {types}")
        scales = (_scalar(layers[0], "scale", None), _scalar(layers[-1], "scale", None))
        if scales != (0.5, 2.0):
            raise ValueError(f"FFDNet's SubP layers must have scale 0.5 then 2; got {scales}")
        convs = _convs_and_relus(layers, 2, len(layers) - 1)
        c_out = convs[-1]["kernel"].shape[3]
        if c_out % 4 or convs[0]["kernel"].shape[2] != c_out + 1:
            raise ValueError(f"FFDNet channels: the first conv takes {convs[0]['kernel'].shape[2]} channels and the "
                             f"last gives {c_out}; expected 4C + 1 and 4C")
        features = convs[0]["kernel"].shape[3]
        module = FFDNet(channels=c_out // 4, depth=len(convs), features=features)
    elif "SubP" in types or "concat" in types:
        raise ValueError(f"SubP/concat layers only fit the FFDNet layout (SubP, concat, ..., SubP); got {types}")
    else:
        convs = _convs_and_relus(layers, 0, len(layers))
        channels = convs[0]["kernel"].shape[2]
        if convs[-1]["kernel"].shape[3] != channels:
            raise ValueError(f"a DnCNN net maps {channels} channels back to {channels}; the last conv gives "
                             f"{convs[-1]['kernel'].shape[3]}")
        if len(convs) < 2:
            raise ValueError("a DnCNN net needs at least 2 convs")
        module = DnCNN(channels=channels, depth=len(convs), features=convs[0]["kernel"].shape[3])
    widths = {c["kernel"].shape[3] for c in convs[:-1]}
    if len(widths) != 1:
        raise ValueError(f"the middle convs must share one width; got {sorted(widths)}")
    return module, _params_tree(convs)


def load_pretrained(path):
    """Read an authors' MatConvNet MAT-file (DnCNN-S, CDnCNN, DnCNN-3, FFDNet grey/colour) ->
    ``(module, params)``: a :class:`DnCNN` or :class:`FFDNet` (the library's own classes) and its
    params tree, ready for ``module.apply({"params": params}, x)`` (FFDNet: ``(x, sigma_map)``).
    Batch norm is merged into the convs (see the module docstring)."""
    return network_from_layers(read_matconvnet_layers(path))


def pretrained_spec(module) -> NetworkSpec:
    """The registry's ``NetworkSpec`` of an imported module (DnCNN variant "s" or "3", FFDNet
    "gray" or "color"), so run folders can record and rebuild it; ValueError for other sizes."""
    if isinstance(module, DnCNN):
        return NetworkSpec("dncnn", dncnn_variant(module), module.channels)
    for name in ("gray", "color"):
        cfg = FFDNET_VARIANTS[name]
        if (module.channels, module.depth, module.features) == (cfg["channels"], cfg["depth"], cfg["features"]):
            return NetworkSpec("ffdnet", name, module.channels)
    raise ValueError(f"an FFDNet of {module.channels} channels, depth {module.depth} and {module.features} features "
                     f"is neither the authors' grey nor colour network")
