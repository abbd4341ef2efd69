"""Exact per-pixel alpha for any Linen network built from layers linear in their parameters.

FTN paper Eq. 3: with a per-pixel level map A, a layer whose output is linear in its
parameters gives ``(1 - A) * layer(x; theta0) + A * layer(x; theta1)``, A resized to that
layer's output. Conv, transposed conv, dense, norm scale/shift and PReLU slopes are all linear
in their parameters, so one mechanism serves every endpoint method (DNI, AdaFM, FTN) and every
base network: Flax's ``nn.intercept_methods`` wraps each such layer call of an unmodified
network, evaluates the layer a second time with its theta1 parameters (found by the module's
scope path) and mixes the two outputs. A constant map equals the global-alpha result.

Cost: every parameterised layer runs twice (the paper's "two global convolutions"), plus one
shape-only trace of the network that finds the layers' grids.

Map resizing rule: the map is brought once to the *mixing grid*, the coarsest (h, w) among the
layers' outputs (single-pixel outputs aside): block means when the map's size is a multiple of it,
else bilinear (``Control.resized``: half-pixel centres, no antialiasing). A layer whose (h, w) is a
multiple of the grid gets that map with each value repeated over its block, any other layer the map
resized bilinearly, and a layer with no spatial axes (a dense layer on (N, C)) the map's mean per sample.
Why one grid: a coarse feature (after a stride-2 conv, before a pixel shuffle) reaches every fine
pixel of its block, so it can carry only one alpha. Resizing the map to each layer separately made
a boundary inside a block fractional at the coarse layers and sharp at the fine ones, a mix of
levels that no global alpha gives: where a change made at one resolution is partly undone at the
other, a thin line showed along the seam. On one grid every pixel is mixed at one level; the price
is that the map's detail is the coarsest grid's (a boundary inside a block becomes a soft step).

Instance norm: its scale and shift are mixed like any parameter, but its statistics pool over the
whole image, so a layer-wise mix normalises the style-A half of an image with statistics of
both halves, and neither half looks like its own network's output (measured on Transform-Net: with
a map of 0 on the left and 1 on the right, the left edge was nearer the alpha-1 output than the
alpha-0 one). Under a per-pixel map the statistics of an ``nn.InstanceNorm`` are therefore pooled
over the pixels of similar alpha (:func:`alpha_pooled_instance_norm`): each pixel is normalised as
its own alpha's network would normalise a picture of its region. A constant map pools every pixel,
so it still equals the global alpha.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ctl_jax.control import Control, as_control
from ctl_jax.nets.layers import DepthwiseConv
from ctl_jax.tuners.trees import Params, flatten, path_str, subtree

LINEAR_IN_PARAMS = (nn.Conv, nn.ConvTranspose, nn.Dense, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm, nn.PReLU,
                    DepthwiseConv)


def _is_mixed_call(context) -> bool:
    return context.method_name == "__call__" and isinstance(context.module, LINEAR_IN_PARAMS)


def layer_grids(model: nn.Module, theta0: Params, x: jax.Array, *args, **kwargs) -> set:
    """The (h, w) of every spatial (N, h, w, C) output of a mixed layer, from a shape-only trace."""
    grids = set()

    def record(next_fun, call_args, call_kwargs, context):
        y = next_fun(*call_args, **call_kwargs)
        if _is_mixed_call(context) and jnp.ndim(y) == 4:
            grids.add(tuple(y.shape[1:3]))
        return y

    def run(params, images):
        with nn.intercept_methods(record):
            return model.apply({"params": params}, images, *args, **kwargs)

    jax.eval_shape(run, theta0, x)
    return grids


def mixing_grid(grids) -> tuple | None:
    """The coarsest (h, w) among ``grids``, single-pixel grids (pooled features) aside; None if none."""
    grids = [g for g in grids if g != (1, 1)]
    if not grids:
        return None
    return min(h for h, _ in grids), min(w for _, w in grids)


def _map_on_grid(control: Control, grid: tuple) -> jax.Array:
    """The control map on ``grid``: block means when the map's size is a multiple of it, else bilinear."""
    v = control.values
    (b, hm, wm, d), (h, w) = v.shape, grid
    if hm % h == 0 and wm % w == 0:
        return v.reshape(b, h, hm // h, w, wm // w, d).mean(axis=(2, 4))
    return control.resized(h, w)


NORM_BINS = 5  # alpha bins of the pooled instance-norm statistics


def alpha_pooled_instance_norm(x: jax.Array, a: jax.Array, epsilon: float, bins: int = NORM_BINS) -> jax.Array:
    """Instance normalisation of x (N, h, w, C) with statistics pooled over pixels of similar alpha.

    a: (N, h, w, 1) per-pixel alpha. The span [min a, max a] of each sample carries ``bins`` hat
    functions b_k (a partition of unity); per sample, channel and bin, mean_k and var_k are the
    b_k-weighted mean and variance of x, and pixel p is normalised with sum_k b_k(a_p) mean_k and
    sum_k b_k(a_p) var_k. A constant map puts every pixel in bin 0: plain instance norm. Returns
    (x - mean(p)) / sqrt(var(p) + epsilon), float32.
    """
    x = x.astype(jnp.float32)
    lo = jnp.min(a, axis=(1, 2, 3), keepdims=True)
    span = jnp.maximum(jnp.max(a, axis=(1, 2, 3), keepdims=True) - lo, 1e-6)
    position = (a - lo) / span * (bins - 1)  # exactly 0 everywhere for a constant map
    hats = jnp.maximum(0.0, 1.0 - jnp.abs(position - jnp.arange(bins, dtype=jnp.float32)))  # (N, h, w, K)
    mass = jnp.maximum(jnp.sum(hats, axis=(1, 2)), 1e-12)                         # (N, K)
    mean = jnp.einsum("nhwk,nhwc->nkc", hats, x) / mass[..., None]               # (N, K, C)
    # two-pass variance, one bin at a time (an (N, h, w, K, C) temporary would be K times the features)
    var = jnp.stack([jnp.einsum("nhw,nhwc->nc", hats[..., k], jnp.square(x - mean[:, None, None, k]))
                     for k in range(bins)], axis=1) / mass[..., None]                 # (N, K, C)
    return (x - jnp.einsum("nhwk,nkc->nhwc", hats, mean)) * jax.lax.rsqrt(jnp.einsum("nhwk,nkc->nhwc", hats, var) + epsilon)


def _mixed_instance_norm(module: nn.InstanceNorm, x: jax.Array, a: jax.Array, p0: dict, p1: dict) -> jax.Array:
    """``module`` under the per-pixel map a (N, h, w, 1): alpha-pooled statistics, then scale and
    shift mixed per pixel between the parameter trees p0 and p1 (the layer's subtrees)."""
    y = alpha_pooled_instance_norm(x, a, module.epsilon)
    if module.use_scale:
        y = y * ((1 - a) * p0["scale"] + a * p1["scale"])
    if module.use_bias:
        y = y + (1 - a) * p0["bias"] + a * p1["bias"]
    return y.astype(module.dtype or x.dtype)


def _pools_over_pixels(module, x) -> bool:
    """An instance norm over the (h, w) of an (N, h, w, C) input, normalising every channel."""
    return (isinstance(module, nn.InstanceNorm) and jnp.ndim(x) == 4
            and module.feature_axes in (-1, 3, (-1,), (3,)))


def resize_alpha_map(control: Control, out_shape: tuple, grid: tuple | None = None,
                     on_grid: jax.Array | None = None) -> jax.Array:
    """The control map resized to broadcast against a layer output of ``out_shape``: (N, h, w, 1)
    for (N, h, w, C) outputs, the per-sample mean over pixels (N, 1) for (N, C) outputs.

    grid: the mixing grid (see the module docstring); without it the map is resized bilinearly.
    on_grid: the map already on ``grid`` (computed once per forward pass).
    """
    if len(out_shape) == 4:
        n, h, w = out_shape[:3]
        if grid is not None and h % grid[0] == 0 and w % grid[1] == 0:
            a = _map_on_grid(control, grid) if on_grid is None else on_grid
            a = jnp.repeat(jnp.repeat(a, h // grid[0], axis=1), w // grid[1], axis=2)
            return jnp.broadcast_to(a, (n, h, w, a.shape[-1]))
        return control.resized(h, w, n)
    if len(out_shape) == 2:
        return control.per_sample_values(out_shape[0])
    raise ValueError(f"per-pixel alpha: cannot map a layer output of shape {out_shape} to pixels")


def apply_with_alpha_map(model: nn.Module, theta0: Params, theta1: Params, x: jax.Array,
                         control: Control, *args, **kwargs) -> jax.Array:
    """``model.apply`` with every parameterised layer mixed per pixel between theta0 and theta1.

    x: (N, H, W, C) input; control: a D = 1 ``Control`` (a per-pixel map at any resolution).
    Raises ValueError if the network has parameters outside the layers listed in
    ``LINEAR_IN_PARAMS`` (they could not be mixed exactly).
    """
    control = as_control(control).check(x.shape[0], 1)
    grid = mixing_grid(layer_grids(model, theta0, x, *args, **kwargs)) if control.is_pixel else None
    on_grid = _map_on_grid(control, grid) if grid is not None else None
    mixed_paths = set()
    busy = [False]  # the second evaluation of a layer must pass through untouched

    def interceptor(next_fun, call_args, call_kwargs, context):
        module = context.module
        if busy[0] or not _is_mixed_call(context):
            return next_fun(*call_args, **call_kwargs)
        path = tuple(module.scope.path)
        if control.is_pixel and _pools_over_pixels(module, call_args[0]):
            mixed_paths.add(path)
            x_in = call_args[0]
            return _mixed_instance_norm(module, x_in, resize_alpha_map(control, x_in.shape, grid, on_grid),
                                        subtree(theta0, path), subtree(theta1, path))
        y0 = next_fun(*call_args, **call_kwargs)  # the model is bound to theta0
        busy[0] = True
        try:
            y1 = module.clone(parent=None).apply({"params": subtree(theta1, path)}, *call_args, **call_kwargs)
        finally:
            busy[0] = False
        mixed_paths.add(path)
        a = resize_alpha_map(control, y0.shape, grid, on_grid)
        return (1 - a) * y0 + a * y1

    with nn.intercept_methods(interceptor):
        out = model.apply({"params": theta0}, x, *args, **kwargs)
    unmixed = [path_str(p) for p in flatten(theta0)
               if not any(p[:len(m)] == m for m in mixed_paths)]
    if unmixed:
        raise ValueError(
            "per-pixel alpha supports parameters of layers linear in them "
            f"({', '.join(c.__name__ for c in LINEAR_IN_PARAMS)}); these parameters are elsewhere: {unmixed[:5]}")
    return out
