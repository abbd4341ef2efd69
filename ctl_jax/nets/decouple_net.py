"""The base network of decoupled learning (Fan et al., "A General Decoupled Learning Framework for
Parameterized Image Operators", TPAMI 2019), with a trunk/head split for cheap parameter tuning.

``paper`` layout (fqnchina/DecoupleLearning, ``train_1_operator.py``), NHWC, C = 1 or 3 channels:

    input  = [x - 0.5, edge map]                 edge map: mean |forward difference| (C + 1 channels)
    conv1, conv2 (3x3), conv3 (3x3, stride 2)    -> F features at half resolution
    7 residual blocks, dilations 2,2,4,4,8,8,16 then 1 (table below), each
        conv -> IN -> ReLU -> conv -> IN, + block input, ReLU
    conv18 = 4x4 transposed conv, stride 2       back to full resolution
    conv19 (3x3), conv20 (3x3, F -> C), final ReLU

Instance norm (affine) + ReLU follow every conv but the last; no conv has a bias. The layers are
numbered as in the paper: ``conv1`` .. ``conv20`` and ``norm1`` .. ``norm19`` (``norm<i>``
follows ``conv<i>``), so "the norm at depth 7" is the parameter subtree ``norm7``.

``realtime`` is the cheap-tuning variant (``*_realtime.py``): wider features (128) and bottleneck
residual blocks ``1x1 (F -> 2F) -> depthwise 3x3 (dilated) -> 1x1 (2F -> F)``, each conv followed
by IN; its convs are numbered the same way (``conv1`` .. ``conv27``, ``norm1`` .. ``norm26``).

Trunk/head split: the forward pass is a flat list of operations (``ops``). ``model.apply(v, x,
stop=name)`` runs the operations before the first one that uses layer ``name`` and returns the
state ``(image, h, skip)``; ``model.apply(v, state, start=name)`` runs the rest. When only layer ``name``
depends on the control gamma, the trunk runs once per image and only the head per gamma.

Baseline [18] (Chen et al., "Fast image processing with fully-convolutional networks"): set
``condition_channels`` = D and pass a condition map ``cond`` (N or 1, H, W, D) to ``__call__``; it is
appended to the input as D channels (a constant map per image is the paper's gamma as constant
channels; ``ctl_jax.tuners.condition.Conditional`` builds it from a control). Input (N, H, W, C) in
[0, 1] with H, W even; output (N, H, W, C) >= 0.

``residual=True`` (not in the paper) adds the input image to the last conv's output, so an
untrained network starts at the identity; the CPU-scale experiments use it because a few hundred
steps are far too few for the plain network to learn to reproduce images.
"""

from __future__ import annotations

import jax.numpy as jnp
import flax.linen as nn

from ctl_jax.nets.layers import DepthwiseConv, check_image_batch

# He-normal over fan-out (k*k*C_out), the reference code's init. The reference works on 0..255
# pixels; on our 0..1 scale the last conv gets the same init divided by 255, so the initial output
# is as small relative to the image range as there.
he_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
he_fan_out_last = nn.initializers.variance_scaling(2.0 / 255 ** 2, "fan_out", "normal")

# features, residual block type, dilations of the residual blocks
VARIANTS = {
    "paper": dict(features=64, block="basic", dilations=(2, 4, 4, 8, 8, 16, 1)),
    "realtime": dict(features=128, block="bottleneck", dilations=(2, 4, 4, 8, 8, 16, 1)),
    "small": dict(features=32, block="basic", dilations=(2, 4, 8, 1)),
    "tiny": dict(features=8, block="basic", dilations=(2, 1)),
}


def edge_map(x):
    """Mean absolute gradient, (N, H, W, C) -> (N, H, W, 1): for every pixel, the sum of |forward
    differences| to its (up to four) neighbours, averaged over channels and divided by 4."""
    dx = jnp.abs(x[:, :, 1:] - x[:, :, :-1])
    dy = jnp.abs(x[:, 1:] - x[:, :-1])
    zero_col, zero_row = jnp.zeros_like(dx[:, :, :1]), jnp.zeros_like(dy[:, :1])
    total = (jnp.concatenate([zero_col, dx], 2) + jnp.concatenate([dx, zero_col], 2)
             + jnp.concatenate([zero_row, dy], 1) + jnp.concatenate([dy, zero_row], 1))
    return jnp.mean(total, axis=-1, keepdims=True) / 4


