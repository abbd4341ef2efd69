"""The ``ctl-jax`` command: run, train, tune, sweep and apply continuous-level models.

    ctl-jax run   --config experiments/demo.py --out runs/demo          the whole story
    ctl-jax train --config experiments/demo.py --workdir runs/base      stage 1 (level A)
    ctl-jax tune  --config experiments/demo.py --base runs/base --method ftn-gc16 --workdir runs/ftn
    ctl-jax sweep --model runs/ftn --levels 20 40 60 80 --out runs/ftn_sweep
    ctl-jax apply --model runs/ftn --input noisy.png --output clean.png --alpha 0.3
    ctl-jax apply --model runs/ftn --input noisy.png --output out.png --alpha-map mask.png
    ctl-jax import --weights sigma=15.mat --levels 15 50 --workdir runs/dncnn15   a pretrained base

Decoupled learning (a hypernetwork imitating parameterised operators):

    ctl-jax prepare-ops --operators l0 wls --grid 8 --out runs/ops_cache
    ctl-jax train-ops --config experiments/operators.py --cache runs/ops_cache --workdir runs/l0_hyper
    ctl-jax apply --model runs/l0_hyper --input photo.png --output smooth.png --operator l0 --param 0.02

Image optimisation (the image is what is trained; no model folder):

    ctl-jax stylize --content photo.jpg --style starry_night.jpg --alphas 0.25 0.5 0.75 --out styled.png
    ctl-jax dream --image photo.jpg --layer relu3_1 --out dream.png

Arbitrary style transfer with an AdaIN decoder (trained by experiments/adain.py):

    ctl-jax adain --model runs/adain/decoder --content photo.jpg --style wave.jpg --alpha 0.7 --out adain.png

Configs are Python files whose ``get_config(preset)`` returns a dict (``experiments/``); pick a
preset with ``--config file.py:preset`` and override any value with ``--set stage1.steps=100``.
Everything resumes from its checkpoints when re-run with the same output folder.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from ctl_jax.config import load_config


def _with_data_dir(config: dict, data_dir: str | None, overrides=()) -> dict:
    """``--data-dir D`` points training at D/train and testing at D/test (or D itself for both);
    an explicit ``--set data.train=...`` / ``data.test=...`` wins."""
    if data_dir:
        root = pathlib.Path(data_dir)
        explicit = {item.partition("=")[0] for item in overrides}
        for split in ("train", "test"):
            if f"data.{split}" not in explicit:
                config["data"][split] = str(root / split if (root / split).is_dir() else root)
    return config


def _allowing_changes(config: dict, args, stages=("stage1", "stage2")) -> dict:
    """--allow-changed-settings: the stages' TrainConfigs accept resumes with other settings."""
    if args.allow_changed_settings:
        for stage in stages:
            config[stage]["allow_changes"] = True
    return config


def _use_every_core(config: dict, stages) -> dict:
    """On a CPU, one XLA device per core (``ctl_jax.train.cpu_devices``), as many as divide the
    stages' batch sizes; before anything runs JAX."""
    from ctl_jax.train.cpu_devices import split_cpu_into_cores
    from ctl_jax.train.loop import TrainConfig

    default = TrainConfig.batch_size
    split_cpu_into_cores([config.get(stage, {}).get("batch_size", default) for stage in stages])
    return config


def cmd_run(args) -> None:
    from ctl_jax.pipeline import run_experiment
    from ctl_jax.train.lock import workdir_lock

    config = _with_data_dir(load_config(args.config, args.set), args.data_dir, args.set)
    _use_every_core(config, ("stage1", "stage2"))
    with workdir_lock(args.out):
        run_experiment(_allowing_changes(config, args), args.out)


def _parts(args):
    from ctl_jax.nets.registry import NetworkSpec
    from ctl_jax.tasks import make_task

    config = _with_data_dir(load_config(args.config, args.set), args.data_dir, args.set)
    return config, NetworkSpec(**config["network"]), make_task(config["task"])


def cmd_train(args) -> None:
    from ctl_jax.pipeline import train_sampler
    from ctl_jax.train.loop import TrainConfig
    from ctl_jax.train.supervised import train_base

    config, spec, task = _parts(args)
    config = _allowing_changes(_use_every_core(config, ("stage1",)), args, ("stage1",))
    train_base(spec, task, train_sampler(config["data"], spec.channels, config["stage1"]), args.workdir,
               TrainConfig(**config["stage1"]))


