"""Filter Transition Networks (FTN, Lee et al., AAAI 2021) as a parameter transform.

Every conv kernel ``f`` of the base network (Flax HWIO layout ``(kh, kw, C_in, C_out)``, transposed
convs included) gets its own small network that maps the kernel to its level-B version, and the
layer at level alpha uses ``f (1 - alpha) + FTN(f) alpha`` (paper Eq. 1). FTN treats the kernel
as ``kh * kw * C_in`` vectors of ``C_out`` channels and applies

    1x1 grouped conv -> PReLU -> 1x1 grouped conv            (default, depth 2)
    1x1 grouped conv -> PReLU -> ... -> 1x1 grouped conv     (ablation "deeper": depth 3)

or, for the ablation "spatial", depthwise 3x3 convs over the ``kh x kw`` kernel plane instead of
the 1x1 convs. Every conv is initialised to the identity (identity blocks in each group, zero
bias; the centre tap for the depthwise variant) and every PReLU slope to 1, so at init
``FTN(f) == f`` exactly and the tuned network equals the base network.

The channel axis is C_out: with it the parameter counts reproduce the paper's Table 3 (AdaFM-Net
1.41 M -> 1.83 M with FTN, 1.44 M with FTN G=16). Biases are not transformed. The cost of FTN does
not depend on the image size: kernels are transformed once per alpha, then the network runs a
plain forward pass.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from ctl_jax.tuners.base import ParameterTuner, base_tree_as_phi
from ctl_jax.tuners.trees import Params, flatten, path_str, unflatten

SPATIAL_KERNEL = 3  # kernel size of the depthwise convs of the "spatial" ablation


def prelu(x, slope):
    """PReLU with per-channel slope: x for x >= 0, slope * x otherwise."""
    return jnp.where(x >= 0, x, slope * x)


def ftn_layer_init(channels: int, groups: int = 1, depth: int = 2, spatial: bool = False) -> Params:
    """Identity-initialised parameters of one FTN for kernels with ``channels`` output channels.

    Returns ``{"w_i", "b_i"}`` for i < depth and ``{"slope_i"}`` for i < depth - 1, where ``w_i``
    is (groups, channels/groups, channels/groups) (1x1 grouped conv as block-diagonal matrices)
    or (3, 3, channels) for ``spatial`` (depthwise), ``b_i`` is (channels,) and ``slope_i`` is
    (channels,) initialised to 1.
    """
    if depth < 1:
        raise ValueError(f"FTN depth must be >= 1; got {depth}")
    if groups < 1 or channels % groups:
        raise ValueError(f"FTN groups must divide the kernel's {channels} output channels; got groups={groups}")
    params = {}
    for i in range(depth):
        if spatial:
            w = jnp.zeros((SPATIAL_KERNEL, SPATIAL_KERNEL, channels)).at[SPATIAL_KERNEL // 2, SPATIAL_KERNEL // 2].set(1.0)
        else:
            size = channels // groups
            w = jnp.broadcast_to(jnp.eye(size), (groups, size, size))
        params[f"w_{i}"] = jnp.asarray(w, jnp.float32)
        params[f"b_{i}"] = jnp.zeros((channels,), jnp.float32)
        if i < depth - 1:
            params[f"slope_{i}"] = jnp.ones((channels,), jnp.float32)
    return params


def _grouped_1x1(h, w, b):
    """h: (M, C), w: (G, C/G, C/G) block-diagonal matrix, b: (C,) -> (M, C)."""
    g, size, _ = w.shape
    out = jnp.einsum("mgi,gio->mgo", h.reshape(-1, g, size), w)
    return out.reshape(h.shape) + b


def _depthwise_over_taps(h, w, b):
    """h: (C_in, kh, kw, C) kernel planes, w: (3, 3, C) depthwise -> (C_in, kh, kw, C), zero padding."""
    c = h.shape[-1]
    out = jax.lax.conv_general_dilated(h, w[:, :, None, :], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
    return out + b


def ftn_layer_apply(params: Params, kernel: jax.Array, spatial: bool = False) -> jax.Array:
    """FTN(f) for one kernel ``f`` of shape (kh, kw, C_in, C_out); returns the same shape.

    ``params`` come from :func:`ftn_layer_init` with the same ``spatial`` flag.
    """
    depth = sum(1 for k in params if k.startswith("w_"))
    if spatial:
        h = jnp.transpose(kernel, (2, 0, 1, 3))  # (C_in, kh, kw, C_out): one image per input channel
        layer = _depthwise_over_taps
    else:
        h = kernel.reshape(-1, kernel.shape[-1])
        layer = _grouped_1x1
    for i in range(depth):
        h = layer(h, params[f"w_{i}"], params[f"b_{i}"])
        if i < depth - 1:
            h = prelu(h, params[f"slope_{i}"])
    if spatial:
        return jnp.transpose(h, (1, 2, 0, 3))
    return h.reshape(kernel.shape)


def is_conv_kernel(path: tuple, leaf) -> bool:
    """Conv and transposed-conv kernels: leaves named ``kernel`` of rank 4 (HWIO)."""
    return path[-1] == "kernel" and jnp.ndim(leaf) == 4


@dataclasses.dataclass(frozen=True)
class FTN(ParameterTuner):
    """FTN tuner over every conv kernel of a parameter tree.

    groups: G of the grouped 1x1 convs (paper: 1, 4, 16).
    depth: number of convs in each FTN (2; the "deeper" ablation uses 3).
    spatial: the "spatial" ablation (depthwise 3x3 over the kernel taps instead of 1x1 convs).
    on_indivisible: what to do with a kernel whose output channels G does not divide (for example
      the 3-channel output conv with G=16): "error" raises, "gcd" uses gcd(G, C_out) groups there.
    """

    groups: int = 1
    depth: int = 2
    spatial: bool = False
    on_indivisible: str = "error"
    name: str = "ftn"

    def layer_groups(self, path: tuple, channels: int) -> int:
        if self.spatial or channels % self.groups == 0:
            return 1 if self.spatial else self.groups
        if self.on_indivisible == "gcd":
            return math.gcd(self.groups, channels)
        raise ValueError(
            f"FTN groups={self.groups} does not divide the {channels} output channels of {path_str(path)}; "
            f"use groups dividing every conv's output channels, or FTN(on_indivisible='gcd') to use "
            f"gcd(groups, channels) = {math.gcd(self.groups, channels)} groups for such layers")

    def init(self, key: jax.Array, theta0: Params, model=None, x=None) -> Params:
        """phi: one identity-initialised FTN per conv kernel, nested like theta0's kernels."""
        del key, model, x
        if self.on_indivisible not in ("error", "gcd"):
            raise ValueError(f"on_indivisible must be 'error' or 'gcd'; got {self.on_indivisible!r}")
        phi = {p: ftn_layer_init(leaf.shape[-1], self.layer_groups(p, leaf.shape[-1]), self.depth, self.spatial)
               for p, leaf in flatten(theta0).items() if is_conv_kernel(p, leaf)}
        if not phi:
            raise ValueError("FTN found no conv kernels (rank-4 leaves named 'kernel') in theta0")
        return unflatten(phi)

    def endpoint(self, phi: Params, theta0: Params) -> Params:
        """theta1: theta0 with every conv kernel f replaced by FTN(f); other leaves unchanged."""
        network_leaf = next((p for p in flatten(phi) if p[-1] in ("kernel", "bias", "scale")), None)
        if network_leaf is not None:  # FTN's own leaves are w_i, b_i and slope_i
            raise base_tree_as_phi(self.name, path_str(network_leaf))
        flat = flatten(theta0)
        for p, leaf in flat.items():
            if is_conv_kernel(p, leaf):
                layer = _layer_params(phi, p)
                flat[p] = ftn_layer_apply(layer, leaf, self.spatial)
        return unflatten(flat)


def _layer_params(phi: Params, path: tuple) -> Params:
    node = phi
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"FTN phi has no transition network for conv kernel {path_str(path)}; "
                             "phi must come from FTN.init on the same network")
        node = node[key]
    return node