def network_ops(variant: str, channels: int) -> list[tuple]:
    """The flat operation list of a variant. Layer operations are
    ``("conv", name, kernel, stride, dilation, features)``, ``("depthwise", name, dilation)``,
    ``("deconv", name, features)`` and ``("norm", name)``; the others are ``("relu",)``,
    ``("save",)`` (remember the residual input) and ``("add_relu",)`` (add it back, ReLU)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown DecoupleNet variant {variant!r}; choose one of {sorted(VARIANTS)}")
    cfg = VARIANTS[variant]
    f = cfg["features"]
    ops, depth = [], 0

    def layer(kind, *args, norm=True, relu=True):
        nonlocal depth
        depth += 1
        ops.append((kind, f"conv{depth}", *args))
        if norm:
            ops.append(("norm", f"norm{depth}"))
        if relu:
            ops.append(("relu",))

    layer("conv", 3, 1, 1, f)
    layer("conv", 3, 1, 1, f)
    layer("conv", 3, 2, 1, f)
    for d in cfg["dilations"]:
        ops.append(("save",))
        if cfg["block"] == "basic":
            layer("conv", 3, 1, d, f)
            layer("conv", 3, 1, d, f, relu=False)
        else:
            layer("conv", 1, 1, 1, 2 * f)
            layer("depthwise", d)
            layer("conv", 1, 1, 1, f, relu=False)
        ops.append(("add_relu",))
    layer("deconv", f)
    layer("conv", 3, 1, 1, f)
    layer("conv", 3, 1, 1, channels, norm=False, relu=False)  # the final ReLU is applied by the caller
    return ops


def layer_names(variant: str, channels: int = 3) -> list[str]:
    """The names of a variant's parameterised layers, in forward order (conv1, norm1, conv2, ...)."""
    return [op[1] for op in network_ops(variant, channels) if len(op) > 1]


class DecoupleNet(nn.Module):
    """The decoupled-learning base network; see the module docstring."""

    variant: str = "paper"
    channels: int = 3
    condition_channels: int = 0  # > 0: baseline [18], a condition map as extra input channels
    residual: bool = False  # output relu(x + net(x)) instead of relu(net(x)); not in the paper

    @property
    def ops(self) -> list[tuple]:
        return network_ops(self.variant, self.channels)

    def _index(self, name: str) -> int:
        for i, op in enumerate(self.ops):
            if len(op) > 1 and op[1] == name:
                return i
        raise ValueError(f"DecoupleNet {self.variant!r} has no layer {name!r}; layers: "
                         f"{layer_names(self.variant, self.channels)}")

    @nn.compact
    def __call__(self, x, cond=None, *, start: str | None = None, stop: str | None = None):
        """Image (N, H, W, C) [and, for baseline [18], condition map (N|1, H, W, D)] -> output, or with
        ``stop`` -> trunk state; state with ``start`` -> output."""
        ops = self.ops
        begin = 0 if start is None else self._index(start)
        end = len(ops) if stop is None else self._index(stop)
        if start is None:
            image, h, skip = x, self._input(x, cond), None
        else:
            image, h, skip = x
        for op in ops[begin:end]:
            h, skip = self._run(op, h, skip)
        if stop is not None:
            return image, h, skip
        return nn.relu(image + h if self.residual else h)

    def _input(self, x, cond):
        check_image_batch(x, self.channels, f"DecoupleNet {self.variant!r}", multiple_of=2)
        parts = [x - 0.5, edge_map(x)]
        if self.condition_channels:
            n, h, w, _ = x.shape
            shape = None if cond is None else jnp.shape(cond)
            if shape is None or len(shape) != 4 or shape[0] not in (1, n) or shape[1:] != (h, w, self.condition_channels):
                raise ValueError(f"this DecoupleNet takes a condition map of shape (N or 1, H, W, D) = "
                                 f"({n}, {h}, {w}, {self.condition_channels}); got {shape}")
            parts.append(jnp.broadcast_to(cond.astype(x.dtype), (n, h, w, self.condition_channels)))
        elif cond is not None:
            raise ValueError("a condition map was given but this DecoupleNet has condition_channels=0; "
                             "use a hypernetwork (ctl_jax.tuners.hyper) to control it")
        return jnp.concatenate(parts, axis=-1)

    def _run(self, op, h, skip):
        kind = op[0]
        if kind == "conv":
            _, name, k, stride, dilation, features = op
            pad = dilation * (k // 2)
            init = he_fan_out_last if features == self.channels else he_fan_out
            h = nn.Conv(features, (k, k), (stride, stride), padding=((pad, pad), (pad, pad)),
                        kernel_dilation=(dilation, dilation), use_bias=False, kernel_init=init, name=name)(h)
        elif kind == "depthwise":
            h = DepthwiseConv(3, dilation=op[2], use_bias=False, kernel_init=he_fan_out, name=op[1])(h)
        elif kind == "deconv":
            h = nn.ConvTranspose(op[2], (4, 4), (2, 2), padding="SAME", use_bias=False, kernel_init=he_fan_out,
                                 name=op[1])(h)
        elif kind == "norm":
            h = nn.InstanceNorm(epsilon=1e-5, name=op[1])(h)
        elif kind == "relu":
            h = nn.relu(h)
        elif kind == "save":
            skip = h
        elif kind == "add_relu":
            h, skip = nn.relu(h + skip), None
        return h, skip


def decouple_net(variant: str = "paper", channels: int = 3, condition_channels: int = 0, residual: bool = False,
                 **unused) -> DecoupleNet:
    """Factory with the registry's signature; ``unused`` absorbs options of other families."""
    if unused.get("adafm_kernel") is not None:
        raise ValueError("DecoupleNet has no AdaFM slots; leave adafm_kernel unset")
    network_ops(variant, channels)  # validates the variant
    return DecoupleNet(variant, channels, condition_channels, residual)