def cmd_tune(args) -> None:
    from ctl_jax.pipeline import stage2_settings, train_sampler
    from ctl_jax.train.loop import TrainConfig
    from ctl_jax.train.supervised import train_tuner
    from ctl_jax.tuners import make_tuner

    config, spec, task = _parts(args)
    config = _allowing_changes(_use_every_core(config, ("stage2",)), args, ("stage2",))
    tuner = make_tuner(args.method)
    if tuner.stages == 2 and not args.base:
        raise ValueError(f"{tuner.name} tunes a trained base: give its run folder with --base")
    train_tuner(tuner, task, train_sampler(config["data"], spec.channels, config["stage2"]), args.workdir,
                TrainConfig(**stage2_settings(config, tuner.name)), base_workdir=args.base, spec=spec)


def cmd_sweep(args) -> None:
    from ctl_jax.train.lock import workdir_lock

    with workdir_lock(args.out):  # one writer per report folder
        _sweep_into(args, pathlib.Path(args.out))


def _sweep_into(args, out: pathlib.Path) -> None:
    from ctl_jax.eval.report import write_report
    from ctl_jax.eval.sweep import sweep
    from ctl_jax.pipeline import test_images
    from ctl_jax.train.runs import load_run

    if (out / "sweep.md").exists() and not args.overwrite:
        raise FileExistsError(f"{out} already holds a report; pass --overwrite to replace it")
    models = [load_run(model_dir) for model_dir in args.model]
    styles = [m.task.name == "style" for m in models]
    if any(styles):
        if not all(styles):
            raise ValueError("--model mixes style networks with restoration ones; sweep them separately")
        return _style_sweep_into(args, out, models)
    results = {}
    for model in models:
        data = {"test": args.data or "bundled", "test_crop": args.crop, "max_test_images": args.max_images}
        images, names = test_images(data, model.channels)
        levels = _levels_of(args.levels, model.task)
        axis = np.asarray(args.alphas, np.float64) if args.alphas else np.linspace(0, 1, args.alpha_count)
        alphas = np.stack([m.ravel() for m in np.meshgrid(*[axis] * model.control_dim, indexing="ij")], axis=1)
        results[model.name] = sweep(model, images, levels, alphas, seed=args.seed, border=args.border,
                                    image_names=names)
    first = next(iter(results.values()))
    paths = write_report(first, args.out, title=args.title, method_results=results)
    print(paths["markdown"])


def _style_sweep_into(args, out: pathlib.Path, models) -> None:
    """Style networks have no degradation and no PSNR: the style losses against A and B and the
    content loss across alpha (``ctl_jax.eval.style``) on the --data content images."""
    from ctl_jax.eval.style import style_curves, summary_table, write_curve_files
    from ctl_jax.files import write_text_atomic
    from ctl_jax.pipeline import test_images

    if args.levels:
        raise ValueError("style networks have no degradation levels; give --alphas or --alpha-count only")
    images, names = test_images({"test": args.data or "bundled", "test_crop": args.crop,
                                 "max_test_images": args.max_images}, 3)
    alphas = np.asarray(args.alphas, np.float64) if args.alphas else np.linspace(0, 1, args.alpha_count)
    curves = {m.name: style_curves(m, m.task, images, alphas) for m in models}
    out.mkdir(parents=True, exist_ok=True)
    has_ends = all(np.isclose(alphas, a).any() for a in (0.0, 1.0))
    text = [f"# {args.title or 'style sweep'}", "", f"Content images: {', '.join(names)}.", "",
            *(["## Summary", "", summary_table(curves, None), ""] if has_ends else []),
            *write_curve_files(curves, out, title=args.title)]
    write_text_atomic(out / "sweep.md", "\n".join(text) + "\n")
    print(out / "sweep.md")


def _levels_of(tokens, task) -> np.ndarray:
    """--levels tokens ("20" or "20,30") -> (L, D); default: 4 levels evenly spaced from A to B."""
    if not tokens:
        return np.linspace(np.asarray(task.level_a), np.asarray(task.level_b), 4)
    try:
        rows = [[float(v) for v in t.split(",")] for t in tokens]
    except ValueError:
        raise ValueError(f"--levels takes numbers, or comma-separated tuples for D > 1; got {tokens}") from None
    return task.check_levels(rows)


