"""Deep network interpolation (DNI, Wang et al. 2019).

The tuner's parameters ``phi`` are a full copy of the level-A network ``theta0``, fine-tuned at
level B; the endpoint is that copy. The network at alpha is ``lerp(theta0, phi, alpha)`` over
every parameter (convs, biases, norm parameters). ``phi`` must start as a copy of ``theta0``:
networks trained independently lose filter correspondence and interpolate to dark,
colour-shifted images (xinntao/DNI#4, BasicSR#149).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ctl_jax.tuners.base import ParameterTuner
from ctl_jax.tuners.trees import Params, check_same_structure


@dataclasses.dataclass(frozen=True)
class DNI(ParameterTuner):
    """DNI tuner: ``init`` copies theta0, ``endpoint`` returns the fine-tuned copy."""

    name: str = "dni"

    def init(self, key: jax.Array, theta0: Params, model=None, x=None) -> Params:
        """phi = a copy of theta0 (fresh buffers, so donating one never invalidates the other)."""
        del key, model, x
        return jax.tree.map(jnp.array, theta0)

    def endpoint(self, phi: Params, theta0: Params) -> Params:
        """theta1 = phi; checks that phi has theta0's structure."""
        check_same_structure(theta0, phi, "theta0", "DNI phi")
        return phi
