"""Controllable feed-forward style transfer A -> B (FTN paper Fig. 3; Dynamic-Net) on Transform-Net.

Stage 1 trains Johnson et al.'s Transform-Net on style A (content crops of BSDS400); stage 2 tunes
it to style B with FTN, FTN-gc16, AdaFM, DNI and Dynamic-Net (its tuning blocks at its three
pre-defined places; FTN in every conv); a network trained on B alone with the stage-1 budget is
the adaptation reference. The report (run/report/style.md) gives the style losses against A and
B and the content loss across alpha, smoothness and cost, with image strips and the
pixel-adaptive style map (A on the left, B on the right) for every content image:

    ctl-jax run --config experiments/style.py --out runs/style
    ctl-jax run --config experiments/style.py:strength --out runs/style_strength

Presets: "cpu" (default: the "small" Transform-Net, candy -> starry night, 96x96 crops, the offline
random loss network; tens of minutes on 2 cores), "strength" (Dynamic-Net's objective-strength
control: one style, weak in stage 1, strong in stage 2), "paper" (the paper-size network on
256x256 crops, VGG-19 weights given with ``--set task.loss_net=vgg19:PATH``; an accelerator's
job) and "smoke" (tests: tiny network, bundled pictures as content and styles, seconds).
The data folders are resolved next to this checkout (``<repo>/../shared/data``).
"""

import pathlib

from ctl_jax.nets.transform_net import feature_tuner_specs

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
STYLES = SHARED_DATA / "style" / "styles"


def _methods(variant: str) -> list:
    dynamic = [spec for spec in feature_tuner_specs(variant) if spec["name"] == "dynamic-net"]
    return ["ftn", "ftn-gc16", "adafm", "dni", *dynamic]


def get_config(preset: str = "cpu") -> dict:
    variant = {"paper": "paper", "smoke": "tiny"}.get(preset, "small")
    config = {
        "title": "Style transfer candy -> starry night (Transform-Net, FTN / FTN-gc16 / AdaFM / DNI / Dynamic-Net)",
        "network": {"name": "transform_net", "variant": variant, "channels": 3},
        "task": {"kind": "style", "style_a": str(STYLES / "candy.jpg"), "style_b": str(STYLES / "starry_night.jpg"),
                 "style_weight_a": 3e3, "style_weight_b": 3e3, "content_weight": 1.0, "tv_weight": 1e-2,
                 "loss_net": "random", "style_size": 256},
        "data": {"train": str(SHARED_DATA / "train" / "bsds400"), "test": str(SHARED_DATA / "style" / "content"),
                 "test_size": 256},
        "stage1": dict(steps=1500, batch_size=4, patch_size=96, lr=1e-3, lr_milestones=[1200], lr_gamma=0.2,
                       log_every=50, ckpt_every=500, seed=0, micro_batches="auto"),
        "stage2": dict(steps=500, batch_size=4, patch_size=96, lr=1e-3, lr_milestones=[400], lr_gamma=0.2,
                       log_every=50, ckpt_every=250, seed=1, micro_batches="auto"),
        "methods": _methods(variant),
        # FTN's transition at 1e-3 left the intermediate alphas as colour blobs (style-A loss x30 at alpha 0.5)
        "stage2_by_method": {"ftn": {"lr": 3e-4}, "ftn-gc16": {"lr": 3e-4}},
        "from_scratch": True,
        "sweep": {"alphas": 11},
    }
    if preset == "strength":
        config["title"] = "Objective strength: starry night, weak (stage 1) -> strong (stage 2)"
        config["task"].update(style_a=str(STYLES / "starry_night.jpg"), style_weight_a=5e2, style_weight_b=5e3)
    elif preset == "paper":
        config["task"].update(style_weight_a=1e5, style_weight_b=1e5, tv_weight=0.0, loss_net="random")
        for stage, steps, lr in (("stage1", 40000, 1e-3), ("stage2", 40000, 1e-4)):
            config[stage].update(steps=steps, patch_size=256, lr=lr, lr_milestones=[], log_every=500,
                                 ckpt_every=5000)
        config["stage2_by_method"] = {}
        config["data"]["test_size"] = 512
    elif preset == "smoke":
        config["task"].update(style_a="bundled:coffee", style_b="bundled:rocket", style_size=32)
        config["data"].update(train="bundled", test="bundled", test_size=32, max_test_images=1)
        for stage in ("stage1", "stage2"):
            config[stage].update(steps=2, batch_size=2, patch_size=16, lr_milestones=[], log_every=1, ckpt_every=2)
        config["sweep"]["alphas"] = 3
        config["report"] = {"cost_size": 32}
    elif preset != "cpu":
        raise ValueError(f"unknown preset {preset!r}; choose 'cpu', 'strength', 'paper' or 'smoke'")
    return config
