"""AdaIN (Huang and Belongie 2017): train the decoder at CPU scale, then the test-time controls.

    python experiments/adain.py --out runs/adain
    python experiments/adain.py --out runs/adain --loss-net vgg19:PATH   # with real VGG-19 weights

Trains the decoder on content crops of BSDS400 and style crops of every style in
``../shared/data/style/styles`` but ``--held-out`` (udnie by default: an unseen style shows that
the model is arbitrary-style), then writes to OUT/report/:

- ``tradeoff_<content>.png``: the content-style trade-off alpha = 0, 0.25, ..., 1 with the held-out style;
- ``interpolation_<content>.png``: a 3x3 grid mixing four styles by bilinear weights (paper Fig. 8);
- ``adain.md``: the command, settings, wall time and loss at the start and end of training.

Rerunning resumes the training from its checkpoints. ``--preset smoke`` (tests) trains a few steps on
the bundled pictures.
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

from ctl_jax.classical.adain import AdaINConfig, train_adain  # noqa: E402
from ctl_jax.data import PatchSampler, bundled_images, iter_folder, load_folder, write_image  # noqa: E402
from ctl_jax.eval.plots import image_strip  # noqa: E402
from ctl_jax.eval.metrics import psnr  # noqa: E402
from ctl_jax.eval.sweep import crop_to_multiple, quantise  # noqa: E402
from ctl_jax.files import write_text_atomic  # noqa: E402
from ctl_jax.style_pipeline import resize_longer_side  # noqa: E402
from ctl_jax.tasks.style import read_style_image  # noqa: E402
from ctl_jax.train.loop import TrainConfig  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
PRESETS = {
    "cpu": dict(steps=3000, batch_size=4, patch_size=64, lr=1e-3, lr_milestones=[2000], lr_gamma=0.2, log_every=50,
                ckpt_every=500, style_side=128, test_size=256),
    "smoke": dict(steps=3, batch_size=2, patch_size=32, lr=1e-3, lr_milestones=[], lr_gamma=0.1, log_every=1,
                  ckpt_every=3, style_side=40, test_size=48),
}
INTERPOLATION_STYLES = ("candy", "starry_night", "the_scream", "wave")


def _data(preset: str, held_out: str):
    """(content crops' images, {style name: image}, [(content name, image)] for the figures)."""
    side = PRESETS[preset]["style_side"]
    if preset == "smoke":
        photos = bundled_images("train", 3)
        styles = {f"bundled_{k}": resize_longer_side(im, side) for k, im in enumerate(bundled_images("test", 3))}
        return photos, styles, [("photo", photos[0])]
    photos = load_folder(SHARED / "train" / "bsds400", 3, min_size=PRESETS[preset]["patch_size"])
    styles = {p.stem: read_style_image(str(p), side) for p in sorted((SHARED / "style" / "styles").glob("*.jpg"))}
    if held_out not in styles:
        raise ValueError(f"no style {held_out!r} to hold out; styles are {sorted(styles)}")
    contents = [(pathlib.Path(path).stem, image) for path, image in iter_folder(SHARED / "style" / "content", 3)]
    return photos, styles, contents




def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run folder (resumed if it exists)")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--loss-net", default="random", help="'random' (offline default) or vgg19:PATH / vgg16:PATH")
    parser.add_argument("--style-weight", type=float, default=10.0, help="lambda of the training loss")
    parser.add_argument("--identity-weight", type=float, default=0.0,
                        help="weight of the identity term |g(f(c)) - c| (0: the paper's loss)")
    parser.add_argument("--layer", default="relu4_1", help="the encoder layer (relu4_1 in the paper)")
    parser.add_argument("--held-out", default="udnie", help="a style left out of training")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    settings = dict(PRESETS[args.preset])
    style_side, test_size = settings.pop("style_side"), settings.pop("test_size")
    train = TrainConfig(**settings, seed=0)
    photos, styles, contents = _data(args.preset, args.held_out)
    held = styles.pop(args.held_out if args.preset != "smoke" else sorted(styles)[-1])
    out = pathlib.Path(args.out)
    config = AdaINConfig(loss_net=args.loss_net, layer=args.layer, style_weight=args.style_weight,
                         identity_weight=args.identity_weight)
    model = train_adain(PatchSampler(photos, train.patch_size, train.batch_size, seed=0),
                        PatchSampler(list(styles.values()), train.patch_size, train.batch_size, seed=1),
                        out / "decoder", config, train)

    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    corners = [styles[n] for n in INTERPOLATION_STYLES if n in styles] or list(styles.values())[:4]
    corners = (corners * 4)[:4]
    reconstruction = []  # alpha 0 should give the photo back: PSNR of the decoded content features
    for name, image in contents:
        content = crop_to_multiple(resize_longer_side(image, test_size), model.multiple)
        reconstruction.append(float(psnr(quantise(model.stylise(content, [held], alpha=0.0)), content)))
        image_strip([model.stylise(content, [held], alpha=a) for a in alphas], alphas,
                    report / f"tradeoff_{name}.png", degraded=content, input_caption="content",
                    labels=[f"α = {a:g}" for a in alphas], title=f"AdaIN, unseen style {args.held_out}: content-style trade-off")
        grid = []
        for u in (0.0, 0.5, 1.0):
            for v in (0.0, 0.5, 1.0):
                weights = [(1 - u) * (1 - v), (1 - u) * v, u * (1 - v), u * v]
                grid.append(model.stylise(content, corners, weights=weights))
        rows = [np.concatenate(grid[3 * r:3 * r + 3], axis=1) for r in range(3)]
        write_image(report / f"interpolation_{name}.png", np.concatenate(rows, axis=0), overwrite=True)
    losses = [json.loads(line)["loss"] for line in (out / "decoder" / "metrics.jsonl").read_text().splitlines()]
    write_text_atomic(report / "adain.md",
        f"# AdaIN at CPU scale\n\n`python experiments/adain.py --out {args.out} --preset {args.preset} "
        f"--loss-net {args.loss_net} --style-weight {args.style_weight:g} --identity-weight {args.identity_weight:g} "
        f"--layer {args.layer}`\n\n"
        f"Decoder trained {train.steps} steps (batch {train.batch_size}, {train.patch_size}-pixel crops, lr {train.lr:g}) "
        f"on {len(photos)} content images and {len(styles)} styles (longer side {style_side}); held out: "
        f"{args.held_out}. Loss {losses[0]:.3g} at the first log, {losses[-1]:.3g} at the last. "
        f"Wall time {time.perf_counter() - start:.0f} s (training resumed if it was there).\n\n"
        f"Reconstruction at alpha 0 (the content's own features decoded), PSNR against the content: "
        + ", ".join(f"{n} {v:.2f} dB" for (n, _), v in zip(contents, reconstruction))
        + f"; mean {np.mean(reconstruction):.2f} dB.\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