def cmd_prepare_ops(args) -> None:
    from ctl_jax.data.images import check_channels
    from ctl_jax.data.operator_pairs import check_positive_int, prepare_operator_cache
    from ctl_jax.operators import get_operator
    from ctl_jax.pipeline import test_images

    for option in ("crop", "per_image", "grid", "max_images"):  # before any image is read or folder made
        if getattr(args, option) is not None:
            check_positive_int("--" + option.replace("_", "-"), getattr(args, option))
    check_channels(args.channels)
    for name in args.operators:
        get_operator(name)
    images, names = test_images({"test": args.data or "bundled-train", "max_test_images": args.max_images},
                                args.channels)
    print(prepare_operator_cache(images, names, args.operators, args.out, per_image=args.per_image,
                                 crop=args.crop, seed=args.seed, grid=args.grid))


def cmd_import(args) -> None:
    from ctl_jax.tasks import make_task
    from ctl_jax.train.imported import import_run

    task = make_task({"kind": "restoration", "degradations": [args.degradation], "level_a": [args.levels[0]],
                      "level_b": [args.levels[1]]})
    model = import_run(args.weights, task, args.workdir)
    print(f"{args.workdir}: {model.meta.spec.name} ({model.meta.spec.variant}), {model.meta.stage} run for "
          f"{task.label(task.level_a)} -> {task.label(task.level_b)}")


def cmd_train_ops(args) -> None:
    from ctl_jax.operator_pipeline import train_operator_model

    config = _allowing_changes(load_config(args.config, args.set), args, ("train",))
    train_operator_model(config, args.cache, args.workdir)


def cmd_apply(args) -> None:
    """Everything given is checked before the model is loaded or run: the output path, the
    control values, the input image and the alpha map."""
    import jax

    from ctl_jax.data.images import convert_pil, is_grey, open_image, write_image
    from ctl_jax.eval.sweep import quantise
    from ctl_jax.memory import check_fits
    from ctl_jax.train.runs import load_run

    output = _checked_output(args.output, args.overwrite)
    _check_control_args(args)
    picture = open_image(args.input)
    h, w = picture.height, picture.width
    alpha_map = _read_alpha_map(args.alpha_map, (h, w)) if args.alpha_map else None
    model = load_run(args.model)
    image = convert_pil(picture, model.channels)
    colour_input = not is_grey(picture)
    if colour_input != (model.channels == 3):
        print(f"note: {args.model} is a {'grey' if model.channels == 1 else 'colour'} network; the "
              f"{'colour' if colour_input else 'grey'} input was converted to {'grey' if model.channels == 1 else 'RGB'}",
              file=sys.stderr)
    # the image runs whole: edge-pad to the network's input multiple, crop the output back
    multiple = model.meta.spec.input_multiple
    pad = ((0, -h % multiple), (0, -w % multiple))
    padded = np.pad(image, (*pad, (0, 0)), mode="edge")
    if alpha_map is not None:
        alpha_map = np.pad(alpha_map, pad, mode="edge")
    control = _control_of(args, model, alpha_map)
    forward = jax.jit(lambda x: model(x, control)).lower(padded[None]).compile()  # compiled, not yet run
    check_fits(forward, h * w, f"the {w}x{h} input")
    result = np.asarray(quantise(forward(padded[None])))[0]
    scale_h, scale_w = result.shape[0] / padded.shape[0], result.shape[1] / padded.shape[1]
    try:
        write_image(output, result[:round(h * scale_h), :round(w * scale_w)], overwrite=args.overwrite)
    except FileExistsError:  # made by someone else while the model ran
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it") from None
    print(output)


def _checked_output(path: str, overwrite: bool) -> pathlib.Path:
    """The output path of ``apply``, refused before any work when it cannot be written: a suffix
    ``write_image`` does not know, a folder, an existing file (or link, even a dangling one)
    without --overwrite, a missing or read-only parent folder."""
    from ctl_jax.data.images import check_output_suffix
    from ctl_jax.files import check_writable_folder

    output = pathlib.Path(path)
    check_output_suffix(output)
    if output.is_dir():
        raise IsADirectoryError(f"the output {output} is a folder; give a file name such as {output / 'out.png'}")
    if (output.exists() or output.is_symlink()) and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    check_writable_folder(output.parent, f"the output {output}")
    return output


