"""Dynamic-Net's DCGAN transition: a generator of digit 3s tuned to draw 8s (seed 000), with FTN too.

    python experiments/dcgan_digits.py --out runs/dcgan_digits
    python experiments/dcgan_digits.py --out runs/dcgan_digits --preset smoke --mnist FOLDER   # tests

Stage 1 trains a DCGAN (generator ``ctl_jax.nets.dcgan``, VGG-style discriminator, the standard GAN
loss with an R1 penalty of 1 and instance noise of std 0.1) on the 3s of the MNIST test split
(``../shared/data/mnist``, about 1,000 digits). Stage 2 keeps it frozen and trains, against a fresh
discriminator on the 8s, either Dynamic-Net's tuning blocks (after ``block_0`` and ``block_1``) or
FTN's kernel transitions. Then for each method:

- ``grid_<method>.png``: 8 fixed latents (rows) across alpha = 0, 0.1, ..., 1 (columns);
- the fraction of 512 samples per alpha that a digit classifier trained here calls 3 and 8
  (``digits.md``, ``fractions.png``), with the classifier's held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from ctl_jax.data import PatchSampler, write_image  # noqa: E402
from ctl_jax.data.mnist import load_mnist  # noqa: E402
from ctl_jax.eval.digits import train_digit_classifier  # noqa: E402
from ctl_jax.files import write_text_atomic  # noqa: E402
from ctl_jax.nets.registry import NetworkSpec  # noqa: E402
from ctl_jax.tasks.generation import Generation  # noqa: E402
from ctl_jax.train.gan import Adversarial  # noqa: E402
from ctl_jax.train.loop import TrainConfig  # noqa: E402
from ctl_jax.train.runs import load_run  # noqa: E402
from ctl_jax.train.supervised import train_base, train_tuner  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
ALPHAS = tuple(round(a, 1) for a in np.linspace(0, 1, 11))
METHODS = {"dynamic-net": "dynamic-net", "ftn": "ftn"}  # Dynamic-Net: its tuning blocks after block_0, block_1
PRESETS = {
    "cpu": dict(variant="small", discriminator="small", batch=64, stage1=1200, stage2=800, samples=512,
                classifier_steps=800),
    "smoke": dict(variant="tiny", discriminator="tiny", batch=8, stage1=2, stage2=2, samples=16, classifier_steps=5),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--mnist", default=str(SHARED / "mnist"), help="folder with the t10k IDX files")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    preset, out = PRESETS[args.preset], pathlib.Path(args.out)
    images, labels = load_mnist(args.mnist)
    spec = NetworkSpec("dcgan", preset["variant"], channels=1)
    task = Generation(latent=spec.build().latent)
    # DCGAN's Adam (2e-4, b1 0.5) for both; R1 and instance noise keep the discriminator from winning outright
    gan = Adversarial("standard", weight=1.0, discriminator=preset["discriminator"], lr=2e-4, b1=0.5, r1=1.0,
                      instance_noise=0.1)
    common = dict(batch_size=preset["batch"], patch_size=28, lr=2e-4, adam_b1=0.5, log_every=50, seed=0,
                  progress=args.preset != "smoke")
    digits = lambda d, seed: PatchSampler(list(images[labels == d]), 28, preset["batch"], seed=seed, augment=False)
    train_base(spec, task, digits(3, 0), out / "base", TrainConfig(steps=preset["stage1"], ckpt_every=400, **common),
               adversarial=gan)
    for name, tuner in METHODS.items():
        train_tuner(tuner, task, digits(8, 1), out / name, TrainConfig(steps=preset["stage2"], ckpt_every=400, **common),
                    base_workdir=out / "base", adversarial=gan)
    trained = time.perf_counter() - start

    classifier = train_digit_classifier(images, labels, steps=preset["classifier_steps"])
    z = jax.random.normal(jax.random.key(123), (preset["samples"], 1, 1, task.latent))
    fractions = {}
    for name in METHODS:
        model = load_run(out / name)
        forward = jax.jit(lambda x, a: model(x, a))
        rows, fractions[name] = [], {"3": [], "8": []}
        for alpha in ALPHAS:
            samples = np.asarray(forward(z, np.float32(alpha)))
            predicted = classifier.predict(samples)
            fractions[name]["3"].append(float(np.mean(predicted == 3)))
            fractions[name]["8"].append(float(np.mean(predicted == 8)))
            rows.append(samples[:8, :, :, 0])
        grid = np.concatenate([np.concatenate(list(column), axis=0) for column in rows], axis=1)  # latents x alphas
        write_image(out / f"grid_{name}.png", np.repeat(grid[..., None], 3, axis=-1), overwrite=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, f in fractions.items():
        ax.plot(ALPHAS, f["3"], "o-", label=f"{name}: classified 3")
        ax.plot(ALPHAS, f["8"], "s--", label=f"{name}: classified 8")
    ax.set_xlabel("α (0 = generator of 3s, 1 = tuned to 8s)")
    ax.set_ylabel("fraction of samples")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fractions.png", dpi=110)
    plt.close(fig)
    write_text_atomic(out / "digits.json", json.dumps({"alphas": ALPHAS, "fractions": fractions,
                                                       "classifier_accuracy": classifier.accuracy}, indent=1))
    lines = ["| method | " + " | ".join(f"α={a:g}" for a in ALPHAS) + " |", "|---|" + "---|" * len(ALPHAS)]
    for name, f in fractions.items():
        lines.append(f"| {name} | " + " | ".join(f"{t:.2f} / {e:.2f}" for t, e in zip(f["3"], f["8"])) + " |")
    write_text_atomic(out / "digits.md", "\n".join([
        "# DCGAN 3 -> 8", "", f"`python experiments/dcgan_digits.py --out {args.out} --preset {args.preset}`: "
        f"training {trained:.0f} s, all {time.perf_counter() - start:.0f} s", "",
        f"Fraction of {preset['samples']} samples classified as 3 / as 8 (classifier held-out accuracy "
        f"{classifier.accuracy:.3f}):", "", *lines, "", "Grids: `grid_<method>.png` (rows: 8 latents; columns: α).", ""]))
    print(out / "digits.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
