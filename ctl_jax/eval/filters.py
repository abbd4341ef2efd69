"""Similarity of the convolution filters of two Flax parameter trees.

Used to compare an interpolated network's filters with those of a network trained directly for
the target level (FTN paper, Table 3: mean absolute error and filter-wise normalised cosine
similarity). Only conv kernels are compared: leaves named ``kernel`` with 4 dimensions, Flax
HWIO layout ``(kh, kw, Cin, Cout)``, found at the same path in both trees. One filter is the
``(kh, kw, Cin)`` slice of one output channel.

Everything is shape-driven and pure ``jnp``, so the functions can be wrapped in ``jax.jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _key_name(key) -> str:
    """Readable name of one path entry (dict key, attribute or sequence index)."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _conv_kernels(params) -> dict[str, jax.Array]:
    """Map "a/b/kernel" -> leaf for every 4-D leaf whose last path entry is ``kernel``."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    kernels = {}
    for path, leaf in leaves:
        names = [_key_name(k) for k in path]
        if names and names[-1] == "kernel" and jnp.ndim(leaf) == 4:
            kernels["/".join(names)] = jnp.asarray(leaf)
    return kernels


def _shared_kernels(params_a, params_b) -> list[tuple[str, jax.Array, jax.Array]]:
    """(path, kernel_a, kernel_b) for the conv kernels present in both trees, in a's order."""
    kernels_a, kernels_b = _conv_kernels(params_a), _conv_kernels(params_b)
    shared = []
    for path, ka in kernels_a.items():
        if path not in kernels_b:
            continue
        kb = kernels_b[path]
        if ka.shape != kb.shape:
            raise ValueError(f"conv kernel {path!r} has shape {ka.shape} in params_a but "
                             f"{kb.shape} in params_b")
        shared.append((path, ka, kb))
    if not shared:
        raise ValueError("params_a and params_b share no conv kernels (4-D leaves named 'kernel' "
                         f"at the same path); params_a has {sorted(kernels_a)}, "
                         f"params_b has {sorted(kernels_b)}")
    return shared


def _filter_cosines(ka, kb, eps: float):
    """Cosine similarity of each output-channel filter: (kh, kw, Cin, Cout) x2 -> (Cout,)."""
    fa = ka.reshape(-1, ka.shape[-1])
    fb = kb.reshape(-1, kb.shape[-1])
    dot = jnp.sum(fa * fb, axis=0)
    return dot / (jnp.linalg.norm(fa, axis=0) * jnp.linalg.norm(fb, axis=0) + eps)


def filter_similarity(params_a, params_b, *, eps: float = 1e-8) -> dict[str, jax.Array]:
    """MAE and mean filter-wise cosine similarity over all conv kernels shared by two trees.

    ``mae = sum_l sum |K_a^l - K_b^l| / sum_l size(K^l)``: the mean absolute difference over all
    kernel elements of all shared layers, so large layers weigh more.
    ``cosine = mean over all filters f of <f_a, f_b> / (|f_a| |f_b| + eps)``, one filter per output
    channel of every shared layer, each counting once. 1 for identical (or positively scaled)
    filters, -1 for negated ones; all-zero filters give 0.

    Args:
      params_a, params_b: Flax parameter trees (e.g. ``variables["params"]``); kernels are
        matched by path, e.g. ``Conv_0/kernel``. Leaves in only one of the trees are ignored.
      eps: added to the norm product so that zero filters do not divide by zero.

    Returns:
      ``{"mae": scalar, "cosine": scalar}`` (0-d float arrays).

    Raises:
      ValueError: if no conv kernel path is shared, or a shared path has different shapes.
    """
    shared = _shared_kernels(params_a, params_b)
    kernels_a, kernels_b = [ka for _, ka, _ in shared], [kb for _, _, kb in shared]
    abs_sum = optax.tree_utils.tree_norm(optax.tree_utils.tree_sub(kernels_a, kernels_b), ord=1)
    cosines = jnp.concatenate([_filter_cosines(ka, kb, eps) for _, ka, kb in shared])
    return {"mae": abs_sum / optax.tree_utils.tree_size(kernels_a), "cosine": jnp.mean(cosines)}


def per_layer_filter_similarity(params_a, params_b, *,
                                eps: float = 1e-8) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Per-layer ``(mae, cosine)`` for every conv kernel shared by two trees, for reports.

    Same definitions as :func:`filter_similarity`, restricted to one layer: ``mae`` is the mean
    of ``|K_a - K_b|`` over the kernel, ``cosine`` the mean cosine over its output-channel filters.

    Returns:
      ``{"Conv_0/kernel": (mae, cosine), ...}`` with 0-d float arrays (``float()`` them for
      printing), in the flattening order of ``params_a``.
    """
    return {path: (jnp.mean(jnp.abs(ka - kb)), jnp.mean(_filter_cosines(ka, kb, eps)))
            for path, ka, kb in _shared_kernels(params_a, params_b)}
