"""Convert PyTorch state dicts into Flax parameter trees.

PyTorch is optional: this module imports without it, and only :func:`load_torch_state_dict`
(which reads ``.pth`` files) needs it. The converters accept torch tensors or numpy arrays.

Layout conventions: PyTorch conv weights are OIHW ``(out, in, kh, kw)``; Flax ``nn.Conv``
kernels are HWIO ``(kh, kw, in, out)``. Both compute cross-correlations, so no kernel flip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from ctl_jax.nets.dncnn import DnCNN

_TORCH_HINT = "pip install 'ctl_jax[torch]' (or pip install torch==2.13.0)"


def conv_weight_oihw_to_hwio(w) -> np.ndarray:
    """PyTorch conv weight (O, I, kh, kw) -> Flax kernel (kh, kw, I, O): ``k[a, b, i, o] = w[o, i, a, b]``."""
    w = np.asarray(w)
    if w.ndim != 4:
        raise ValueError(f"expected a 4-d conv weight (O, I, kh, kw); got shape {w.shape}")
    return np.transpose(w, (2, 3, 1, 0))


def _to_numpy(value) -> np.ndarray:
    """Torch tensor (any device, with or without grad) or array-like -> numpy array."""
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def load_torch_state_dict(path) -> dict:
    """Read a PyTorch state dict saved with ``torch.save`` into ``{key: np.ndarray}``.

    Uses ``torch.load(path, map_location="cpu", weights_only=True)``, so no arbitrary pickled
    code runs. Entries that are not tensors are passed through unchanged.
    Raises ImportError (with the install command) when torch is missing, FileNotFoundError
    when ``path`` does not exist and ValueError when the file cannot be read as a state dict.
    """
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"reading PyTorch checkpoints needs torch: {_TORCH_HINT}") from err
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no PyTorch checkpoint at {path!r}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip/format errors come in many types
        raise ValueError(f"could not read a PyTorch state dict from {path!r}: {err}") from err
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)")
    return {key: _to_numpy(v) if hasattr(v, "detach") else v for key, v in obj.items()}


def _canonical_dncnn_keys(state_dict: Mapping) -> dict:
    """Map canonical KAIR keys (``model.<n>.weight``) to (original key, value).

    Strips a DataParallel ``module.`` prefix and accepts a bare ``nn.Sequential``'s keys
    (``<n>.weight``) by adding the ``model.`` prefix.
    """
    out = {}
    for key, value in state_dict.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name.split(".", 1)[0].isdigit():
            name = "model." + name
        if name in out:
            raise ValueError(f"state dict keys {out[name][0]!r} and {key!r} both map to {name!r}")
        out[name] = (key, value)
    return out


def _infer_dncnn_depth(keys) -> int:
    indices = [int(m.group(1)) for k in keys if (m := re.fullmatch(r"model\.(\d+)\.weight", k))]
    if not indices:
        raise ValueError("no DnCNN conv weights found: expected keys 'model.0.weight', 'model.2.weight', ...")
    return max(indices) // 2 + 1


def dncnn_params_from_state_dict(state_dict: Mapping, depth: int | None = 17) -> dict:
    """Convert a KAIR DnCNN state dict into the :class:`DnCNN` ``params`` collection.

    Expected keys: ``model.{2*i}.weight`` (OIHW, 3x3) and ``model.{2*i}.bias`` for
    ``i = 0 .. depth-1`` (the odd indices are the parameter-free ReLUs); a ``module.`` prefix is
    stripped and bare ``<n>.weight`` keys are accepted. ``depth=None`` infers the depth from the
    keys. Channels and features are read from ``model.0.weight`` (features, channels, 3, 3).

    Returns ``{"conv_i": {"kernel": (3, 3, in, out), "bias": (out,)}}`` as float32 jnp arrays;
    use it as ``DnCNN(...).apply({"params": params}, x)``.
    Raises ValueError naming the key on missing keys, unexpected keys or wrong shapes.
    """
    entries = _canonical_dncnn_keys(state_dict)
    if depth is None:
        depth = _infer_dncnn_depth(entries)
    if depth < 2:
        raise ValueError(f"DnCNN needs depth >= 2; got {depth}")
    if "model.0.weight" not in entries:
        raise ValueError("missing key 'model.0.weight' (first conv, shape (features, channels, 3, 3))")
    first = _to_numpy(entries["model.0.weight"][1])
    if first.ndim != 4:
        raise ValueError(f"key {entries['model.0.weight'][0]!r}: expected a 4-d conv weight "
                         f"(features, channels, 3, 3); got shape {first.shape}")
    features, channels = first.shape[:2]

    params = {}
    for i in range(depth):
        n_in = channels if i == 0 else features
        n_out = channels if i == depth - 1 else features
        arrays = {}
        for suffix, shape in (("weight", (n_out, n_in, 3, 3)), ("bias", (n_out,))):
            name = f"model.{2 * i}.{suffix}"
            if name not in entries:
                raise ValueError(f"missing key {name!r} (expected shape {shape})")
            key, value = entries.pop(name)
            value = _to_numpy(value)
            if value.shape != shape:
                raise ValueError(f"key {key!r}: expected shape {shape}, got {tuple(value.shape)}")
            arrays[suffix] = value.astype(np.float32)
        params[f"conv_{i}"] = {"kernel": jnp.asarray(conv_weight_oihw_to_hwio(arrays["weight"])),
                               "bias": jnp.asarray(arrays["bias"])}
    if entries:
        unexpected = sorted(key for key, _ in entries.values())
        raise ValueError(f"unexpected keys for a depth-{depth} DnCNN: {unexpected}")
    return params


def dncnn_from_state_dict(state_dict: Mapping, depth: int | None = None) -> tuple[DnCNN, dict]:
    """Build the :class:`DnCNN` matching a KAIR state dict and convert its weights.

    Depth (by default), channels and features are inferred from the keys and shapes.
    Returns ``(module, params)``; denoise with ``module.apply({"params": params}, x)``.
    """
    params = dncnn_params_from_state_dict(state_dict, depth=depth)
    kernel0 = params["conv_0"]["kernel"]  # (3, 3, channels, features)
    module = DnCNN(channels=int(kernel0.shape[2]), depth=len(params), features=int(kernel0.shape[3]))
    return module, params
