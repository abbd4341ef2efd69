"""Decoupled learning's weight-learning network as a parameter transform (DESIGN.md principle 4).

``theta(gamma) = H(psi, gamma)`` (Fan et al., TPAMI 2019, Eq. 4): for every predicted leaf of the
base network's parameter tree, one fully connected map from the control vector gamma (D,) to the
leaf's values, ``leaf = reshape(W gamma + b)``; the other leaves are ordinary shared parameters.
With the default single fc layer every predicted weight is affine in gamma. ``hidden`` adds a
second fc layer (the paper's "fc2"), ``relu=True`` a ReLU between the two ("fc2R").

Which leaves are predicted is a tuple of ``fnmatch`` patterns over leaf paths such as
``conv19/kernel`` or ``norm19/*`` (see ``PRESETS``). ``part`` predicts only a slice of each kernel:
``"in0"`` the weights that read input channel 0 (the paper's "conv channel1"), ``"out0"`` those
that write output channel 0 ("conv channel2"); the rest of the kernel stays shared.

``psi = {"shared": base tree minus the fully predicted leaves, "fc": {"conv19.kernel": fc params}}``. At init
each fc's bias is the base network's initial leaf and its last kernel is zero, so theta(gamma)
starts as an ordinary freshly initialised base network for every gamma.
"""

from __future__ import annotations

import dataclasses
import fnmatch

import jax
import jax.numpy as jnp

from ctl_jax.tuners.base import Tuner, base_tree_as_phi
from ctl_jax.tuners.trees import Params, flatten, param_template, path_str, unflatten

PARTS = ("all", "in0", "out0")

# name -> (patterns, part): the paper's default, Table XII's rows, and its cheap-tuning default.
PRESETS = {
    "all-convs": (("conv*/kernel",), "all"),
    "all-norms": (("norm*/*",), "all"),
    "norm1": (("norm1/*",), "all"),
    "norm7": (("norm7/*",), "all"),
    "norm14": (("norm14/*",), "all"),
    "norm19": (("norm19/*",), "all"),
    "conv19": (("conv19/kernel",), "all"),
    "conv19-in0": (("conv19/kernel",), "in0"),
    "conv19-out0": (("conv19/kernel",), "out0"),
}


def _part_index(part: str, ndim: int):
    if part == "all" or ndim < 2:
        return ...
    axis = ndim - 2 if part == "in0" else ndim - 1  # kernels are (..., C_in, C_out)
    return (slice(None),) * axis + (slice(0, 1),)


@dataclasses.dataclass(frozen=True)
class Hypernet:
    """The weight-learning network H; see the module docstring.

    predict: fnmatch patterns of the predicted leaf paths; part: "all", "in0" or "out0";
    gamma_dim: D, the length of gamma; hidden: width of the optional first fc layer; relu: ReLU
    after it.
    """

    predict: tuple[str, ...] = ("conv*/kernel",)
    part: str = "all"
    gamma_dim: int = 1
    hidden: int | None = None
    relu: bool = False

    def __post_init__(self):
        if self.part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}; got {self.part!r}")
        if self.gamma_dim < 1:
            raise ValueError(f"gamma_dim must be >= 1; got {self.gamma_dim}")
        if self.relu and not self.hidden:
            raise ValueError("relu=True needs a hidden fc layer (hidden=...)")

    @classmethod
    def preset(cls, name: str, **kwargs) -> "Hypernet":
        if name not in PRESETS:
            raise ValueError(f"unknown hypernetwork preset {name!r}; choose one of {sorted(PRESETS)}")
        patterns, part = PRESETS[name]
        return cls(patterns, part, **kwargs)

    def predicted_paths(self, base: Params) -> list[tuple]:
        """Paths of the leaves of ``base`` (a tree or its eval_shape template) that H predicts."""
        paths = [p for p in flatten(base) if any(fnmatch.fnmatchcase(path_str(p), pat) for pat in self.predict)]
        if not paths:
            raise ValueError(f"no parameter matches {self.predict}; parameters look like "
                             f"{[path_str(p) for p in list(flatten(base))[:4]]}")
        return paths

    def predicted_layers(self, base: Params) -> list[str]:
        """The layer names (first path element) whose parameters depend on gamma."""
        return sorted({p[0] for p in self.predicted_paths(base)})

    def init(self, key, base: Params) -> Params:
        """psi from an initialised base tree (its values become the fc biases)."""
        flat = flatten(base)
        predicted = self.predicted_paths(base)
        fc = {}
        for i, path in enumerate(predicted):
            target = jnp.asarray(flat[path])[_part_index(self.part, flat[path].ndim)].reshape(-1)
            if self.hidden:
                k1 = jax.random.fold_in(key, i)
                fc[path] = {"fc1": {"kernel": jax.nn.initializers.lecun_normal()(k1, (self.gamma_dim, self.hidden)),
                                    "bias": jnp.zeros((self.hidden,))},
                            "fc2": {"kernel": jnp.zeros((self.hidden, target.size)), "bias": target}}
            else:
                fc[path] = {"kernel": jnp.zeros((self.gamma_dim, target.size)), "bias": target}
        whole = self.part == "all"
        shared = {p: v for p, v in flat.items() if not (whole and p in fc)}
        return {"shared": unflatten(shared), "fc": {".".join(p): v for p, v in fc.items()}}

    def params(self, psi: Params, gamma, template: Params) -> Params:
        """theta(gamma): a tree shaped like ``template`` (the base's params or eval_shape of its init).

        gamma: (D,) float. Per-sample gammas: ``jax.vmap`` over gamma, or see ``apply_hyper``.
        """
        gamma = jnp.asarray(gamma, jnp.float32)
        if gamma.shape != (self.gamma_dim,):
            raise ValueError(f"gamma must have shape ({self.gamma_dim},); got {gamma.shape}")
        flat = dict(flatten(psi["shared"]))
        shapes = flatten(template)
        for name, fc in psi["fc"].items():
            path = tuple(name.split("."))
            shape = shapes[path].shape
            if self.hidden:
                h = gamma @ fc["fc1"]["kernel"] + fc["fc1"]["bias"]
                values = (jax.nn.relu(h) if self.relu else h) @ fc["fc2"]["kernel"] + fc["fc2"]["bias"]
            else:
                values = gamma @ fc["kernel"] + fc["bias"]
            if self.part == "all":
                flat[path] = values.reshape(shape)
            else:
                index = _part_index(self.part, len(shape))
                flat[path] = flat[path].at[index].set(values.reshape(flat[path][index].shape))
        return unflatten(flat)


