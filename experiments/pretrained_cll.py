"""Continuous-level denoising on the authors' pretrained DnCNN-S: sigma 15 -> 50 (or 75), grey.

The base is the authors' DnCNN-S trained at sigma=15, imported and frozen (no stage 1 here);
stage 2 tunes it to level B with each method on the 400 grey training images. Every sigma 10,
15, ..., 75 is evaluated (all but A and B unseen), each method at its best alpha on the grid, next
to two reference rows that need no training: the 14 dedicated DnCNN-S networks (one trained per
sigma; "from scratch" in the report) and FFDNet given the true sigma. Needs ../shared/data:

    ctl-jax run --config experiments/pretrained_cll.py --out runs/cll50
    ctl-jax run --config experiments/pretrained_cll.py:to75 --out runs/cll75

Presets: "cpu" (default: target 50; all seven methods: FTN, FTN-gc4, FTN-gc16, AdaFM, DNI,
CFSNet, Dynamic-Net; 128x128 centre crops of the first six Set12 images; 300 tuning steps of 8
crops), "to75" (the same with target 75), "long" (the convergence study: FTN-gc16, DNI and AdaFM
for 2000 steps, no reference rows; compare with the "cpu" run's) and "smoke" (tests: tiny
budgets; the weights paths still point into ../shared). Whole Set12 / BSD68 images at the alphas
the crops chose: ``experiments/cll_whole_images.py``.
"""

from ctl_jax.nets.dncnn import feature_tuner_specs

SHARED = "../shared/data"
WEIGHTS = f"{SHARED}/weights"
LEVELS = [10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75]
# CFSNet in every middle conv, Dynamic-Net at three places (DnCNN has no residual blocks)
METHODS = ["ftn-gc16", "ftn-gc4", "ftn", "adafm", "dni", *feature_tuner_specs("s")]


def get_config(preset: str = "cpu") -> dict:
    target = 75 if preset == "to75" else 50
    config = {
        "title": f"Pretrained DnCNN-S sigma 15 -> {target} (grey), every sigma 10..75",
        "network": {"name": "dncnn", "variant": "s", "channels": 1},
        "task": {"kind": "restoration", "degradations": ["noise"], "level_a": [15], "level_b": [target]},
        "base": {"import": f"{WEIGHTS}/dncnn_matconvnet/sigma=15.mat"},
        "data": {"train": f"{SHARED}/train/train400_gray", "test": f"{SHARED}/test/set12", "test_crop": 128,
                 "max_test_images": 6},
        "stage1": dict(steps=1, batch_size=8, patch_size=40),  # unused: the base is imported
        "stage2": dict(steps=300, batch_size=8, patch_size=40, lr=1e-4, lr_milestones=[200], lr_gamma=0.1,
                       log_every=25, ckpt_every=100, seed=1, micro_batches="auto"),
        "methods": METHODS,
        "from_scratch": {"import": WEIGHTS + "/dncnn_matconvnet/sigma={level:g}.mat"},
        "references": [{"name": "FFDNet (true sigma)", "import": f"{WEIGHTS}/ffdnet/FFDNet_gray.mat",
                        "levels": [0, 75]}],
        "sweep": {"levels": LEVELS, "alphas": [round(-0.2 + 0.1 * i, 1) for i in range(19)], "seed": 0},
    }
    if preset == "long":  # the convergence study: 2000 steps, the same crops; compare with cll50's references
        config["stage2"].update(steps=2000, lr_milestones=[1500], log_every=50, ckpt_every=500)
        config["methods"] = ["ftn-gc16", "dni", "adafm"]
        config.update(from_scratch=False, references=[])
    elif preset == "smoke":
        config["stage2"].update(steps=2, log_every=1, ckpt_every=2, lr_milestones=[])
        config["methods"] = ["ftn", "dni"]
        config["data"].update(test_crop=32, max_test_images=1)
        config["sweep"].update(levels=[15, 50], alphas=[0.0, 1.0])
    elif preset not in ("cpu", "to75"):
        raise ValueError(f"unknown preset {preset!r}; choose 'cpu', 'to75', 'long' or 'smoke'")
    return config
