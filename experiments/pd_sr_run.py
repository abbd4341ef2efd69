"""Perception-distortion x4 SR through ``ctl-jax run``: the GAN stage from a config file.

    ctl-jax run --config experiments/pd_sr_run.py --out runs/pd_sr_run
    ctl-jax apply --model runs/pd_sr_run/ftn --input small.png --output large.png --alpha 0.5

The same recipe as ``experiments/pd_sr.py`` (stage 1: L1; stage 2: ESRGAN's 1e-2 L1 + 1 perceptual,
from the task's ``loss_b``, plus 5e-3 RaGAN against a VGG-style discriminator, from the config's
``adversarial`` entry) with the standard sweep report (PSNR / SSIM across alpha, 4 pixels cropped per
side; RGB in sweep.md, the Y-channel values in sweep.json). NIQE, the
PD curves, the filter similarity and the colour shift are ``experiments/pd_sr.py``'s; use this file
to train and apply PD-controllable networks with the command-line tool. Presets: "cpu" (the
default: FTN and DNI, BSDS400 -> Set14) and "smoke" (seconds, bundled photos; for tests).
"""

import pathlib

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config(preset: str = "cpu") -> dict:
    config = {
        "title": "Perception-distortion x4 SR: L1 (alpha 0) -> L1 + perceptual + RaGAN (alpha 1)",
        "network": {"name": "cfsnet", "variant": "small", "channels": 3, "upscale": 4},
        "task": {"kind": "perceptual_sr", "scale": 4},
        "adversarial": {"kind": "ragan", "weight": 5e-3, "discriminator": "small", "lr": 1e-4},
        "data": {"train": str(SHARED_DATA / "train" / "bsds400"), "test": str(SHARED_DATA / "test" / "set14"),
                 "test_crop": None, "max_test_images": None},
        "stage1": dict(steps=1500, batch_size=16, patch_size=64, lr=2e-4, lr_milestones=[1000], lr_gamma=0.5,
                       log_every=50, ckpt_every=500, seed=0),
        "stage2": dict(steps=400, batch_size=16, patch_size=64, lr=1e-4, lr_milestones=[], lr_gamma=0.5,
                       log_every=50, ckpt_every=200, seed=1),
        "methods": ["ftn", "dni"],
        "from_scratch": False,
        "sweep": {"levels": [1], "alphas": 6, "seed": 0, "border": 4},  # the level is the control: one input per image
    }
    if preset == "smoke":
        config["network"]["variant"] = "tiny"
        config["adversarial"]["discriminator"] = "tiny"
        config["data"].update(train="bundled", test="bundled", test_crop=32, max_test_images=1)
        for stage in ("stage1", "stage2"):
            config[stage].update(steps=2, batch_size=2, patch_size=32, lr_milestones=[], log_every=1, ckpt_every=2)
        config["sweep"]["alphas"] = 3
    elif preset != "cpu":
        raise ValueError(f"unknown preset {preset!r}; choose 'cpu' or 'smoke'")
    return config
