"""Image generation from noise as a task: a GAN's generator, with the control moving what it draws
(Dynamic-Net's DCGAN experiment: digit 3 at level A, digit 8 at level B).

The network input is noise z ~ N(0, I) of shape (N, 1, 1, latent), drawn inside the step from the
step's key; the batch's target is a batch of real images from the stage's sampler (3s in stage 1, 8s
in stage 2: the sampler, not the task, says which). There is no pixel loss (a generated image has no
paired target): the loss is the adversarial term of ``ctl_jax.train.gan`` alone, so the task's loss
is a zero-weight L1 placeholder. Levels are the control itself.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.tasks.base import Batch, LevelIsControl, check_target


@dataclasses.dataclass(frozen=True)
class Generation(LevelIsControl):
    latent: int = 64
    name: str = "generation"
    loss = (("l1", 0.0),)
    metrics = ()
    on_device = True

    @property
    def level_a_signature(self) -> tuple:
        return (self.latent,)

    def input_multiple(self, levels) -> int:
        return 1

    def step_levels(self, seed: int, step: int, n: int, target: str) -> np.ndarray:
        check_target(target)
        if target == "range":
            raise ValueError("generation trains in two stages (level A, then B); one-stage methods do not apply")
        return np.full((n, 1), 0.0 if target == "a" else 1.0, np.float32)

    def host_arrays(self, sampler, step: int, target: str, seed: int = 0) -> tuple:
        real = np.asarray(sampler.batch(step), np.float32)
        return real, self.step_levels(seed, step, real.shape[0], target)

    def device_batch(self, key, arrays, target: str) -> Batch:
        real, levels = arrays
        z = jax.random.normal(key, (real.shape[0], 1, 1, self.latent), jnp.float32)
        return Batch(z, real, jnp.asarray(levels, jnp.float32))

    def input_shape(self, patch_size: int, channels: int, target: str = "a") -> tuple:
        return (1, 1, 1, self.latent)

    def to_dict(self) -> dict:
        return {"kind": "generation", "latent": self.latent}
