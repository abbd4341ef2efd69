"""FTN paper Table 2 protocol: colour denoising sigma 20 -> 80, evaluated at 20, 40*, 60*, 80.

From scratch (one network per level), DNI, AdaFM, FTN, FTN-gc4, FTN-gc16 and the feature-space
baselines CFSNet and Dynamic-Net on the same backbone
and budget; the unseen levels 40 and 60 use each method's best alpha on an 11-point grid (the paper's
grid search). Run at CPU scale (the numbers in experiments/README.md):

    ctl-jax run --config experiments/table2.py:cpu --data-dir ../shared/data --out runs/table2 \
        --set data.train=../shared/data/train/bsds400 --set data.test=../shared/data/test/cbsd68

and at paper scale on an accelerator (AdaFM-Net nb=16 nf=64, batch 16, 96x96 patches, Adam 1e-4):

    ctl-jax run --config experiments/table2.py:paper --out runs/table2_paper \
        --set data.train=<DIV2K train folder> --set data.test=<CBSD68 folder>
"""


def get_config(preset: str = "cpu") -> dict:
    config = {
        "title": "FTN Table 2 protocol: colour denoising sigma 20 -> 80 (CBSD68)",
        "network": {"name": "adafm_net", "variant": "small", "channels": 3},
        "task": {"kind": "restoration", "degradations": ["noise"], "level_a": [20], "level_b": [80]},
        "data": {"train": "bundled", "test": "bundled", "test_crop": 128, "max_test_images": None},
        "stage1": dict(steps=1500, batch_size=8, patch_size=48, lr=5e-4, lr_milestones=[1000], lr_gamma=0.2,
                       log_every=100, ckpt_every=500, seed=0, micro_batches="auto"),
        "stage2": dict(steps=500, batch_size=8, patch_size=48, lr=5e-4, lr_milestones=[350], lr_gamma=0.2,
                       log_every=100, ckpt_every=250, seed=1, micro_batches="auto"),
        "methods": ["ftn-gc16", "ftn-gc4", "ftn", "adafm", "dni", "cfsnet", "dynamic-net"],
        "from_scratch": True,
        "sweep": {"levels": [20, 40, 60, 80], "alphas": 11, "seed": 0},
    }
    if preset == "paper":
        config["network"]["variant"] = "paper"
        config["data"]["test_crop"] = None
        config["stage1"].update(steps=1_000_000, batch_size=16, patch_size=96, lr=1e-4, lr_milestones=[500_000],
                                lr_gamma=0.1, log_every=1000, ckpt_every=5000)
        config["stage2"].update(steps=500_000, batch_size=16, patch_size=96, lr=1e-4, lr_milestones=[],
                                log_every=1000, ckpt_every=5000)
    elif preset != "cpu":
        raise ValueError(f"unknown preset {preset!r}; choose 'cpu' or 'paper'")
    return config