def template_of(model, example) -> Params:
    """The base network's parameter shapes for inputs like ``example``."""
    return param_template(model, example)


def apply_hyper(model, hyper: Hypernet, psi: Params, x, gamma, per_sample: str = "map"):
    """Run the base network with theta(gamma) on images x (N, H, W, C).

    gamma (D,): one parameter tree for the batch. gamma (N, D): each sample its own weights;
    ``per_sample="map"`` runs the samples one after another (``lax.map``), ``"vmap"`` batches the
    weight prediction and the convolutions (XLA lowers convolutions with per-sample kernels to
    grouped convolutions, slow on CPU; see benchmarks/hyper_gamma.py for the measured cost).
    """
    template = template_of(model, x[:1])
    gamma = jnp.asarray(gamma, jnp.float32)
    if gamma.ndim == 1:
        return model.apply({"params": hyper.params(psi, gamma, template)}, x)
    if gamma.shape != (x.shape[0], hyper.gamma_dim):
        raise ValueError(f"per-sample gamma must have shape (N, D) = ({x.shape[0]}, {hyper.gamma_dim}); "
                         f"got {gamma.shape}")

    def one(args):
        g, xi = args
        return model.apply({"params": hyper.params(psi, g, template)}, xi[None])[0]

    if per_sample == "map":
        return jax.lax.map(one, (gamma, x))
    if per_sample == "vmap":
        return jax.vmap(lambda g, xi: one((g, xi)))(gamma, x)
    raise ValueError(f"per_sample must be 'map' or 'vmap'; got {per_sample!r}")


def first_predicted_layer(model, hyper: Hypernet, template: Params) -> str:
    """The earliest layer (in forward order) whose parameters depend on gamma: where the head starts."""
    predicted = set(hyper.predicted_layers(template))
    for op in model.ops:
        if len(op) > 1 and op[1] in predicted:
            return op[1]
    raise ValueError(f"{type(model).__name__} runs none of the predicted layers {sorted(predicted)}")


def hyper_trunk(model, hyper: Hypernet, psi: Params, x):
    """The features of x before the first predicted layer: computed once, shared by every gamma."""
    template = template_of(model, x[:1])
    start = first_predicted_layer(model, hyper, template)
    theta = hyper.params(psi, jnp.zeros((hyper.gamma_dim,)), template)  # trunk layers ignore gamma
    return model.apply({"params": theta}, x, stop=start)


def hyper_head(model, hyper: Hypernet, psi: Params, trunk_state, gamma):
    """The output for one gamma (D,) from ``hyper_trunk``'s state ``(image, features, skip)``: only
    the layers from the first predicted one onwards run."""
    template = template_of(model, trunk_state[0][:1])
    start = first_predicted_layer(model, hyper, template)
    return model.apply({"params": hyper.params(psi, gamma, template)}, trunk_state, start=start)


@dataclasses.dataclass(frozen=True)
class HyperTuner(Tuner):
    """The hypernetwork as a one-stage tuner: phi = psi, control = gamma (D,) per batch or per sample.

    Fields are those of :class:`Hypernet`; ``per_sample`` is how a per-sample control reaches the
    weights ("map": one sample after another, "vmap": batched grouped convs; see ``apply_hyper``).
    Per-pixel control is not offered: the predicted weights are one per image.
    """

    predict: tuple = ("conv*/kernel",)
    part: str = "all"
    gamma_dim: int = 1
    hidden: int | None = None
    relu: bool = False
    per_sample: str = "map"
    name: str = "hyper"
    kind = "hypernetwork"
    stages = 1
    pixel = False

    @property
    def control_dim(self) -> int:
        return self.gamma_dim

    @property
    def hyper(self) -> Hypernet:
        return Hypernet(tuple(self.predict), self.part, self.gamma_dim, self.hidden, self.relu)

    def init(self, key, theta0, model=None, x=None):
        del theta0
        base_key, fc_key = jax.random.split(key)
        return self.hyper.init(fc_key, model.init(base_key, x)["params"])

    def apply(self, model, theta0, phi, x, control):
        control = self.check_control(control, x.shape[0])
        if not isinstance(phi, dict) or set(phi) != {"shared", "fc"}:  # psi, as Hypernet.init makes it
            found = ", ".join(sorted(map(str, phi))[:3]) if isinstance(phi, dict) else type(phi).__name__
            raise base_tree_as_phi(self.name, f"{found} where psi has 'shared' and 'fc'")
        gamma = control.global_value() if control.is_global else control.per_sample_values(x.shape[0])
        return apply_hyper(model, self.hyper, phi, x, gamma, self.per_sample)
