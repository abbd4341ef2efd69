"""Continuous-level methods as pure functions of Flax parameter trees (DESIGN.md 1.2-1.3)."""

from ctl_jax.tuning.adafm import AdaFM, adafm_subtree, insert_adafm_slots
from ctl_jax.tuning.alpha import as_alpha, lerp
from ctl_jax.tuning.apply import apply_at_alpha, apply_tuned, interpolate
from ctl_jax.tuning.dni import DNI
from ctl_jax.tuning.ftn import FTN, ftn_layer_apply, ftn_layer_init
from ctl_jax.tuning.hyper import Hypernet, apply_hyper, hyper_head, hyper_trunk
from ctl_jax.tuning.pixel import apply_with_alpha_map

TUNERS = {
    "dni": DNI(),
    "adafm": AdaFM(),
    "ftn": FTN(),
    "ftn-gc4": FTN(groups=4, on_indivisible="gcd", name="ftn-gc4"),
    "ftn-gc16": FTN(groups=16, on_indivisible="gcd", name="ftn-gc16"),
    "ftn-deeper": FTN(depth=3, name="ftn-deeper"),
    "ftn-spatial": FTN(spatial=True, name="ftn-spatial"),
}


def make_tuner(name: str):
    """A tuner by name: one of ``TUNERS`` (dni, adafm, ftn, ftn-gc4, ftn-gc16, ftn-deeper, ftn-spatial)."""
    try:
        return TUNERS[name]
    except KeyError:
        raise ValueError(f"unknown tuning method {name!r}; choose one of {sorted(TUNERS)}") from None
