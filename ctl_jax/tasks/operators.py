"""Operator imitation (decoupled learning, Fan et al. TPAMI 2019): learn a parameterised operator.

Samples are cached (input, target) pairs (``ctl_jax.data.operator_pairs``): for a filter the input is
the clean image and the target the filtered one; for a restoration operator the input is the
degraded image and the target the clean one. The control is gamma (``ctl_jax.tuners.gamma``): the
operator parameter's position in its range (log or linear), then the operator id when several
operators share one network. Every batch trains over the whole parameter range ("range").
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import jax.numpy as jnp
import numpy as np

from ctl_jax.losses import check_terms, weighted_loss
from ctl_jax.tasks.base import Batch
from ctl_jax.tuners.gamma import GammaSpace


@dataclasses.dataclass(frozen=True)
class OperatorImitation:
    """operators: names (``ctl_jax.operators.OPERATORS``) in gamma order; loss: as ``Restoration``."""

    operators: tuple = ("l0",)
    loss: tuple = (("l1", 1.0),)
    name: str = "operators"
    metrics = ("psnr", "ssim")

    def __post_init__(self):
        ops = (self.operators,) if isinstance(self.operators, str) else tuple(self.operators)
        object.__setattr__(self, "operators", ops)
        object.__setattr__(self, "loss", check_terms(self.loss))
        GammaSpace(ops)  # validates the names

    @property
    def gamma_space(self) -> GammaSpace:
        return GammaSpace(self.operators)

    @property
    def dim(self) -> int:
        return self.gamma_space.dim

    def control_for(self, levels, operator: str | None = None, clamp: bool = False) -> np.ndarray:
        """gamma (D,) of an operator parameter value (``levels``: one value)."""
        if operator is None:
            if len(self.operators) > 1:
                raise ValueError(f"this model imitates {list(self.operators)}; say which operator")
            operator = self.operators[0]
        return self.gamma_space.encode(operator, float(np.ravel(levels)[0]), clamp)

    def label(self, levels) -> str:
        spec = self.gamma_space.spec(self.operators[0])
        return f"{spec.parameter}={float(np.ravel(levels)[0]):g}"

    def host_arrays(self, sampler, step: int, target: str, seed: int = 0) -> tuple:
        """(inputs, targets, gammas) of ``OperatorPairSampler.batch(step)``."""
        del target, seed
        return tuple(np.asarray(a, np.float32) for a in sampler.batch(step))

    def device_batch(self, key, arrays, target: str) -> Batch:
        del key, target
        inputs, targets, gammas = arrays
        return Batch(inputs, targets, gammas)

    def loss_value(self, pred, target):
        return weighted_loss(self.loss, pred, target)

    def input_shape(self, patch_size: int, channels: int, target: str = "range") -> tuple:
        return (1, patch_size, patch_size, channels)

    def to_dict(self) -> dict:
        return {"kind": "operators", "operators": list(self.operators), "loss": [list(t) for t in self.loss]}


def evaluate_operator_model(model, test_cache, operator: str, values=None) -> dict:
    """Mean PSNR / SSIM (RGB) of a trained operator model's 8-bit output against the operator's own.

    The test pairs come from ``test_cache`` (``prepare_operator_cache`` with fixed values); returns
    ``{value: {"psnr": dB, "ssim": float, "images": n}}`` for each value present (or in ``values``).
    Scores as ``ctl_jax.eval.sweep.scores`` does (8-bit outputs), like every evaluation here.
    """
    import jax

    from ctl_jax import Control
    from ctl_jax.data.operator_pairs import load_operator_cache
    from ctl_jax.eval.sweep import crop_to_multiple, scores

    pairs = load_operator_cache(test_cache, [operator])
    by_value = defaultdict(list)
    for p in pairs:
        by_value[round(p.value, 6)].append(p)
    if values is not None:
        by_value = {round(float(v), 6): by_value[round(float(v), 6)] for v in values}
    run = jax.jit(lambda x, g: model(x, Control(g)))
    results = {}
    for value, group in sorted(by_value.items()):
        if not group:
            raise ValueError(f"{test_cache} has no {operator} pairs at {value}")
        gamma = jnp.asarray(model.task.control_for([value], operator)).reshape(1, 1, 1, -1)
        values_ = []
        for p in group:  # the networks' stride-2 body needs even sizes
            x = crop_to_multiple(p.input.astype(np.float32) / 255, 2)
            target = crop_to_multiple(p.target.astype(np.float32) / 255, 2)
            values_.append(np.asarray(scores(run(jnp.asarray(x)[None], gamma), jnp.asarray(target)[None]))[:2, 0])
        mean = np.mean(values_, axis=0)
        results[value] = {"psnr": float(mean[0]), "ssim": float(mean[1]), "images": len(group)}
    return results
