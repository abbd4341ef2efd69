"""The one protocol every way of controlling a network follows (DESIGN.md principle 5).

A tuner turns a base network ``model`` (a Flax Linen module) and two parameter trees into a
controllable network ``(x, control) -> y``:

- ``theta0``: the base network's parameters. Two-stage tuners (``stages == 2``: parameter space,
  feature space) get it from stage 1, trained at level A, and never change it; one-stage tuners
  (hypernetwork, conditional) have none (``{}``).
- ``phi``: the tuner's own trainable tree (stage 2, or the only stage).

Control convention, for every tuner: control 0 is level A (the base network, where the method
promises it), control 1 is level B (or the top of a trained level range, for one-stage tuners);
values in between interpolate and values outside extrapolate. ``control_dim`` is D, the number of
levels controlled at once. ``pixel`` says whether the method takes a per-pixel map.

The hooks, all pure functions of trees:

- ``tuned_spec(spec)``: the network stage 2 runs (AdaFM adds zero slots; the default is ``spec``);
- ``prepare_base(theta0, template)``: theta0 for that network (AdaFM inserts the zero slots);
- ``init(key, theta0, model, x)``: a fresh phi (``x`` an example input batch);
- ``apply(model, theta0, phi, x, control)``: the output at ``control`` (a ``ctl_jax.Control``).

:class:`ParameterTuner` implements ``apply`` once for the endpoint methods (DNI, AdaFM, FTN), which
only define ``init`` and ``endpoint``.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from ctl_jax.control import Control, as_control
from ctl_jax.tuners.alpha import lerp
from ctl_jax.tuners.mixing import apply_with_alpha_map
from ctl_jax.tuners.trees import Params, check_params_match, check_same_structure


class Tuner:
    """Defaults of the protocol (see the module docstring); subclasses are frozen dataclasses."""

    name: str = "tuner"
    kind: str = "parameter"      # "parameter", "hypernetwork", "feature" or "conditional"
    stages: int = 2
    control_dim: int = 1
    pixel: bool = True

    def tuned_spec(self, spec):
        return spec

    def prepare_base(self, theta0: Params, template: Params) -> Params:
        del template
        return theta0

    def init(self, key: jax.Array, theta0: Params, model: nn.Module | None = None, x=None) -> Params:
        raise NotImplementedError

    def apply(self, model: nn.Module, theta0: Params, phi: Params, x: jax.Array, control) -> jax.Array:
        raise NotImplementedError

    def check_control(self, control, batch: int) -> Control:
        """The control as a ``Control`` suited to this tuner and batch (ValueError naming the method)."""
        return as_control(control).check(batch, self.control_dim, f"{self.name} ({self.kind})", self.pixel)


def base_tree_as_phi(method: str, found: str) -> ValueError:
    """The error for a base parameter tree (theta0) passed where a tuner's phi belongs."""
    return ValueError(f"{method}: phi looks like a base parameter tree (theta0; it has {found}); pass the "
                      "tuner's own parameters as phi (what its init returns, or a tuned run's phi)")


class ParameterTuner(Tuner):
    """Endpoint methods: ``theta1 = endpoint(phi, theta0)``, the network at alpha runs with
    ``lerp(theta0, theta1, alpha)`` (DESIGN.md principle 2), exactly per pixel (principle 3)."""

    def endpoint(self, phi: Params, theta0: Params) -> Params:
        raise NotImplementedError

    def apply(self, model, theta0, phi, x, control):
        return apply_at_alpha(model, theta0, self.endpoint(phi, theta0), x,
                              self.check_control(control, x.shape[0]))


def apply_at_alpha(model: nn.Module, theta0: Params, theta1: Params, x: jax.Array, control) -> jax.Array:
    """Output of ``model`` at a control between parameter trees theta0 (0) and theta1 (1).

    x: (N, H, W, C). control: a 1-D ``Control`` (or a scalar): global -> one interpolated tree and a
    plain forward; per-sample -> ``jax.vmap`` over samples; per-pixel -> every parameterised layer
    mixed exactly per pixel (``ctl_jax.tuners.mixing``).
    """
    control = as_control(control).check(x.shape[0], 1)
    check_params_match(model, theta0, x)
    check_same_structure(theta0, theta1)
    if control.is_pixel:
        return apply_with_alpha_map(model, theta0, theta1, x, control)
    if control.is_global:
        return model.apply({"params": lerp(theta0, theta1, control.global_value()[0])}, x)
    alphas = control.per_sample_values(x.shape[0])[:, 0]
    one = lambda a, xi: model.apply({"params": lerp(theta0, theta1, a)}, xi[None])[0]
    return jax.vmap(one)(alphas, x)


def interpolate(tuner: ParameterTuner, theta0: Params, phi: Params, alpha) -> Params:
    """The parameters at one global alpha: ``lerp(theta0, tuner.endpoint(phi, theta0), alpha)``.

    Compute this once per alpha (for FTN it runs every transition network), then call
    ``model.apply({"params": ...}, x)``: inference then costs a plain forward pass.
    """
    alpha = as_control(alpha).global_value()[0]
    return lerp(theta0, tuner.endpoint(phi, theta0), alpha)
