"""What DNI needs: interpolating two independently trained networks vs DNI from a fine-tuned copy.

DNI (Wang et al. 2019) interpolates a network and a copy of it fine-tuned to the other level. Two
networks trained separately (here the authors' DnCNN-S sigma=15 and sigma=50) share an architecture
but not their filters' order or roles, so interpolating them parameter by parameter should fail
between the endpoints. This script scores both over the same alpha grid, and prints the filter
similarity of each method's two endpoints (FTN paper Table 3: MAE and mean filter-wise cosine
between the level-A and level-B kernels). Run it after the pretrained experiment, on its folder:

    ctl-jax run --config experiments/pretrained_cll.py --out runs/cll50
    python experiments/dni_independent.py --experiment runs/cll50

It writes EXPERIMENT/dni_independent/ (sweep.md with both rows, PSNR-vs-alpha plot, an image strip
at alpha 0, 0.5 and 1 for each, similarity.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from ctl_jax.eval.filters import filter_similarity  # noqa: E402
from ctl_jax.eval.plots import image_strip  # noqa: E402
from ctl_jax.eval.report import write_report  # noqa: E402
from ctl_jax.eval.sweep import outputs_over_controls, sweep  # noqa: E402
from ctl_jax.files import write_text_atomic  # noqa: E402
from ctl_jax.nets.matconvnet import load_pretrained  # noqa: E402
from ctl_jax.pipeline import test_images  # noqa: E402
from ctl_jax.train.runs import load_run  # noqa: E402


def independent_dni(dni_model, level_b_params):
    """The experiment's DNI model with its fine-tuned endpoint replaced by an independently trained
    network of the same architecture (DNI's interpolation, no shared starting point)."""
    return dataclasses.replace(dni_model, phi=level_b_params)


def similarity_rows(models: dict) -> list[str]:
    """Markdown rows "method | MAE | cosine" between each parameter tuner's level-A and level-B kernels."""
    rows = []
    for name, model in models.items():
        theta1 = model.tuner.endpoint(model.phi, model.theta0)
        s = filter_similarity(model.theta0, theta1)
        rows.append(f"| {name} | {float(s['mae']):.4f} | {float(s['cosine']):.4f} |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="runs/cll50", help="folder of `ctl-jax run` with "
                        "experiments/pretrained_cll.py (its dni and ftn-gc16 runs are used)")
    parser.add_argument("--weights", default="../shared/data/weights/dncnn_matconvnet/sigma=50.mat",
                        help="the independently trained level-B network")
    parser.add_argument("--data", default="../shared/data/test/set12")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--levels", type=float, nargs="+", default=[15, 20, 30, 40, 50])
    args = parser.parse_args(argv)
    experiment = pathlib.Path(args.experiment)
    for path, what in ((experiment / "dni", "--experiment (a finished pretrained_cll run)"),
                       (pathlib.Path(args.weights), "--weights FILE.mat"), (pathlib.Path(args.data), "--data FOLDER")):
        if not path.exists():
            print(f"dni_independent: {path} not found; pass {what}", file=sys.stderr)
            return 2

    dni = load_run(experiment / "dni")
    _, sigma50 = load_pretrained(args.weights)
    models = {"DNI (fine-tuned copy)": dni, "DNI of independent networks": independent_dni(dni, sigma50)}
    images, names = test_images({"test": args.data, "test_crop": args.crop, "max_test_images": args.images},
                                dni.channels)
    alphas = np.round(np.linspace(0, 1, 11), 2)[:, None]
    results = {name: sweep(model, images, args.levels, alphas, name=name, image_names=names)
               for name, model in models.items()}
    out = experiment / "dni_independent"
    first = next(iter(results.values()))
    write_report(first, out, title="DNI: fine-tuned copy vs independently trained networks", method_results=results)

    middle = float(args.levels[len(args.levels) // 2])
    noisy = np.asarray(dni.task.eval_input(images[0], [middle], seed=0))
    for name, model in models.items():
        outputs = outputs_over_controls(model, noisy, [0.0, 0.5, 1.0])
        image_strip(list(outputs), [0.0, 0.5, 1.0], out / f"strip_{'independent' if 'independent' in name else 'dni'}.png",
                    degraded=noisy, clean=images[0], title=f"{name}, {dni.task.label([middle])}")

    tuned = {"FTN-gc16": load_run(experiment / "ftn-gc16")} if (experiment / "ftn-gc16").exists() else {}
    table = ["| method | MAE | cosine |", "|---|---|---|", *similarity_rows({**tuned, **models})]
    write_text_atomic(out / "similarity.md", "Filter similarity between the level-A (sigma 15) and level-B kernels "
                      "(all conv layers):\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))
    print(f"report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
