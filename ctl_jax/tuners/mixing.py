"""Exact per-pixel alpha for any Linen network built from layers linear in their parameters.

FTN paper Eq. 3: with a per-pixel level map A, a layer whose output is linear in its
parameters gives ``(1 - A) * layer(x; theta0) + A * layer(x; theta1)``, A resized to that
layer's output. Conv, transposed conv, dense, norm scale/shift and PReLU slopes are all linear
in their parameters, so one mechanism serves every endpoint method (DNI, AdaFM, FTN) and every
base network: Flax's ``nn.intercept_methods`` wraps each such layer call of an unmodified
network, evaluates the layer a second time with its theta1 parameters (found by the module's
scope path) and mixes the two outputs. A constant map equals the global-alpha result.

Cost: every parameterised layer runs twice (the paper's "two global convolutions").

Map resizing rule: the map is resized to each layer's output height and width with bilinear
interpolation (``jax.image.resize``, half-pixel centres, no antialiasing); a layer whose output has
no spatial axes (a dense layer on (N, C) features) uses the map's mean over pixels per sample.
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


def resize_alpha_map(control: Control, out_shape: tuple) -> jax.Array:
    """The control map resized to broadcast against a layer output of ``out_shape``: (N, h, w, 1)
    for (N, h, w, C) outputs, the per-sample mean over pixels (N, 1) for (N, C) outputs."""
    if len(out_shape) == 4:
        return control.resized(out_shape[1], out_shape[2], out_shape[0])
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
    mixed_paths = set()
    busy = [False]  # the second evaluation of a layer must pass through untouched

    def interceptor(next_fun, call_args, call_kwargs, context):
        module = context.module
        if busy[0] or context.method_name != "__call__" or not isinstance(module, LINEAR_IN_PARAMS):
            return next_fun(*call_args, **call_kwargs)
        path = tuple(module.scope.path)
        y0 = next_fun(*call_args, **call_kwargs)  # the model is bound to theta0
        busy[0] = True
        try:
            y1 = module.clone(parent=None).apply({"params": subtree(theta1, path)}, *call_args, **call_kwargs)
        finally:
            busy[0] = False
        mixed_paths.add(path)
        a = resize_alpha_map(control, y0.shape)
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
