"""CPU-scale reproductions of the decoupled-learning paper's tables (Fan et al., TPAMI 2019).

    python experiments/decouple_tables.py --train ../shared/data/train/bsds400 \\
        --test ../shared/data/test/cbsd68 --out runs/decouple

Writes OUT/tables.md (and OUT/results.json); the numbers in experiments/README.md come from it.
Every model is the "small" DecoupleNet with a global input skip (``residual=True``: a few hundred
steps are not enough for the plain network to learn to reproduce images; 150 steps of L0 gave
18 dB without the skip and 21-37 dB with it), trained for the same number of steps with one gamma
per batch on a grid of parameter values (``per_sample="shared"``). Caches of operator outputs
are built once and reused by reruns, and so are finished runs.

Tables: "1" (I-II: one network per fixed value vs one over the range), "3" (III: joint training
vs one operator, vs baseline [18]), "12" (XII: which layer is predicted), "14" (XIV: trained on 5
values, tested on 4 unseen ones), "denoise" (the hypernetwork as a sigma 20..80 colour denoiser).
Table V (switching time) is benchmarks/switch_time.py.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctl_jax import Control  # noqa: E402
from ctl_jax.data.operator_pairs import prepare_operator_cache  # noqa: E402
from ctl_jax.eval.sweep import scores  # noqa: E402
from ctl_jax.files import write_text_atomic  # noqa: E402
from ctl_jax.operator_pipeline import evaluate_operator_model, train_operator_model, with_overrides  # noqa: E402
from ctl_jax.operators import get_operator  # noqa: E402
from ctl_jax.pipeline import test_images  # noqa: E402
from ctl_jax.tasks import Restoration  # noqa: E402

STEPS = 300
BASE = {
    "network": {"name": "decouple_net", "variant": "small", "channels": 3, "residual": True},
    "operators": ["l0"], "method": "hyper", "hyper": {"preset": "all-convs"},
    "train": dict(steps=STEPS, batch_size=8, patch_size=48, lr=2e-3, lr_milestones=[240], lr_gamma=0.1, loss="l2",
                  log_every=50, ckpt_every=STEPS, seed=0, progress=False, micro_batches="auto"),
    "values": None, "per_sample": "shared",
}
JOINT = ["l0", "wls", "rgf", "llf", "shock", "denoise", "super_resolution", "deblock"]
SINGLE_TABLE = ["l0", "wls", "rtv", "rgf", "wmf", "llf", "shock", "denoise", "super_resolution", "deblock"]
# the small network has 14 convs: norm13 is its last instance norm, conv13 the conv before it
LAYER_ROWS = {"norm(1)": ["norm1/*"], "norm(7)": ["norm7/*"], "norm(13), last": ["norm13/*"],
              "conv(13)": ["conv13/kernel"], "norm(all)": ["norm*/*"], "conv(all)": ["conv*/kernel"]}
L0_SEEN = [0.002, 0.0043, 0.02, 0.12, 0.2]
L0_UNSEEN = [0.0025, 0.0033, 0.0928, 0.16]


def grid(operator: str, n: int) -> list[float]:
    return get_operator(operator).grid(n)


def test_values(operator: str) -> list[float]:
    return grid(operator, 3)


class Runner:
    def __init__(self, args):
        self.args, self.out = args, pathlib.Path(args.out)
        self.train_images, self.train_names = test_images({"test": args.train, "max_test_images": args.train_images}, 3)
        self.test_images, self.test_names = test_images({"test": args.test, "max_test_images": args.test_images}, 3)

    def cache(self, kind: str, operator: str, values) -> pathlib.Path:
        images, names = (self.train_images, self.train_names) if kind == "train" else (self.test_images, self.test_names)
        tag = "-".join(f"{v:g}" for v in values)
        path = self.out / "caches" / f"{kind}_{operator}_{tag}"
        return prepare_operator_cache(images, names, [operator], path, values=values, crop=self.args.crop, seed=0,
                                      progress=True)

    def train(self, name: str, caches: list[pathlib.Path], config: dict):
        """Train on the pairs of all ``caches``."""
        print(f"== training {name}", flush=True)
        return train_operator_model(config, caches, self.out / "runs" / name)

    def score(self, model, operator: str, values) -> dict:
        return evaluate_operator_model(model, self.cache("test", operator, values), operator)


def table_single_vs_numerous(r: Runner) -> dict:
    rows = {}
    for op in SINGLE_TABLE:
        values = test_values(op)
        numerous = r.train(f"numerous_{op}", [r.cache("train", op, grid(op, 8))], with_overrides(BASE, operators=[op]))
        nume = r.score(numerous, op, values)
        for v in values:
            single = r.train(f"single_{op}_{v:g}", [r.cache("train", op, [v])], with_overrides(BASE, operators=[op]))
            s = r.score(single, op, [v])[round(v, 6)]
            rows[f"{op} {v:g}"] = {"single": s, "numerous": nume[round(v, 6)]}
    return rows


def joint_caches(r: Runner) -> list[pathlib.Path]:
    return [r.cache("train", op, grid(op, 6)) for op in JOINT]


def table_joint(r: Runner) -> dict:
    joint_hyper = r.train("joint_hyper", joint_caches(r), with_overrides(BASE, operators=JOINT))
    joint_b18 = r.train("joint_baseline18", joint_caches(r), with_overrides(BASE, operators=JOINT, method="baseline18"))
    rows = {}
    for op in JOINT:
        values = test_values(op)
        row = {"joint (hyper)": _mean(r.score(joint_hyper, op, values)),
               "joint (baseline [18])": _mean(r.score(joint_b18, op, values))}
        if op in SINGLE_TABLE:
            one = r.train(f"numerous_{op}", [r.cache("train", op, grid(op, 8))], with_overrides(BASE, operators=[op]))
            row["1 operator (hyper)"] = _mean(r.score(one, op, values))
        rows[op] = row
    return rows


def table_layers(r: Runner) -> dict:
    rows = {}
    for label, patterns in LAYER_ROWS.items():
        name = "joint_hyper" if label == "conv(all)" else f"joint_layer_{patterns[0].split('/')[0].replace('*', 'all')}"
        config = with_overrides(BASE, operators=JOINT, hyper={"predict": patterns})
        model = r.train(name, joint_caches(r), config)
        scores = [_mean(r.score(model, op, test_values(op))) for op in JOINT]
        rows[label] = {"psnr": float(np.mean([s["psnr"] for s in scores])),
                       "ssim": float(np.mean([s["ssim"] for s in scores]))}
    return rows


def table_unseen(r: Runner) -> dict:
    fixed = r.train("l0_five_values", [r.cache("train", "l0", L0_SEEN)], with_overrides(BASE, operators=["l0"]))
    numerous = r.train("numerous_l0", [r.cache("train", "l0", grid("l0", 8))], with_overrides(BASE, operators=["l0"]))
    values = sorted(L0_SEEN + L0_UNSEEN)
    a, b = r.score(fixed, "l0", values), r.score(numerous, "l0", values)
    return {f"{v:g}" + ("" if v in L0_SEEN else " (unseen)"): {"5 values": a[round(v, 6)], "range": b[round(v, 6)]}
            for v in values}


def table_denoise(r: Runner) -> dict:
    steps = 3 * BASE["train"]["steps"]
    config = with_overrides(BASE, operators=["denoise_20_80"], train=dict(steps=steps, lr_milestones=[int(0.8 * steps)],
                                                                         ckpt_every=steps))
    model = r.train("denoise_20_80", [r.cache("train", "denoise_20_80", grid("denoise_20_80", 7))], config)
    rows = {f"sigma {v:g}": s for v, s in r.score(model, "denoise_20_80", [20, 40, 60, 80]).items()}
    rows.update(table2_protocol(model, r.args.test))
    return rows


def table2_protocol(model, test_dir) -> dict:
    """PSNR / SSIM on the FTN Table 2 protocol's test set (every image, centre 128x128, the sweep's noisy
    inputs ``Restoration.eval_input``, 8-bit outputs as ``ctl_jax.eval.sweep`` scores them), so the
    numbers sit beside experiments/README.md's Table 2 rows. The noisy input is clipped to [0, 1], as
    in the hypernetwork's training pairs; the control is sigma's gamma, (sigma - 20) / 60."""
    images, _ = test_images({"test": test_dir, "test_crop": 128}, 3)
    noise = Restoration("noise", 20, 80)
    apply = jax.jit(lambda x, c: model(x, c))
    rows = {}
    for level in (20, 40, 60, 80):
        control = Control.vector(model.task.control_for([level], "denoise_20_80"))
        values = []
        for i, clean in enumerate(images):
            noisy = jnp.clip(noise.eval_input(clean, [level], seed=0, index=i), 0, 1)
            values.append(np.asarray(scores(apply(noisy[None], control), jnp.asarray(clean)[None]))[:2, 0])
        mean = np.mean(values, axis=0)
        rows[f"sigma {level}, Table 2 protocol ({len(images)} images, 128x128)"] = {"psnr": float(mean[0]),
                                                                                  "ssim": float(mean[1])}
    return rows


def _mean(scores: dict) -> dict:
    return {k: float(np.mean([s[k] for s in scores.values()])) for k in ("psnr", "ssim")}


TABLES = {"1": table_single_vs_numerous, "3": table_joint, "12": table_layers, "14": table_unseen,
          "denoise": table_denoise}


def markdown(results: dict) -> str:
    lines = []
    for table, rows in results.items():
        lines += [f"### Table {table}", ""]
        first = next(iter(rows.values()))
        if "psnr" in first:
            lines += ["| | PSNR | SSIM |", "|---|---|---|"]
            lines += [f"| {name} | {row['psnr']:.2f} | {row['ssim']:.3f} |" for name, row in rows.items()]
        else:
            columns = list(dict.fromkeys(c for row in rows.values() for c in row))
            lines.append("| | " + " | ".join(f"{c} PSNR / SSIM" for c in columns) + " |")
            lines.append("|---" * (len(columns) + 1) + "|")
            for name, row in rows.items():
                cells = [f"{row[c]['psnr']:.2f} / {row[c]['ssim']:.3f}" if c in row else "-" for c in columns]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="folder of clean training images")
    parser.add_argument("--test", required=True, help="folder of clean test images")
    parser.add_argument("--out", required=True, help="output folder (caches, runs, tables.md)")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--train-images", type=int, default=32, help="use the first N training images")
    parser.add_argument("--test-images", type=int, default=8, help="use the first N test images")
    parser.add_argument("--crop", type=int, default=96, help="centre crop of every image")
    parser.add_argument("--steps", type=int, default=STEPS, help="training steps of every model (denoise: 3x)")
    args = parser.parse_args(argv)
    for option, folder in (("--train", args.train), ("--test", args.test)):
        if not pathlib.Path(folder).is_dir():  # ../shared is not part of every checkout
            raise SystemExit(f"decouple_tables: no image folder {folder!r}; pass {option} FOLDER of clean "
                             f"images (e.g. ../shared/data/{'train/bsds400' if option == '--train' else 'test/cbsd68'})")
    steps = args.steps
    BASE["train"].update(steps=steps, lr_milestones=[int(0.8 * steps)], ckpt_every=steps)
    runner = Runner(args)
    results_path = pathlib.Path(args.out) / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for table in args.tables:
        results[table] = TABLES[table](runner)
        write_text_atomic(results_path, json.dumps(results, indent=1))  # a kill never leaves half a file
        write_text_atomic(pathlib.Path(args.out) / "tables.md", markdown(results))
        print(markdown({table: results[table]}), flush=True)


if __name__ == "__main__":
    main()
