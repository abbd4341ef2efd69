"""Feature-space tuners: CFSNet and Dynamic-Net (DESIGN.md principle 5) on an unmodified base network.

Both keep the base network ``theta0`` frozen and add trainable modules ``phi`` whose features are
mixed into the base's features at chosen submodule calls, the *mixing points*. Flax's
``nn.intercept_methods`` catches every ``__call__`` of a submodule whose path matches one of the
tuner's ``layers`` patterns, runs the call, and replaces its output ``y`` (N, h, w, C) by a mix:

- CFSNet (Wang et al., ICCV 2019; qibao77/CFSNet ``architecture.py``, ``tuning_blocks.py``): at
  main block m with input ``B_{m-1}`` and output ``R_m``, ``B_m = (1 - a_m) R_m + a_m T_m(B_{m-1})``
  (the coupling module), where ``T_m`` is the tuning block (conv3x3 -> ReLU -> conv3x3, no bias) and
  ``a_m`` (C,) comes from the input control through the coupling MLP. ``B_m`` goes on into the next
  main block and the next tuning block (and, after the last block, to the rest of the network).
- Dynamic-Net (Shoshan et al., ICCV 2019; AlonShoshan10/dynamic_net ``tuning_blocks.py``,
  ``dynamic_style_transfer_net.py``): ``y + alpha TB(y)``, where TB is conv3x3 -> ReLU -> conv3x3
  -> ReLU -> conv3x3 (bias, reflection padding); the result goes on to the next layer.

Patterns are ``fnmatch`` patterns matched segment by segment against the module's call path
(names from the root, ``/``-separated): ``"block_*"`` matches ``block_3`` but not ``trunk/block_3``
nor a conv inside ``block_3``. Submodules called inside a mixing point are never mixing points
themselves. The default ``("block_*",)`` selects the residual blocks of ``CFSNetMain`` and
``AdaFMNet`` (``ctl_jax.nets.adafm_net.ResBlock``).

Control (``ctl_jax.Control``, D = 1): 0 is the base network, exactly for both methods (the mix is
``1 * y + 0 * T``, bit-identical to ``y`` while T is finite); 1 is the level trained in stage 2. Global, per-sample and per-pixel controls go
through one path: the control is resized to each mixing point's (h, w) with
``control.resized(h, w, N)`` and the coefficients are computed per pixel, so a constant map equals
the global control. Stage 2 trains ``phi`` only (the tuning blocks and, for CFSNet, the coupling
MLP) at control 1; stage 1 is the base network trained alone at control 0.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ctl_jax.tuners.base import Tuner, base_tree_as_phi
from ctl_jax.tuners.trees import Params, flatten, path_str

# PyTorch's kaiming_normal_(fan_in) x 0.1 (untruncated), CFSNet's init for its convs and linears.
cfsnet_init = nn.initializers.variance_scaling(2.0 * 0.1 ** 2, "fan_in", "normal")


# -- mixing points -------------------------------------------------------------------------------

def call_path(module: nn.Module) -> str:
    """The module's call path: the names of it and its parents below the root, ``/``-separated.
    (For a module that shares its parent's scope, such as ``ResBlock``, this differs from its
    parameter path.)"""
    names = []
    while isinstance(module, nn.Module):
        if module.name is not None:
            names.append(module.name)
        module = module.parent
    return "/".join(reversed(names))


def path_matches(path: str, patterns) -> bool:
    """True if ``path`` matches one of ``patterns`` segment by segment (``*`` stays within a segment)."""
    parts = path.split("/")
    for pattern in patterns:
        pieces = pattern.split("/")
        if len(pieces) == len(parts) and all(fnmatch.fnmatchcase(a, p) for a, p in zip(parts, pieces)):
            return True
    return False


def point_key(path: str) -> str:
    """The key of a mixing point in phi: its call path with ``.`` for ``/``."""
    return path.replace("/", ".")


def run_with_mixing(model: nn.Module, theta0: Params, x: jax.Array, layers, mix: Callable) -> tuple:
    """``model.apply({"params": theta0}, x)`` with the output ``y`` of every mixing point replaced by
    ``mix(key, inputs, y)`` (``inputs``: the call's first argument). Returns (output, the keys of
    the points in call order, every call path seen)."""
    points, paths, inside = [], [], [False]

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        path = call_path(context.module)
        paths.append(path)
        if inside[0] or not path or not path_matches(path, layers):
            return next_fun(*args, **kwargs)
        inside[0] = True  # submodules of a mixing point are not mixing points
        try:
            y = next_fun(*args, **kwargs)
        finally:
            inside[0] = False
        key = point_key(path)
        points.append(key)
        return mix(key, args[0] if args else None, y)

    with nn.intercept_methods(interceptor):
        out = model.apply({"params": theta0}, x)
    return out, points, paths


def mixing_points(model: nn.Module, theta0: Params, x, layers, method: str = "feature tuner") -> dict:
    """{key: (input shape, output shape)} of the mixing points, in call order (shapes only:
    ``theta0`` and ``x`` may be arrays or ``jax.ShapeDtypeStruct``s). ValueError, naming the
    patterns and some of the network's module paths, if nothing matches."""
    found = {}

    def record(key, inputs, y):
        found.setdefault(key, (None if inputs is None else jnp.shape(inputs), jnp.shape(y)))
        return y

    spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
    seen = []

    def run(params, images):
        out, _, paths = run_with_mixing(model, params, images, layers, record)
        seen.extend(paths)
        return out

    jax.eval_shape(run, jax.tree.map(spec, theta0), spec(x))
    if not found:
        shown = list(dict.fromkeys(p for p in seen if p))[:8]
        raise ValueError(f"{method}: {type(model).__name__} has no submodule matching the mixing layers "
                         f"{list(layers)}; its module paths include {shown}")
    for key, (_, out_shape) in found.items():
        if len(out_shape) != 4:
            raise ValueError(f"{method}: mixing point {key!r} gives an output of shape {out_shape}; "
                             "feature mixing needs (N, H, W, C) feature maps")
    return found


