"""Two-dimensional control (CResMD-style): one network restores noise and JPEG at once, each level set
by its own control value, trained over the whole 2-D level range with the levels as an input map.

    ctl-jax run --config experiments/control_2d.py --out runs/control_2d

Task: Gaussian noise sigma 0 -> 50, then JPEG quality 90 -> 10 (control (0, 0) is the mildest
pair, (1, 1) the strongest). Method: the conditional tuner (a small FFDNet, residual output for
short training, whose input carries the 2-channel control map). The report (runs/control_2d/report) has, per degradation pair
of the test grid, the best control on a 6 x 6 grid against the linearly expected one, and PSNR
heat maps over the control grid. Presets: "cpu" (default, minutes) and "smoke" (seconds; tests).
"""


def get_config(preset: str = "cpu") -> dict:
    config = {
        "title": "2-D control: noise sigma 0 -> 50 and JPEG quality 90 -> 10, one conditional FFDNet",
        "network": {"name": "ffdnet", "variant": "small", "channels": 3, "residual": True},
        "task": {"kind": "restoration", "degradations": ["noise", "jpeg"], "level_a": [0, 90], "level_b": [50, 10]},
        "data": {"train": "bundled", "test": "bundled", "test_crop": 128, "max_test_images": None},
        "stage1": dict(steps=1, batch_size=8, patch_size=48),  # unused: one-stage method
        "stage2": dict(steps=3000, batch_size=8, patch_size=48, lr=1e-3, lr_milestones=[2400], lr_gamma=0.2,
                       log_every=100, ckpt_every=500, seed=0, micro_batches="auto"),
        "methods": [{"class": "Conditional", "name": "conditional", "control_dim": 2}],
        "from_scratch": False,
        "sweep": {"levels": [[s, q] for s in (10, 30, 50) for q in (10, 30, 60)], "alphas": 6, "seed": 0},
    }
    if preset == "smoke":
        config["network"]["variant"] = "tiny"
        config["data"]["test_crop"] = 32
        config["data"]["max_test_images"] = 1
        config["stage2"].update(steps=4, batch_size=2, patch_size=16, lr_milestones=[], log_every=2, ckpt_every=2)
        config["sweep"].update(levels=[[10, 30], [50, 10]], alphas=3)
    elif preset != "cpu":
        raise ValueError(f"unknown preset {preset!r}; choose 'cpu' or 'smoke'")
    return config