def _check_control_args(args) -> None:
    """Exactly one of --alpha, --alpha-map and --level; --alpha values finite and within
    +-MAX_ABS_CONTROL (checked again, with --level's values, once the model is known)."""
    from ctl_jax.eval.sweep import check_control_range

    given = [o for o in ("alpha", "alpha_map", "level") if getattr(args, o) is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of --alpha, --alpha-map and --level")
    check_control_range(args.alpha or [])


def _control_of(args, model, alpha_map):
    """The control of ``apply``: --alpha (one value per control dimension), the --alpha-map read by
    :func:`_read_alpha_map`, or --level (degradation levels, mapped linearly: (L - A) / (B - A))."""
    from ctl_jax import Control
    from ctl_jax.eval.sweep import check_control_range

    if alpha_map is not None:
        if model.control_dim != 1:
            raise ValueError(f"this model takes {model.control_dim}-dimensional control; an alpha map gives one value")
        return Control.per_pixel(alpha_map)
    operators = getattr(model.task, "operators", None)
    if args.operator is not None and operators is None:
        raise ValueError("--operator is for operator models (train-ops); this model restores degradations")
    values = args.alpha
    if values is None and operators is not None:
        values = model.task.control_for(args.level, args.operator, clamp=args.clamp)
    elif values is None:
        values = np.ravel(model.task.control_for(model.task.check_levels(args.level)))
    if len(values) != model.control_dim:
        raise ValueError(f"this model takes {model.control_dim} control value(s); got {len(values)}")
    check_control_range(values)
    outside = [v for v in np.ravel(values) if not 0.0 <= v <= 1.0]
    if outside and model.tuner is not None:
        print(f"note: control {', '.join(f'{v:g}' for v in outside)} lies outside [0, 1], the span of the levels the "
              f"model was trained for ({model.task.label(model.task.level_a)} .. {model.task.label(model.task.level_b)}): "
              f"it extrapolates", file=sys.stderr)
    return Control.vector(np.asarray(values, np.float32))


def _read_alpha_map(path, size) -> np.ndarray:
    """A greyscale image file -> alpha map in [0, 1] (black 0, white 1), resized to ``size`` (H, W).

    Rule: the map is resized to the image size with bilinear interpolation (and edge-padded with
    the image); each layer then sees it resized again to its own resolution. Colour images are
    refused (ambiguous), and so are files that are not images (empty, other bytes, a folder), each
    in a one-line error.
    """
    from PIL import Image

    from ctl_jax.data.images import UnreadableImageError, convert_pil, open_image

    try:
        picture = open_image(path)
    except UnreadableImageError as err:
        raise UnreadableImageError(f"the alpha map {path} is not an image file Pillow can read "
                                   f"({str(err.__cause__).splitlines()[0] if err.__cause__ else err})") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"the alpha map {path} is a folder, not an image file") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"the alpha map {path} does not exist") from None
    if picture.mode not in ("L", "I;16", "I", "F", "1", "LA"):
        raise ValueError(f"the alpha map {path} must be a greyscale image (mode L); it is {picture.mode}")
    amap = convert_pil(picture, 1)[..., 0]
    if amap.shape != tuple(size):
        amap = np.asarray(Image.fromarray(amap).resize((size[1], size[0]), Image.BILINEAR))
    return amap


# -- image optimisation: Gatys style transfer and Deep Dream --------------------------------------

def _optimisation_input(path: str, what: str, size: int) -> np.ndarray:
    """An image file as float32 RGB (H, W, 3) in [0, 1] with its longer side resized to ``size``
    (Lanczos, antialiased, both ways); grey files are replicated to RGB and an alpha channel is
    composited over white (as ``read_image`` does for every command), each with a note on stderr."""
    import jax

    from ctl_jax.data.images import _has_alpha, convert_pil, is_grey, open_image

    try:
        picture = open_image(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"the {what} {path} does not exist") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"the {what} {path} is a folder, not an image file") from None
    except ValueError as err:
        raise ValueError(f"the {what} {path} is not an image file Pillow can read "
                         f"({str(err.__cause__).splitlines()[0] if err.__cause__ else err})") from None
    if is_grey(picture):
        print(f"note: the {what} {path} is grey; it is used as RGB (grey in R, G and B)", file=sys.stderr)
    if _has_alpha(picture):
        print(f"note: the {what} {path} has an alpha channel; it is composited over white", file=sys.stderr)
    image = convert_pil(picture, 3)
    h, w = image.shape[:2]
    scale = size / max(h, w)
    shape = (max(1, round(h * scale)), max(1, round(w * scale)), 3)
    if shape != image.shape:
        image = np.clip(np.asarray(jax.image.resize(image, shape, "lanczos3", antialias=True)), 0.0, 1.0)
    return image.astype(np.float32)


