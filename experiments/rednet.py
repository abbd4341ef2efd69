"""RED-Net (seed 003): grey denoising sigma 15 -> 50 on Set12 with FTN and AdaFM, at CPU scale.

    ctl-jax run --config experiments/rednet.py --out runs/rednet

Trains a small RED-Net (5 convs + 5 mirrored transposed convs, 32 features, a symmetric skip every
two layers and the input skip; ``ctl_jax.nets.rednet``) at sigma=15 on the 400 grey training images
of DnCNN (``../shared/data/train/train400_gray``), tunes FTN (every conv and transposed-conv kernel)
and AdaFM (5x5 slots after every layer but the last) to sigma=50 on the frozen base, and sweeps alpha
on the full Set12 images at sigma 15 / 25* / 50 (* unseen). The data folders are resolved next to this
checkout (``<repo>/../shared/data``); point elsewhere with ``--set data.train=... --set data.test=...``.
Results: experiments/README.md, "RED-Net (seed 003)". Presets: "cpu" (default) and "smoke" (seconds,
bundled photos; for tests).
"""

import pathlib

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config(preset: str = "cpu") -> dict:
    config = {
        "title": "RED-Net (seed 003): grey denoising sigma 15 -> 50, Set12",
        "network": {"name": "rednet", "variant": "small", "channels": 1},
        "task": {"kind": "restoration", "degradations": ["noise"], "level_a": [15], "level_b": [50]},
        "data": {"train": str(SHARED_DATA / "train" / "train400_gray"), "test": str(SHARED_DATA / "test" / "set12"),
                 "test_crop": None, "max_test_images": None},
        "stage1": dict(steps=1200, batch_size=8, patch_size=40, lr=1e-3, lr_milestones=[900], lr_gamma=0.2,
                       log_every=100, ckpt_every=300, seed=0, micro_batches="auto"),
        "stage2": dict(steps=400, batch_size=8, patch_size=40, lr=1e-3, lr_milestones=[300], lr_gamma=0.2,
                       log_every=100, ckpt_every=200, seed=1, micro_batches="auto"),
        "methods": ["ftn", "adafm"],
        "from_scratch": False,
        "sweep": {"levels": [15, 25, 50], "alphas": 6, "seed": 0},  # alpha 0, 0.2, .., 1: full Set12 is slow
    }
    if preset == "smoke":
        config["network"]["variant"] = "tiny"
        config["data"].update(train="bundled", test="bundled", test_crop=32, max_test_images=2)
        for stage in ("stage1", "stage2"):
            config[stage].update(steps=3, batch_size=2, patch_size=16, lr_milestones=[], log_every=1, ckpt_every=3)
        config["sweep"]["alphas"] = 3
    elif preset != "cpu":
        raise ValueError(f"unknown preset {preset!r}; choose 'cpu' or 'smoke'")
    return config
