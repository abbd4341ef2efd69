"""Decoupled learning (Fan et al., TPAMI 2019): one network imitating a parameterised operator over
its whole parameter range.

    ctl-jax prepare-ops --operators l0 --grid 8 --out runs/ops/cache
    ctl-jax train-ops --config experiments/operators.py --cache runs/ops/cache --workdir runs/ops/l0
    ctl-jax apply --model runs/ops/l0 --input photo.png --output smooth.png --param 0.02

Presets: "cpu" (default; the small base network with an input skip, one gamma per batch, so the
cache needs --grid; about 2 minutes), "paper" (the 20-layer network, a gamma per sample, and the
official recipe: Adam lr 0.01 -> 0.001, batch 12, L2 loss) and "smoke" (seconds; for tests).
Override anything with --set, e.g. --set operators="['l0','wls']" --set method=baseline18.
"""


def get_config(preset: str = "cpu") -> dict:
    config = {
        "network": {"name": "decouple_net", "variant": "small", "channels": 3, "residual": True},
        "operators": ["l0"],
        "method": "hyper",
        "hyper": {"preset": "all-convs", "hidden": None, "relu": False},
        "train": dict(steps=400, batch_size=8, patch_size=48, lr=2e-3, lr_milestones=[320], lr_gamma=0.1,
                      loss="l2", log_every=50, ckpt_every=200, seed=0, micro_batches="auto"),
        "values": None,
        "per_sample": "shared",
    }
    if preset == "paper":
        config["network"].update(variant="paper", residual=False)
        config["per_sample"] = "map"
        # the official 1-operator recipe: 100 epochs of 15983 / 12 steps, lr / 10 at epoch 85
        config["train"].update(steps=133_200, batch_size=12, patch_size=128, lr=1e-2, lr_milestones=[113_220],
                               log_every=200, ckpt_every=5000)
    elif preset == "smoke":
        config["network"]["variant"] = "tiny"
        config["per_sample"] = "map"
        config["train"].update(steps=4, batch_size=2, patch_size=16, lr_milestones=[], log_every=2, ckpt_every=2)
    elif preset != "cpu":
        raise ValueError(f"unknown preset {preset!r}; choose 'cpu', 'paper' or 'smoke'")
    return config