def _loss_network(spec: str):
    from ctl_jax.losses.perceptual import make_loss_network

    try:
        return make_loss_network(spec)
    except ImportError as err:
        raise ValueError(f"the loss network {spec!r} is not available in this installation ({err})") from None


def _check_positive(option: str, value, zero: bool = False) -> None:
    if not np.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{option} must be {'>= 0' if zero else '> 0'}; got {value}")


def _strip(images, gap: int = 4) -> np.ndarray:
    """Images side by side at the first one's height (others resized), white gaps between."""
    import jax

    height = images[0].shape[0]
    row = []
    for image in images:
        if image.shape[0] != height:
            width = max(1, round(image.shape[1] * height / image.shape[0]))
            image = np.clip(np.asarray(jax.image.resize(image, (height, width, 3), "lanczos3", antialias=True)), 0, 1)
        row += [image, np.ones((height, gap, 3), np.float32)]
    return np.concatenate(row[:-1], axis=1)


def _styling_alphas_and_outputs(args, alpha: float, meaning: str) -> tuple[list, list]:
    """The alphas of ``stylize`` / ``adain`` (``--alphas``, else ``alpha``) and their output paths (one
    file, or one per alpha and the strip, named after ``--out``), checked with the style weights and
    ``--size`` before anything is read."""
    from ctl_jax.classical.gatys import style_mix_weights

    alphas = args.alphas if args.alphas is not None else [alpha]
    bad = [a for a in alphas if not 0.0 <= a <= 1.0]
    if bad:
        raise ValueError(f"alpha must lie in [0, 1] ({meaning}); got {bad}")
    if len(set(alphas)) != len(alphas):
        raise ValueError(f"--alphas holds a value twice: {alphas}")
    style_mix_weights(len(args.style), args.style_weights)
    _check_positive("--size", args.size)
    if args.alphas is None:
        return alphas, [_checked_output(args.out, args.overwrite)]
    out = pathlib.Path(args.out)
    names = [f"{out.stem}_alpha{a:g}{out.suffix}" for a in alphas] + [f"{out.stem}_strip{out.suffix}"]
    return alphas, [_checked_output(str(out.with_name(name)), args.overwrite) for name in names]


def cmd_stylize(args) -> None:
    """Everything given is checked before any image is read or optimised: the output paths, the
    alphas, the style weights, the numbers; then the images and the loss network."""
    from ctl_jax.classical.gatys import stylize
    from ctl_jax.data.images import write_image

    alphas, outputs = _styling_alphas_and_outputs(args, 0.5 if args.alpha is None else args.alpha,
                                                  "0 content only, 1 style only")
    _check_positive("--steps", args.steps, zero=True)
    content = _optimisation_input(args.content, "content image", args.size)
    styles = [_optimisation_input(path, "style image", args.size) for path in args.style]
    net = _loss_network(args.loss_net)
    results = [stylize(content, styles, style_weights=args.style_weights, alpha=a, loss_net=net, steps=args.steps,
                       optimizer=args.optimizer, lr=args.lr, content_weight=args.content_weight,
                       style_weight=args.style_weight, tv_weight=args.tv_weight, init=args.init, seed=args.seed,
                       progress=True)[0] for a in alphas]
    if args.alphas is not None:
        results.append(_strip([content] + results + styles))
    for path, image in zip(outputs, results):
        try:
            write_image(path, image, overwrite=args.overwrite)
        except FileExistsError:  # made by someone else while the optimisation ran
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it") from None
        print(path)


