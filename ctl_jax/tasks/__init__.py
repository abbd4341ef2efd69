"""Tasks (DESIGN.md principle 10): what is learned. ``make_task`` builds one from its dict form."""

from ctl_jax.tasks.base import TARGETS, Batch
from ctl_jax.tasks.restoration import Restoration


def make_task(d: dict):
    """{"kind": "restoration", "degradations", "level_a", "level_b", "loss"}, {"kind": "operators", ...}
    or {"kind": "style", ...} (``ctl_jax.tasks.style``), {"kind": "perceptual_sr", ...}."""
    d = dict(d)
    kind = d.pop("kind", "restoration")
    if kind == "restoration":
        return Restoration(**d)
    if kind == "operators":
        from ctl_jax.tasks.operators import OperatorImitation

        return OperatorImitation(**d)
    if kind == "perceptual_sr":
        from ctl_jax.tasks.perceptual_sr import PerceptualSR

        return PerceptualSR(**{k: tuple(map(tuple, v)) if k.startswith("loss") else v for k, v in d.items()})
    if kind == "generation":
        from ctl_jax.tasks.generation import Generation

        return Generation(**d)
    if kind == "style":
        from ctl_jax.tasks.style import StyleTransfer

        return StyleTransfer(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    raise ValueError(f"unknown task kind {kind!r}; choose 'restoration', 'operators', 'style', 'perceptual_sr' or 'generation'")
