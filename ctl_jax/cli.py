"""The ``ctl-jax`` command: run, train, tune, sweep and apply continuous-level models.

    ctl-jax run   --config experiments/demo.py --out runs/demo          the whole story
    ctl-jax train --config experiments/demo.py --workdir runs/base      stage 1 (level A)
    ctl-jax tune  --config experiments/demo.py --base runs/base --method ftn-gc16 --workdir runs/ftn
    ctl-jax sweep --model runs/ftn --levels 20 40 60 80 --out runs/ftn_sweep
    ctl-jax apply --model runs/ftn --input noisy.png --output clean.png --alpha 0.3
    ctl-jax apply --model runs/ftn --input noisy.png --output out.png --alpha-map mask.png

Configs are Python files whose ``get_config(preset)`` returns a dict (``experiments/``); pick a
preset with ``--config file.py:preset`` and override any value with ``--set stage1.steps=100``.
Everything resumes from its checkpoints when re-run with the same output folder.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import pathlib
import sys

import numpy as np


def load_config(spec: str, overrides=()) -> dict:
    """``path.py[:preset]`` -> the dict its ``get_config(preset)`` returns, with ``key.sub=value`` overrides."""
    from ctl_jax.pipeline import merge_overrides

    path, _, preset = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise SystemExit(f"ctl-jax: no config file {path!r}")
    module_spec = importlib.util.spec_from_file_location(f"ctl_jax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(preset) if preset else module.get_config()
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"ctl-jax: --set expects key=value; got {item!r}")
        try:
            parsed[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key] = value  # a bare string such as a folder path
    try:
        return merge_overrides(config, parsed)
    except KeyError as err:
        raise SystemExit(f"ctl-jax: {err.args[0]}") from None


def _with_data_dir(config: dict, data_dir: str | None) -> dict:
    """``--data-dir D`` points training at D/train and testing at D/test (or D itself for both)."""
    if data_dir:
        root = pathlib.Path(data_dir)
        train, test = root / "train", root / "test"
        config["data"]["train"] = str(train if train.is_dir() else root)
        config["data"]["test"] = str(test if test.is_dir() else root)
    return config


def cmd_run(args) -> None:
    from ctl_jax.pipeline import run_experiment

    config = _with_data_dir(load_config(args.config, args.set), args.data_dir)
    run_experiment(config, args.out)


def cmd_train(args) -> None:
    from ctl_jax.data.degrade import Degradation
    from ctl_jax.nets.registry import NetworkSpec
    from ctl_jax.pipeline import train_sampler
    from ctl_jax.train.trainer import TrainConfig, train_base

    config = _with_data_dir(load_config(args.config, args.set), args.data_dir)
    spec = NetworkSpec(**config["network"])
    train_base(spec, train_sampler(config["data"], spec.channels, config["stage1"]),
               Degradation(**config["degradation"]), args.workdir, TrainConfig(**config["stage1"]))


def cmd_tune(args) -> None:
    from ctl_jax.data.degrade import Degradation
    from ctl_jax.nets.registry import NetworkSpec
    from ctl_jax.pipeline import train_sampler
    from ctl_jax.train.trainer import TrainConfig, train_tuner

    config = _with_data_dir(load_config(args.config, args.set), args.data_dir)
    spec = NetworkSpec(**config["network"])
    train_tuner(spec, args.method, args.base, train_sampler(config["data"], spec.channels, config["stage2"]),
                Degradation(**config["degradation"]), args.workdir, TrainConfig(**config["stage2"]))


def cmd_sweep(args) -> None:
    from ctl_jax.data.degrade import Degradation
    from ctl_jax.eval.report import write_report
    from ctl_jax.eval.sweep import sweep
    from ctl_jax.pipeline import load_tuned, test_images

    results = {}
    for model_dir in args.model:
        model, tuner, theta0, phi, meta = load_tuned(model_dir)
        degradation = Degradation(**meta["degradation"])
        data = {"test": args.data or "bundled", "test_crop": args.crop, "max_test_images": args.max_images}
        images, names = test_images(data, model.channels)
        levels = args.levels or [degradation.level_a, degradation.level_b]
        name = pathlib.Path(model_dir).name
        results[name] = sweep(model, tuner, theta0, phi, images, degradation, levels, np.linspace(0, 1, args.alphas),
                              seed=args.seed, border=args.border, name=name, image_names=names)
    first = next(iter(results.values()))
    paths = write_report(first, args.out, title=args.title, method_results=results)
    print(paths["markdown"])


def cmd_apply(args) -> None:
    import jax.numpy as jnp

    from ctl_jax.data import read_image, write_image
    from ctl_jax.pipeline import load_tuned
    from ctl_jax.tuning import apply_tuned

    output = pathlib.Path(args.output)
    if output.exists() and not args.overwrite:
        raise SystemExit(f"ctl-jax: {output} exists; pass --overwrite to replace it")
    if (args.alpha is None) == (args.alpha_map is None):
        raise SystemExit("ctl-jax: give exactly one of --alpha and --alpha-map")
    model, tuner, theta0, phi, _ = load_tuned(args.model)
    image = read_image(args.input, model.channels)
    h, w = image.shape[:2]
    multiple = 2  # AdaFM-Net's stride-2 body; edge-pad odd sizes and crop back afterwards
    padded = np.pad(image, ((0, -h % multiple), (0, -w % multiple), (0, 0)), mode="edge")
    if args.alpha_map:
        alpha = _read_alpha_map(args.alpha_map, padded.shape[:2])
    else:
        alpha = args.alpha
    restored = apply_tuned(model, tuner, theta0, phi, jnp.asarray(padded)[None], alpha)[0, :h, :w]
    write_image(output, np.clip(np.asarray(restored), 0.0, 1.0), overwrite=args.overwrite)
    print(output)


def _read_alpha_map(path, size) -> np.ndarray:
    """A greyscale image file -> alpha map in [0, 1] (black 0, white 1), resized to ``size`` (H, W).

    Rule: the map is resized to the (padded) image size with bilinear interpolation; each layer
    then sees it resized again to its own resolution. Colour images are refused (ambiguous).
    """
    from PIL import Image

    from ctl_jax.data import read_image

    with Image.open(path) as im:
        if im.mode not in ("L", "I;16", "I", "F", "1", "LA"):
            raise SystemExit(f"ctl-jax: the alpha map {path} must be a greyscale image (mode L); it is {im.mode}")
    amap = read_image(path, 1)[..., 0]
    if amap.shape != tuple(size):
        amap = np.asarray(Image.fromarray(amap).resize((size[1], size[0]), Image.BILINEAR))
    return amap


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctl-jax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p, needs_config=True):
        p.add_argument("--config", required=needs_config,
                       help="experiment file, optionally with a preset: experiments/demo.py[:cpu|paper]")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set stage1.steps=200 (repeatable)")
        p.add_argument("--data-dir", help="training images in DIR/train and test images in DIR/test "
                       "(or DIR for both); default: the config's data (bundled sample photos)")

    p = sub.add_parser("run", help="train the base, tune every method, sweep alpha, write the report",
                       description="Stage 1, stage 2 for each method of the config, alpha sweeps at the "
                                   "config's levels, and a report folder OUT/report. Re-running resumes.")
    config_args(p)
    p.add_argument("--out", required=True, help="output folder (runs, checkpoints and report)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="stage 1: train the base network at level A")
    config_args(p)
    p.add_argument("--workdir", required=True, help="run folder (checkpoints, metrics.jsonl); resumes if present")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="stage 2: train a tuner at level B on a frozen base")
    config_args(p)
    p.add_argument("--base", required=True, help="the stage-1 run folder")
    p.add_argument("--method", required=True,
                   help="ftn, ftn-gc4, ftn-gc16, ftn-deeper, ftn-spatial, adafm or dni")
    p.add_argument("--workdir", required=True, help="run folder for the tuner; resumes if present")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("sweep", help="evaluate tuned models over an alpha grid and write a report")
    p.add_argument("--model", required=True, action="append", help="stage-2 run folder (repeat to compare)")
    p.add_argument("--levels", type=float, nargs="+", help="degradation levels (default: the training levels)")
    p.add_argument("--alphas", type=int, default=11, help="number of alphas evenly spaced in [0, 1]")
    p.add_argument("--data", help="folder of clean test images (default: the bundled test photos)")
    p.add_argument("--crop", type=int, default=None, help="centre-crop test images to this size")
    p.add_argument("--max-images", type=int, default=None, help="use at most this many test images")
    p.add_argument("--border", type=int, default=0, help="pixels cropped from each side before metrics")
    p.add_argument("--seed", type=int, default=0, help="seed of the degraded inputs")
    p.add_argument("--title", default="alpha sweep", help="report title")
    p.add_argument("--out", required=True, help="report folder")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("apply", help="restore one image at a global alpha or with a per-pixel alpha map")
    p.add_argument("--model", required=True, help="stage-2 (or stage-1) run folder")
    p.add_argument("--input", required=True, help="degraded image (PNG, JPEG, BMP, TIFF; grey, RGB or RGBA)")
    p.add_argument("--output", required=True, help="output image path (.png or .jpg)")
    p.add_argument("--alpha", type=float, help="global control value (0 = level A, 1 = level B; outside extrapolates)")
    p.add_argument("--alpha-map", help="greyscale image: black = alpha 0, white = alpha 1, per pixel; "
                   "resized bilinearly to the input size")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_apply)
    return parser


def main(argv=None) -> int:
    from ctl_jax.train.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as err:
        print(f"ctl-jax: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