def cmd_adain(args) -> None:
    """Outputs, alphas and weights are checked first; then the model, the images, and the styling."""
    from ctl_jax.classical.adain import load_adain
    from ctl_jax.data.images import write_image
    from ctl_jax.eval.sweep import crop_to_multiple

    alphas, outputs = _styling_alphas_and_outputs(args, args.alpha, "0 the content reconstructed, 1 full style")
    model = load_adain(args.model)
    content = _optimisation_input(args.content, "content image", args.size)
    cropped = crop_to_multiple(content, model.multiple)
    if cropped.shape != content.shape:
        print(f"note: the content image is cropped from {content.shape[1]}x{content.shape[0]} to "
              f"{cropped.shape[1]}x{cropped.shape[0]} (sides must be multiples of {model.multiple})", file=sys.stderr)
    styles = [_optimisation_input(path, "style image", args.size) for path in args.style]
    results = [model.stylise(cropped, styles, weights=args.style_weights, alpha=a) for a in alphas]
    if args.alphas is not None:
        results.append(_strip([cropped] + results + styles))
    for path, image in zip(outputs, results):
        write_image(path, image, overwrite=args.overwrite)
        print(path)


def cmd_dream(args) -> None:
    """The output path, the numbers, the image and the layer are checked before any step runs."""
    from ctl_jax.classical.deep_dream import check_layer, dream
    from ctl_jax.data.images import write_image

    output = _checked_output(args.out, args.overwrite)
    _check_positive("--size", args.size)
    _check_positive("--strength", args.strength)
    _check_positive("--steps", args.steps, zero=True)
    _check_positive("--octaves", args.octaves)
    _check_positive("--jitter", args.jitter, zero=True)
    if not args.octave_scale > 1:
        raise ValueError(f"--octave-scale must be > 1; got {args.octave_scale}")
    image = _optimisation_input(args.image, "image", args.size)
    net = _loss_network(args.loss_net)
    check_layer(net, args.layer)
    result = dream(image, loss_net=net, layer=args.layer, strength=args.strength, steps=args.steps,
                   octaves=args.octaves, octave_scale=args.octave_scale, jitter=args.jitter, seed=args.seed,
                   progress=True)
    try:
        write_image(output, result, overwrite=args.overwrite)
    except FileExistsError:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it") from None
    print(output)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctl-jax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def allow_changes_arg(p):
        p.add_argument("--allow-changed-settings", action="store_true",
                       help="resume a run although its training settings (lr, seed, batch or patch size, ...) "
                            "changed; the run's meta records each change in its history")

    def styling_args(p, several: str, alpha_default, alpha_help: str):
        """--content, --style (repeatable), --style-weights and --alpha | --alphas of stylize and adain
        (checked by ``_styling_alphas_and_outputs``)."""
        p.add_argument("--content", required=True, help="content image (PNG, JPEG, BMP, TIFF; grey, RGB or RGBA)")
        p.add_argument("--style", required=True, action="append", help=f"style image (repeat to {several})")
        p.add_argument("--style-weights", type=float, nargs="+", metavar="W",
                       help="one weight per --style, normalised to sum to 1 (default: equal)")
        alpha = p.add_mutually_exclusive_group()
        alpha.add_argument("--alpha", type=float, default=alpha_default, help=alpha_help)
        alpha.add_argument("--alphas", type=float, nargs="+", metavar="A",
                           help="several alphas: writes OUT_alpha<A> per value and OUT_strip (content, results, styles)")

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
    allow_changes_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="stage 1: train the base network at level A")
    config_args(p)
    p.add_argument("--workdir", required=True, help="run folder (checkpoints, metrics.jsonl); resumes if present")
    allow_changes_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="stage 2: train a tuner at level B on a frozen base")
    config_args(p)
    p.add_argument("--base", required=True, help="the stage-1 run folder")
    p.add_argument("--method", required=True,
                   help="ftn, ftn-gc4, ftn-gc16, ftn-deeper, ftn-spatial, adafm or dni")
    p.add_argument("--workdir", required=True, help="run folder for the tuner; resumes if present")
    allow_changes_arg(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("import", help="a pretrained MAT-file (DnCNN, FFDNet) as a run folder",
                       description="Writes the authors' MatConvNet network as a run folder: DnCNN as a base at "
                                   "level A (then `ctl-jax tune --base DIR`), FFDNet as a conditional run whose "
                                   "control 0..1 spans levels A..B (then `apply --level S` or a sigma map).")
    p.add_argument("--weights", required=True, help="MatConvNet MAT-file, e.g. dncnn_matconvnet/sigma=15.mat")
    p.add_argument("--levels", required=True, type=float, nargs=2, metavar=("A", "B"),
                   help="the task's levels: the base's own level and the tuning target (DnCNN: 15 50), or "
                        "the range the control spans (FFDNet: 0 75)")
    p.add_argument("--degradation", default="noise", help="the task's degradation (noise, jpeg, ...)")
    p.add_argument("--workdir", required=True, help="new run folder")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("sweep", help="evaluate trained models over a control grid and write a report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Scores every --model at every level x control of the grid (8-bit outputs, "
                                   "PSNR/SSIM on RGB and Y) and writes OUT/sweep.md, sweep.json (all models), plots.")
    p.add_argument("--model", required=True, action="append", help="run folder (repeat to compare)")
    p.add_argument("--levels", nargs="+", metavar="LEVEL[,LEVEL...]",
                   help="degradation levels; D-dimensional models take comma-separated tuples such as 20,30. "
                        "Default: 4 levels evenly spaced from the training level A to B")
    p.add_argument("--alpha-count", type=int, default=11,
                   help="number of control values evenly spaced in [0, 1] (per dimension)")
    p.add_argument("--alphas", type=float, nargs="+", metavar="ALPHA",
                   help="explicit control values instead of --alpha-count (per dimension)")
    p.add_argument("--data", help="folder of clean test images (default: the bundled test photos)")
    p.add_argument("--crop", type=int, default=None, help="centre-crop test images to this size")
    p.add_argument("--max-images", type=int, default=None, help="use at most this many test images")
    p.add_argument("--border", type=int, default=0, help="pixels cropped from each side before metrics")
    p.add_argument("--seed", type=int, default=0, help="seed of the degraded inputs")
    p.add_argument("--title", default="control sweep", help="report title")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("apply", help="run a trained model on one image at a control value or a per-pixel map")
    p.add_argument("--model", required=True, help="run folder")
    p.add_argument("--input", required=True, help="degraded image (PNG, JPEG, BMP, TIFF; grey, RGB or RGBA)")
    p.add_argument("--output", required=True, help="output image path (.png, .jpg, .bmp, .tif); its folder must exist")
    p.add_argument("--alpha", type=float, nargs="+", help="control value(s), one per control dimension "
                   "(0 = level A, 1 = level B; outside extrapolates, within -100..100)")
    p.add_argument("--alpha-map", help="greyscale image: black = alpha 0, white = alpha 1, per pixel; "
                   "resized bilinearly to the input size")
    p.add_argument("--level", "--param", dest="level", type=float, nargs="+",
                   help="instead of --alpha: the degradation level(s) to restore (e.g. sigma 50), or an operator "
                        "model's parameter (e.g. lambda = 0.02 for l0, within the operator's range)")
    p.add_argument("--operator", help="operator models trained on several operators: which one to imitate")
    p.add_argument("--clamp", action="store_true", help="operator models: clip --param into the operator's range "
                   "instead of refusing it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("prepare-ops", help="compute and cache operator training pairs (slow filters run once)",
                       description="For every image and operator, draw --per-image parameter values (log or "
                                   "linear uniform, per operator), run the operator and store the pair in OUT. "
                                   "Re-running skips pairs already stored.")
    p.add_argument("--operators", nargs="+", required=True, help="operator names, e.g. l0 wls rtv rgf wmf llf "
                   "shock denoise deblock super_resolution")
    p.add_argument("--data", help="folder of clean images (default: the bundled training photos)")
    p.add_argument("--max-images", type=int, default=None, help="use at most this many images")
    p.add_argument("--channels", type=int, default=3, help="1 (grey) or 3 (RGB)")
    p.add_argument("--per-image", type=int, default=4, help="parameter values drawn at random per image and "
                   "operator (training with a gamma per sample)")
    p.add_argument("--grid", type=int, help="instead: this many values evenly spaced over each operator's range, "
                   "the same for every image (needed for one gamma per batch, the faster training)")
    p.add_argument("--crop", type=int, default=128, help="centre-crop images to at most this size first")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameter draws")
    p.add_argument("--out", required=True, help="cache folder")
    p.set_defaults(func=cmd_prepare_ops)

    p = sub.add_parser("train-ops", help="train a hypernetwork (or baseline [18]) on an operator cache")
    p.add_argument("--config", required=True, help="experiments/operators.py[:preset]")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=200 (repeatable)")
    p.add_argument("--cache", required=True, help="folder made by prepare-ops")
    p.add_argument("--workdir", required=True, help="run folder; resumes if present")
    allow_changes_arg(p)
    p.set_defaults(func=cmd_train_ops)

    p = sub.add_parser("stylize", help="Gatys style transfer: optimise the image itself (no training)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Optimises an image to keep the content image's features and take the mixed "
                                   "Gram statistics of the style images (ctl_jax.classical.gatys). alpha is the "
                                   "control: 0 keeps the content, 1 is the style's texture alone.")
    styling_args(p, "mix several styles", alpha_default=None, alpha_help="style/content balance in [0, 1] (default 0.5)")
    p.add_argument("--loss-net", default="random", help="random, random:SEED, vgg16:PATH or vgg19:PATH")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--lr", type=float, default=0.05, help="Adam's learning rate on the image's logits")
    p.add_argument("--size", type=int, default=256, help="resize every image so its longer side has this many pixels")
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--style-weight", type=float, default=3.0)
    p.add_argument("--tv-weight", type=float, default=0.6, help="total variation weight (scaled by alpha)")
    p.add_argument("--init", choices=("content", "noise"), default="content", help="starting image")
    p.add_argument("--seed", type=int, default=0, help="seed of --init noise")
    p.add_argument("--out", required=True, help="output image (.png, .jpg, .bmp, .tif); its folder must exist")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("adain", help="AdaIN: arbitrary style transfer with a trained decoder (one forward pass)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Gives the content image's encoder features the channel statistics of the "
                                   "style images and decodes them (ctl_jax.classical.adain; train a decoder with "
                                   "experiments/adain.py). alpha: 0 the content, 1 the full style.")
    p.add_argument("--model", required=True, help="an AdaIN decoder run folder (experiments/adain.py: OUT/decoder)")
    styling_args(p, "interpolate styles", alpha_default=1.0, alpha_help="content-style trade-off in [0, 1]")
    p.add_argument("--size", type=int, default=512, help="resize every image so its longer side has this many pixels")
    p.add_argument("--out", required=True, help="output image (.png, .jpg, .bmp, .tif); its folder must exist")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_adain)

    p = sub.add_parser("dream", help="Deep Dream: amplify what one loss-network layer sees in an image",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Gradient ascent on the mean squared activation of --layer, with octaves and "
                                   "random jitter (ctl_jax.classical.deep_dream).")
    p.add_argument("--image", required=True, help="input image (PNG, JPEG, BMP, TIFF; grey, RGB or RGBA)")
    p.add_argument("--layer", required=True, help="layer of the loss network, e.g. relu3_1 (random: relu1_1 .. relu4_2)")
    p.add_argument("--strength", type=float, default=0.005, help="mean step per pixel and step, on the [0, 1] scale")
    p.add_argument("--steps", type=int, default=10, help="steps per octave")
    p.add_argument("--octaves", type=int, default=4, help="number of scales, smallest first")
    p.add_argument("--octave-scale", type=float, default=1.4, help="size ratio between octaves")
    p.add_argument("--jitter", type=int, default=32, help="largest random shift in pixels before each step")
    p.add_argument("--seed", type=int, default=0, help="seed of the shifts")
    p.add_argument("--loss-net", default="random", help="random, random:SEED, vgg16:PATH or vgg19:PATH")
    p.add_argument("--size", type=int, default=256, help="resize the image so its longer side has this many pixels")
    p.add_argument("--out", required=True, help="output image (.png, .jpg, .bmp, .tif); its folder must exist")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_dream)
    return parser


def main(argv=None) -> int:
    from ctl_jax.train.checkpoint import CheckpointError
    from ctl_jax.train.lock import WorkdirError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError, CheckpointError, WorkdirError, FloatingPointError, MemoryError) as err:
        print(f"ctl-jax: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # training turns Ctrl-C into a message naming its last checkpoint
        print(f"ctl-jax: {err or 'interrupted'}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
