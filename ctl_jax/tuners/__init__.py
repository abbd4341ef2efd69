"""Every way of controlling a network, behind one protocol (``ctl_jax.tuners.base.Tuner``).

Parameter space (DESIGN.md 1.2-1.3): DNI, AdaFM, FTN and its variants. Hypernetwork (1.4): theta(gamma).
Feature space: CFSNet, Dynamic-Net. Conditional: the level as an input map (FFDNet, baseline [18]).
"""

import dataclasses

from ctl_jax.tuners.adafm import DEFAULT_ADAFM_KERNEL, AdaFM, adafm_subtree, insert_adafm_slots
from ctl_jax.tuners.alpha import lerp
from ctl_jax.tuners.base import ParameterTuner, Tuner, apply_at_alpha, interpolate
from ctl_jax.tuners.condition import Conditional
from ctl_jax.tuners.dni import DNI
from ctl_jax.tuners.feature import CFSNet, DynamicNet, FeatureTuner
from ctl_jax.tuners.ftn import FTN, ftn_layer_apply, ftn_layer_init
from ctl_jax.tuners.hyper import Hypernet, HyperTuner, apply_hyper, hyper_head, hyper_trunk
from ctl_jax.tuners.mixing import apply_with_alpha_map

TUNERS = {
    "dni": DNI(),
    "adafm": AdaFM(),
    "ftn": FTN(),
    "ftn-gc4": FTN(groups=4, on_indivisible="gcd", name="ftn-gc4"),
    "ftn-gc16": FTN(groups=16, on_indivisible="gcd", name="ftn-gc16"),
    "ftn-deeper": FTN(depth=3, name="ftn-deeper"),
    "ftn-spatial": FTN(spatial=True, name="ftn-spatial"),
    "cfsnet": CFSNet(),
    "dynamic-net": DynamicNet(),
    "conditional": Conditional(),
}


def register_tuner(tuner: Tuner) -> Tuner:
    """Add a tuner to ``TUNERS`` under ``tuner.name`` (so configs and run folders can name it)."""
    TUNERS[tuner.name] = tuner
    return tuner


# Tuners with settings beyond a name are stored in run folders as {"class": ..., **fields}.
TUNER_CLASSES = {cls.__name__: cls for cls in (HyperTuner, Conditional, CFSNet, DynamicNet)}


def tuner_to_spec(tuner: Tuner):
    """What a run folder records of a tuner: its name when ``TUNERS`` has exactly it, else its fields."""
    if TUNERS.get(tuner.name) == tuner:
        return tuner.name
    return {"class": type(tuner).__name__, **dataclasses.asdict(tuner)}


def make_tuner(spec) -> Tuner:
    """A tuner from a name in ``TUNERS`` or from the dict :func:`tuner_to_spec` made."""
    if isinstance(spec, Tuner):
        return spec
    if isinstance(spec, dict):
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "class"}
        if spec.get("class") not in TUNER_CLASSES:
            raise ValueError(f"unknown tuner class {spec.get('class')!r}; known: {sorted(TUNER_CLASSES)}")
        return TUNER_CLASSES[spec["class"]](**fields)
    try:
        return TUNERS[spec]
    except (KeyError, TypeError):
        raise ValueError(f"unknown tuning method {spec!r}; choose one of {sorted(TUNERS)}") from None


def apply_tuned(model, tuner: Tuner, theta0, phi, x, control):
    """The output of ``model`` controlled by ``tuner`` at ``control`` (a ``ctl_jax.Control`` or a scalar)."""
    return tuner.apply(model, theta0, phi, x, control)
