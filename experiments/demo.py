"""The main job: colour denoising sigma 20 -> 80 on the bundled sample photos, in minutes on a CPU.

    ctl-jax run --config experiments/demo.py --out runs/demo

Trains a small AdaFM-Net (with a global input skip, which keeps colours) at sigma=20, tunes
FTN-gc16, AdaFM and DNI to sigma=80, sweeps alpha at sigma 20/40/60/80 and writes runs/demo/report
(sweep.json, sweep.md, PSNR-vs-alpha plots, image strips, a per-pixel demo with alpha rising left to
right, colour.md). Presets: "cpu" (default) and "smoke"
(seconds; for tests).
"""


def get_config(preset: str = "cpu") -> dict:
    config = {
        "title": "Denoising sigma 20 -> 80, small AdaFM-Net, bundled photos",
        "network": {"name": "adafm_net", "variant": "small", "channels": 3, "residual": True},
        "task": {"kind": "restoration", "degradations": ["noise"], "level_a": [20], "level_b": [80]},
        "data": {"train": "bundled", "test": "bundled", "test_crop": 256, "max_test_images": None},
        "stage1": dict(steps=1500, batch_size=8, patch_size=48, lr=5e-4, lr_milestones=[1000], lr_gamma=0.2,
                       log_every=100, ckpt_every=500, seed=0, micro_batches="auto"),
        "stage2": dict(steps=1000, batch_size=8, patch_size=48, lr=5e-4, lr_milestones=[500, 800], lr_gamma=0.2,
                       log_every=100, ckpt_every=250, seed=1, micro_batches="auto"),
        "methods": ["ftn-gc16", "adafm", "dni"],
        "from_scratch": False,
        "sweep": {"levels": [20, 40, 60, 80], "alphas": 11, "seed": 0},
    }
    if preset == "smoke":
        config["network"]["variant"] = "tiny"
        config["data"]["test_crop"] = 32
        for stage in ("stage1", "stage2"):
            config[stage].update(steps=4, batch_size=2, patch_size=16, lr_milestones=[], log_every=2, ckpt_every=2)
        config["sweep"]["alphas"] = 3
    elif preset != "cpu":
        raise ValueError(f"unknown preset {preset!r}; choose 'cpu' or 'smoke'")
    return config
