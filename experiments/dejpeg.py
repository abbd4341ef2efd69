"""JPEG artefact removal, quality 40 -> 10 (FTN paper's second restoration task), on the authors' DnCNN-3.

The base is the authors' DnCNN-3 (one blind grey network for noise, super-resolution and JPEG q5-99),
imported and frozen as level A = q40; stage 2 tunes it to q10 with each of the seven methods on the
400 grey training images (each 40x40 crop JPEG-compressed on the fly with Pillow). The sweep scores
every quality 5..50 on grey 128x128 centre crops of LIVE1, each method at its best alpha; the
reference row is DnCNN-3 itself, blind, at every quality. ``experiments/dejpeg_live1.py`` then
scores the chosen alphas on LIVE1 in the papers' Y protocol and in RGB. Needs ../shared/data:

    ctl-jax run --config experiments/dejpeg.py --out runs/dejpeg
    python experiments/dejpeg_live1.py --experiment runs/dejpeg

Presets: "cpu" (default: 300 tuning steps of 8 crops per method, 4 test crops) and "smoke" (tests:
two steps, one crop; the weights path still points into ../shared).
"""

from ctl_jax.nets.dncnn import feature_tuner_specs

SHARED = "../shared/data"
WEIGHTS = f"{SHARED}/weights"
QUALITIES = [5, 10, 15, 20, 25, 30, 35, 40, 50]


def get_config(preset: str = "cpu") -> dict:
    config = {
        "title": "DnCNN-3 tuned from JPEG q40 to q10 (grey), every quality 5..50",
        "network": {"name": "dncnn", "variant": "3", "channels": 1},
        "task": {"kind": "restoration", "degradations": ["jpeg"], "level_a": [40], "level_b": [10]},
        "base": {"import": f"{WEIGHTS}/dncnn_matconvnet/DnCNN3.mat"},
        "data": {"train": f"{SHARED}/train/train400_gray", "test": f"{SHARED}/test/live1", "test_crop": 128,
                 "max_test_images": 4},
        "stage1": dict(steps=1, batch_size=8, patch_size=40),  # unused: the base is imported
        "stage2": dict(steps=300, batch_size=8, patch_size=40, lr=1e-4, lr_milestones=[200], lr_gamma=0.1,
                       log_every=25, ckpt_every=100, seed=1, micro_batches="auto"),
        "methods": ["ftn-gc16", "ftn-gc4", "ftn", "adafm", "dni", *feature_tuner_specs("3")],
        "references": [{"name": "DnCNN-3 (blind)", "import": f"{WEIGHTS}/dncnn_matconvnet/DnCNN3.mat",
                        "levels": [40, 10]}],
        "sweep": {"levels": QUALITIES, "alphas": [round(-0.2 + 0.1 * i, 1) for i in range(15)], "seed": 0},
    }
    if preset == "smoke":
        config["stage2"].update(steps=2, log_every=1, ckpt_every=2, lr_milestones=[])
        config["methods"] = ["ftn", "dni"]
        config["data"].update(test_crop=32, max_test_images=1)
        config["sweep"].update(levels=[10, 40], alphas=[0.0, 1.0])
    elif preset != "cpu":
        raise ValueError(f"unknown preset {preset!r}; choose 'cpu' or 'smoke'")
    return config
