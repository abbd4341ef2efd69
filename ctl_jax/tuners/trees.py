"""Small helpers over Flax parameter trees (nested dicts of arrays)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

Params = Any  # a nested dict of arrays, as in ``model.init(...)["params"]``


def path_str(path: tuple) -> str:
    """('block_0', 'conv_a', 'kernel') -> 'block_0/conv_a/kernel'."""
    return "/".join(str(p) for p in path)


def flatten(tree: Params) -> dict[tuple, Any]:
    """Nested dict -> {path tuple: leaf}."""
    return traverse_util.flatten_dict(tree)


def unflatten(flat: dict[tuple, Any]) -> Params:
    """{path tuple: leaf} -> nested dict."""
    return traverse_util.unflatten_dict(flat)


def subtree(tree: Params, path: tuple) -> Params:
    """The subtree of ``tree`` at ``path`` (a tuple of keys)."""
    for key in path:
        tree = tree[key]
    return tree


def check_same_structure(a: Params, b: Params, what_a: str = "theta0", what_b: str = "theta1") -> None:
    """Raise a ValueError naming the first path whose presence or shape differs between a and b."""
    fa, fb = flatten(a), flatten(b)
    missing = sorted(path_str(p) for p in fa.keys() - fb.keys())
    extra = sorted(path_str(p) for p in fb.keys() - fa.keys())
    if missing or extra:
        raise ValueError(f"{what_a} and {what_b} have different parameters: only in {what_a}: "
                         f"{missing[:5]}, only in {what_b}: {extra[:5]}")
    for p, leaf in fa.items():
        if jnp.shape(leaf) != jnp.shape(fb[p]):
            raise ValueError(f"parameter {path_str(p)} has shape {jnp.shape(leaf)} in {what_a} "
                             f"but {jnp.shape(fb[p])} in {what_b}")


def param_template(model, *example_args, **example_kwargs) -> Params:
    """``model``'s parameter tree as ``jax.ShapeDtypeStruct``s for inputs like ``example_args``
    (arrays or ShapeDtypeStructs): ``jax.eval_shape`` of its init, so nothing is allocated and it
    works under ``jax.jit``. The one template helper of the library."""
    return jax.eval_shape(lambda *a: model.init(jax.random.key(0), *a, **example_kwargs), *example_args)["params"]


def check_params_match(model, params: Params, *example_args, **example_kwargs) -> None:
    """Raise a ValueError unless ``params`` has exactly the leaves and shapes ``model`` expects
    (the template of :func:`param_template`; shapes only, so it works under ``jax.jit``)."""
    template = param_template(model, *example_args, **example_kwargs)
    check_same_structure(template, params, f"{type(model).__name__} (expected)", "the given params")


def count_params(tree: Params) -> int:
    """Total number of scalars in a tree."""
    return int(optax.tree_utils.tree_size(tree))
