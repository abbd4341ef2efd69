"""Perception-distortion controllable super-resolution as a task (FTN paper Sec. 4.3; ESRGAN's DNI).

The input is the high-resolution crop down-sampled by ``scale`` (``downsample``: MATLAB bicubic
``bicubic_lr``, plain ``decimate_lr``, or ``gaussian_blur_lr``: a random anisotropic Gaussian blur per
image, then decimation, for blind SR); the target is the crop. What the control changes is the
objective, not the degradation:

- level A (control 0), stage 1: ``loss_a`` (L1: the PSNR-oriented, faithful network);
- level B (control 1), stage 2: ``loss_b`` (ESRGAN: 1e-2 L1 + 1 perceptual) plus the adversarial
  term of the stage's ``ctl_jax.train.gan.Adversarial`` (a config's ``adversarial`` entry);

so alpha moves the output from faithful (high PSNR) to realistic (low NIQE). The stage-2 loss is
set by the pipeline (``TrainConfig.loss = loss_b``); the task's own ``loss`` is level A's. Levels are
the control itself. Metrics: PSNR and SSIM on the Y channel with ``scale`` pixels cropped from each
side (as SR papers report them), and NIQE.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ctl_jax.degradations import get_kind
from ctl_jax.losses import check_terms
from ctl_jax.tasks.base import Batch, LevelIsControl, check_target

DOWNSAMPLERS = ("bicubic_lr", "decimate_lr", "gaussian_blur_lr")


@dataclasses.dataclass(frozen=True)
class PerceptualSR(LevelIsControl):
    scale: int = 4
    downsample: str = "bicubic_lr"
    loss_a: tuple = (("l1", 1.0),)
    loss_b: tuple = (("l1", 1e-2), ("perceptual", 1.0))
    name: str = "perceptual_sr"
    metrics = ("psnr_y", "ssim_y", "niqe")
    on_device = True
    ENDPOINT_NAMES = ("faithful (L1)", "realistic (GAN)")

    def __post_init__(self):
        if self.downsample not in DOWNSAMPLERS:
            raise ValueError(f"downsample must be one of {DOWNSAMPLERS}; got {self.downsample!r}")
        object.__setattr__(self, "scale", int(get_kind(self.downsample).check(self.scale)))
        if self.scale < 2:
            raise ValueError(f"super-resolution needs a scale of at least 2; got {self.scale}")
        object.__setattr__(self, "loss_a", check_terms(self.loss_a))
        object.__setattr__(self, "loss_b", check_terms(self.loss_b))

    @property
    def loss(self) -> tuple:
        return self.loss_a

    @property
    def level_a_signature(self) -> tuple:
        """What a base trained at control 0 depends on (a tuned run checks its base against it)."""
        return (self.scale, self.downsample, self.loss_a)

    def degrade(self, clean, key=None):
        """(N, H, W, C) -> (N, H/s, W/s, C); H and W divisible by the scale. ``key`` draws the blur
        kernels of ``gaussian_blur_lr`` (the other down-samplers are deterministic)."""
        return get_kind(self.downsample).apply(key, clean, np.full((clean.shape[0],), self.scale, np.float32))

    # -- levels and control (the level is the control) -----------------------------------------

    def input_multiple(self, levels) -> int:
        return self.scale

    # -- training batches ----------------------------------------------------------------------

    def step_levels(self, seed: int, step: int, n: int, target: str) -> np.ndarray:
        check_target(target)
        if target == "range":
            raise ValueError("perceptual SR trains in two stages (L1, then GAN); one-stage methods do not apply")
        return np.full((n, 1), 0.0 if target == "a" else 1.0, np.float32)

    def host_arrays(self, sampler, step: int, target: str, seed: int = 0) -> tuple:
        clean = np.asarray(sampler.batch(step), np.float32)
        if clean.shape[1] % self.scale or clean.shape[2] % self.scale:
            raise ValueError(f"x{self.scale} SR needs crops divisible by {self.scale}; got {clean.shape[1]}x{clean.shape[2]}")
        return clean, self.step_levels(seed, step, clean.shape[0], target)

    def device_batch(self, key, arrays, target: str) -> Batch:
        clean, levels = arrays
        return Batch(self.degrade(clean, key), clean, jnp.asarray(levels, jnp.float32))

    def input_shape(self, patch_size: int, channels: int, target: str = "a") -> tuple:
        return (1, patch_size // self.scale, patch_size // self.scale, channels)

    def eval_input(self, clean, levels, *, seed: int = 0, index: int = 0):
        """The low-resolution input of one (H, W, C) image (H, W divisible by the scale); a random
        blur is fixed by (seed, index)."""
        key = jax.random.fold_in(jax.random.key(seed), index)
        return self.degrade(jnp.asarray(clean, jnp.float32)[None], key)[0]

    def to_dict(self) -> dict:
        return {"kind": "perceptual_sr", "scale": self.scale, "downsample": self.downsample,
                "loss_a": [list(t) for t in self.loss_a], "loss_b": [list(t) for t in self.loss_b]}
