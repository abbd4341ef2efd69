"""AdaFM: adaptive feature modification (He, Dong and Qiao 2019) as a parameter transform.

The base network carries AdaFM slots (``ctl_jax.nets.layers.AdaFM``: ``x + dw(x)``, a depthwise
k x k conv, zero-initialised), so theta0 is exactly the basic network. The tuner's parameters
``phi`` are the slots' parameters; ``endpoint`` puts them into theta0. Interpolating
``lerp(theta0, theta1, alpha)`` scales the slot parameters by alpha (theta0's slots are zero),
which is the paper's ``g_alpha = I + alpha (g - I)``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ctl_jax.nets.layers import ADAFM_PREFIX
from ctl_jax.tuners.base import ParameterTuner, base_tree_as_phi
from ctl_jax.tuners.trees import Params, flatten, path_str, unflatten


def is_adafm_path(path: tuple) -> bool:
    """True for parameters inside an AdaFM slot (a module whose name starts with ``adafm``)."""
    return any(str(p).startswith(ADAFM_PREFIX) for p in path)


def adafm_subtree(theta: Params) -> Params:
    """The AdaFM slot parameters of theta, keeping their nesting."""
    return unflatten({p: v for p, v in flatten(theta).items() if is_adafm_path(p)})


def insert_adafm_slots(base_params: Params, slotted_template: Params) -> Params:
    """Add zero AdaFM slots to the parameters of a slot-free network.

    ``slotted_template`` is the parameter tree (or ``jax.eval_shape`` template) of the same
    network built with ``adafm_kernel=k``; every non-AdaFM leaf of it must be in ``base_params``
    with the same shape. Use this to tune imported or stage-1 weights with AdaFM.
    """
    base = flatten(base_params)
    out = {}
    for p, leaf in flatten(slotted_template).items():
        if is_adafm_path(p):
            out[p] = jnp.zeros(leaf.shape, leaf.dtype)
        elif p not in base:
            raise ValueError(f"base params lack {path_str(p)}, which the slotted network has")
        elif jnp.shape(base[p]) != leaf.shape:
            raise ValueError(f"{path_str(p)}: base params have shape {jnp.shape(base[p])}, "
                             f"the slotted network expects {leaf.shape}")
        else:
            out[p] = jnp.array(base[p])  # a copy: donating the result must not free the caller's tree
    extra = sorted(path_str(p) for p in base.keys() - out.keys())
    if extra:
        raise ValueError(f"base params have leaves the slotted network lacks: {extra[:5]}")
    return unflatten(out)


# AdaFM slot size used when stage 2 adds slots to a slot-free base: 5x5 matches the FTN paper's
# AdaFM-Net parameter count for denoising (reference/cll_anchors.md 1.1).
DEFAULT_ADAFM_KERNEL = 5


@dataclasses.dataclass(frozen=True)
class AdaFM(ParameterTuner):
    """AdaFM tuner: phi = the zero-initialised slot parameters; endpoint = theta0 with phi inserted.

    kernel: the slot size stage 2 adds to a slot-free base network (1, 3, 5 or 7).
    """

    name: str = "adafm"
    kernel: int = DEFAULT_ADAFM_KERNEL

    def tuned_spec(self, spec):
        """The base's network with AdaFM slots (a spec that already has slots is kept)."""
        if spec.adafm_kernel is not None:
            return spec
        return dataclasses.replace(spec, adafm_kernel=self.kernel)

    def prepare_base(self, theta0: Params, template: Params) -> Params:
        """theta0 with zero slots where the slotted network ``template`` has them."""
        if adafm_subtree(theta0):
            return theta0
        return insert_adafm_slots(theta0, template)

    def init(self, key: jax.Array, theta0: Params, model=None, x=None) -> Params:
        del key, model, x
        slots = adafm_subtree(theta0)
        if not slots:
            raise ValueError("the network has no AdaFM slots: build it with adafm_kernel=1, 3, 5 or 7 "
                             "(and use insert_adafm_slots to add zero slots to existing parameters)")
        return jax.tree.map(jnp.zeros_like, slots)

    def endpoint(self, phi: Params, theta0: Params) -> Params:
        outside = next((p for p in flatten(phi) if not is_adafm_path(p)), None)
        if outside is not None:  # phi holds the AdaFM slots only
            raise base_tree_as_phi(self.name, f"{path_str(outside)}, outside the AdaFM slots")
        flat = flatten(theta0)
        for p, v in flatten(phi).items():
            if p not in flat:
                raise ValueError(f"AdaFM phi has {path_str(p)}, which theta0 lacks")
            if jnp.shape(v) != jnp.shape(flat[p]):
                raise ValueError(f"AdaFM phi {path_str(p)} has shape {jnp.shape(v)}, theta0 {jnp.shape(flat[p])}")
            flat[p] = v
        return unflatten(flat)