def conv3x3(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, pad: str = "constant") -> jax.Array:
    """3x3 convolution, stride 1, 1-pixel padding (``"constant"`` zeros or ``"reflect"``):
    (N, H, W, C_in) x (3, 3, C_in, C_out) -> (N, H, W, C_out)."""
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=pad)
    y = jax.lax.conv_general_dilated(xp, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y if bias is None else y + bias


# -- the protocol for feature tuners -------------------------------------------------------------

class FeatureTuner(Tuner):
    """Shared ``apply`` of the feature-space tuners; subclasses define ``init`` and ``mixer``."""

    kind = "feature"
    stages = 2
    control_dim = 1
    pixel = True
    layers: tuple = ("block_*",)

    def mixer(self, phi: Params) -> Callable:
        """``mix(point_phi, inputs, y, a)`` with ``a`` the control at the point, (N, h, w, 1)."""
        raise NotImplementedError

    def points(self, model: nn.Module, theta0: Params, x) -> dict:
        """{key: (input shape, output shape)} of this tuner's mixing points in ``model``."""
        return mixing_points(model, theta0, x, self.layers, f"{self.name} ({self.kind})")

    def apply(self, model, theta0, phi, x, control):
        """The base network with features mixed at every mixing point. x: (N, H, W, C); control: a
        D = 1 ``Control`` (or a scalar), global, per-sample or per-pixel (any map resolution)."""
        control = self.check_control(control, x.shape[0])
        if not isinstance(phi, dict) or "points" not in phi:
            leaves = [path_str(p) for p in flatten(phi)] if isinstance(phi, dict) else [type(phi).__name__]
            raise base_tree_as_phi(self.name, f"{leaves[0] if leaves else 'nothing'} and no 'points'")
        mix, tuned = self.mixer(phi), phi["points"]

        def at_point(key, inputs, y):
            if key not in tuned:
                raise ValueError(f"{self.name}: phi has no parameters for mixing point {key!r} (it has "
                                 f"{sorted(tuned)[:8]}); was phi made for another network?")
            return mix(tuned[key], inputs, y, control.resized(y.shape[1], y.shape[2], y.shape[0]))

        out, visited, _ = run_with_mixing(model, theta0, x, self.layers, at_point)
        unused = sorted(set(tuned) - set(visited))
        if unused:
            raise ValueError(f"{self.name}: phi has parameters for mixing points the network never called: "
                             f"{unused[:8]}; was phi made for another network?")
        return out


@dataclasses.dataclass(frozen=True)
class CFSNet(FeatureTuner):
    """CFSNet's tuning branch and coupling module on the base network's blocks (the main branch).

    phi = {"control": {"dense_0", "dense_1", "dense_2"},            shared coupling MLP
           "points": {key: {"adaptive": {"dense_0", "dense_1"},     per-block coupling MLP
                            "tuning": {"conv_0", "conv_1"}}}}       tuning block T_m

    Coupling coefficients (official ``TuningBlockModule``): the control vector ``alpha_in * 1``
    of length ``control_widths[0]`` (512) goes through Linear 512 -> 256 -> 128 -> C, then per
    block Linear C -> C_m -> C_m, all without bias or activation, initialised with Kaiming-normal
    (fan in) x 0.1, giving ``a_m`` (C_m,). The tuning block is conv3x3 (C_in -> C_m) -> ReLU ->
    conv3x3 (C_m -> C_m), zero padding, no bias, same init. C is the first point's channel count.

    Control = alpha_in: 0 gives ``a_m = 0``, the main branch alone, exactly (step 1 trains it at
    alpha_in = 0); 1 is step 2's level. Because the MLP is linear and bias-free,
    ``a_m(alpha) = alpha * MLP_m(1)``; ``apply`` evaluates ``MLP_m(1)`` once and scales it per pixel by
    the control resized to the block, ``a_m(p) = alpha(p) * MLP_m(1)`` (N, h, w, C_m): the same
    function as running the MLP on every pixel's vector, without the per-pixel matrix products.
    At init the product of five 0.1-scaled matrices makes ``a_m`` about 1e-4: the tuned network
    starts almost at the main branch even at control 1.

    Not carried over: the SR tail's extra coupling (our backbones have none) and the SR quirk of
    halving alpha_in during training only.
    """

    name: str = "cfsnet"
    layers: tuple = ("block_*",)
    control_widths: tuple = (512, 256, 128)

    def init(self, key, theta0, model=None, x=None):
        """Fresh phi for ``model``'s mixing points (``x``: an example batch, array or shape struct)."""
        if model is None or x is None:
            raise ValueError(f"{self.name}.init needs the base network and an example input (model, x)")
        points = self.points(model, theta0, x)
        width = next(iter(points.values()))[1][-1]
        widths = (*self.control_widths, width)
        key_control, key_points = jax.random.split(key)
        phi = {"control": {f"dense_{i}": {"kernel": cfsnet_init(k, shape)} for i, (k, shape) in enumerate(
            zip(jax.random.split(key_control, len(widths) - 1), zip(widths[:-1], widths[1:])))}, "points": {}}
        for key_point, (name, (in_shape, out_shape)) in zip(jax.random.split(key_points, len(points)), points.items()):
            if in_shape is None or len(in_shape) != 4 or in_shape[1:3] != out_shape[1:3]:
                raise ValueError(f"{self.name}: mixing point {name!r} maps {in_shape} to {out_shape}; the "
                                 "tuning block needs an (N, H, W, C) input of the output's height and width")
            c_in, c = in_shape[-1], out_shape[-1]
            k = jax.random.split(key_point, 4)
            phi["points"][name] = {
                "adaptive": {"dense_0": {"kernel": cfsnet_init(k[0], (width, c))},
                             "dense_1": {"kernel": cfsnet_init(k[1], (c, c))}},
                "tuning": {"conv_0": {"kernel": cfsnet_init(k[2], (3, 3, c_in, c))},
                           "conv_1": {"kernel": cfsnet_init(k[3], (3, 3, c, c))}}}
        return phi

    def mixer(self, phi):
        v = jnp.ones((1, self.control_widths[0]), jnp.float32)
        for i in range(len(phi["control"])):
            v = v @ phi["control"][f"dense_{i}"]["kernel"]

        def mix(p, inputs, y, a):
            coeff = (v @ p["adaptive"]["dense_0"]["kernel"] @ p["adaptive"]["dense_1"]["kernel"])[0]  # (C,)
            t = p["tuning"]
            tuned = conv3x3(jax.nn.relu(conv3x3(inputs, t["conv_0"]["kernel"])), t["conv_1"]["kernel"])
            alpha = a * coeff  # (N, h, w, C): the coupling coefficients per pixel
            return (1 - alpha) * y + alpha * tuned

        return mix


def _pytorch_uniform(bound: float):
    """U(-bound, bound): PyTorch's default Conv2d init has bound 1/sqrt(fan_in) for weight and bias."""
    return lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)


@dataclasses.dataclass(frozen=True)
class DynamicNet(FeatureTuner):
    """Dynamic-Net's tuning blocks after the base network's chosen layers: ``y + alpha TB(y)``.

    phi = {"points": {key: {"conv_0", "conv_1", "conv_2": {"kernel", "bias"}}}}

    TB (official ``TuningBlock``): reflection pad 1 -> conv3x3 -> ReLU -> reflection pad 1 ->
    conv3x3 -> ReLU -> reflection pad 1 -> conv3x3, C -> C channels, with bias. Init: PyTorch's
    Conv2d default, U(+-1/sqrt(9 C)) for weights and biases (the style-transfer networks); with
    ``init_std`` set, N(0, init_std) weights and zero biases (the DCGAN version uses 0.02).

    Control 0 is exactly the base network (the official code takes a shortcut to the main network
    at alpha = 0; here ``y + 0 * TB(y)`` is ``y``). Negative alphas extrapolate with the same blocks
    (the "dual" network's second block set for alpha < 0 is not implemented).
    """

    name: str = "dynamic-net"
    layers: tuple = ("block_*",)
    init_std: float | None = None

    def init(self, key, theta0, model=None, x=None):
        """Fresh phi for ``model``'s mixing points (``x``: an example batch, array or shape struct)."""
        if model is None or x is None:
            raise ValueError(f"{self.name}.init needs the base network and an example input (model, x)")
        points = self.points(model, theta0, x)
        phi = {"points": {}}
        for key_point, (name, (_, out_shape)) in zip(jax.random.split(key, len(points)), points.items()):
            c = out_shape[-1]
            if self.init_std is None:
                weight = bias = _pytorch_uniform(1 / math.sqrt(9 * c))
            else:
                weight = lambda k, shape: self.init_std * jax.random.normal(k, shape, jnp.float32)
                bias = lambda k, shape: jnp.zeros(shape, jnp.float32)
            k = jax.random.split(key_point, 6)
            phi["points"][name] = {f"conv_{i}": {"kernel": weight(k[2 * i], (3, 3, c, c)),
                                                 "bias": bias(k[2 * i + 1], (c,))} for i in range(3)}
        return phi

    def mixer(self, phi):
        def block(p, h):
            h = jax.nn.relu(conv3x3(h, p["conv_0"]["kernel"], p["conv_0"]["bias"], "reflect"))
            h = jax.nn.relu(conv3x3(h, p["conv_1"]["kernel"], p["conv_1"]["bias"], "reflect"))
            return conv3x3(h, p["conv_2"]["kernel"], p["conv_2"]["bias"], "reflect")

        return lambda p, inputs, y, a: y + a * block(p, y)

