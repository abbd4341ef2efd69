"""Colour check: does a restoration network keep colours, or shift them?

A network trained on too few colours (or too many grey pixels) learns to pull unfamiliar colours
towards the ones it has seen: a saturated green comes out grey-brown even on a clean input. PSNR
hides this on grey-ish test sets; the mean colour of a flat patch shows it directly.

``colour_check(fn, ...)`` runs a model function ``fn(x) -> y`` (x: (N, H, W, 3) float32 in [0, 1])
on

- flat patches of saturated colours (``PATCHES``: green, yellow, red, blue, a skin tone, a grey),
  once clean and once with Gaussian noise of ``sigma`` (0-255 scale, seeded, not clipped, as in
  training), and
- optional test images, also clean and noisy,

and reports, per channel, the mean of (clipped output - clean target) in grey levels (0-255). On a
patch that is the shift of the patch colour; on an image it is the shift of the image's mean colour
(local errors of both signs cancel, so it measures colour bias, not noise). Patch errors are taken
on the interior of each patch (``margin`` pixels off each side), away from the zero padding of the
network's borders.

It needs only numpy and ``fn``, which may be jitted and may return a JAX array. Example::

    model = spec.build()
    report = colour_check(lambda x: model.apply({"params": theta0}, x), sigma=20, images=images,
                          image_names=names)
    print(colour_table(report))
    assert report.worst() <= 3
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

# Flat test colours (R, G, B) on the 0-255 scale. Green and yellow are the ones of the bug report.
PATCHES: dict[str, tuple[int, int, int]] = {
    "green": (51, 153, 51),
    "yellow": (204, 204, 25),
    "red": (200, 30, 30),
    "blue": (30, 60, 200),
    "skin": (224, 172, 140),
    "grey": (128, 128, 128),
}
INPUTS = ("clean", "noisy")


@dataclasses.dataclass(frozen=True)
class ColourRow:
    """One measurement: a patch or an image, fed clean or noisy.

    target, output: mean (R, G, B) of the clean target and of the clipped output, 0-255 scale
    (measured on the patch interior for patches). error = output - target.
    """

    kind: str      # "patch" or "image"
    name: str
    input: str     # "clean" or "noisy"
    target: tuple[float, float, float]
    output: tuple[float, float, float]

    @property
    def error(self) -> tuple[float, float, float]:
        return tuple(float(o - t) for o, t in zip(self.output, self.target))

    @property
    def max_abs_error(self) -> float:
        return float(max(abs(e) for e in self.error))


@dataclasses.dataclass(frozen=True)
class ColourReport:
    """The rows of a colour check and how they were made: sigma (0-255 scale), the noise seed, and
    the pixels measured per patch (its interior)."""

    sigma: float
    seed: int
    rows: tuple[ColourRow, ...]
    patch_pixels: int = 0

    @property
    def patch_noise(self) -> float:
        """The standard deviation, in grey levels, that the input noise alone gives a noisy patch's
        mean input colour: sigma / sqrt(patch_pixels). Errors of noisy rows below a few times this
        are not meaningful."""
        return self.sigma / np.sqrt(self.patch_pixels) if self.patch_pixels else 0.0

    def select(self, kind: str | None = None, input: str | None = None) -> list[ColourRow]:
        return [r for r in self.rows if (kind is None or r.kind == kind) and (input is None or r.input == input)]

    def worst(self, kind: str = "patch", input: str | None = None) -> float:
        """The largest per-channel mean error (absolute, grey levels) over the selected rows."""
        rows = self.select(kind, input)
        return max((r.max_abs_error for r in rows), default=0.0)

    def to_dict(self) -> dict:
        """JSON-ready: {"sigma", "seed", "patch_pixels", "rows": [{kind, name, input, target, output, error}, ...]}."""
        return {"sigma": self.sigma, "seed": self.seed, "patch_pixels": self.patch_pixels,
                "rows": [{**dataclasses.asdict(r), "error": list(r.error)} for r in self.rows]}


def flat_patches(colours: Sequence[tuple[float, float, float]], size: int) -> np.ndarray:
    """(len(colours), size, size, 3) float32 patches, each one flat colour given on the 0-255 scale."""
    values = np.asarray(colours, np.float32).reshape(-1, 1, 1, 3) / 255.0
    return np.broadcast_to(values, (len(colours), size, size, 3)).copy()


def _noisy(clean: np.ndarray, sigma: float, stream: list[int]) -> np.ndarray:
    """clean + sigma/255 N(0, 1), not clipped; the noise depends only on (stream, shape)."""
    rng = np.random.default_rng(stream)
    return (clean + np.float32(sigma / 255.0) * rng.standard_normal(clean.shape, np.float32)).astype(np.float32)


def _run(fn: Callable, x: np.ndarray) -> np.ndarray:
    y = np.asarray(fn(x), np.float32)
    if y.shape != x.shape:
        raise ValueError(f"fn must return the input's shape {x.shape}; got {y.shape}")
    return np.clip(y, 0.0, 1.0)


def _mean_rgb(x: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.mean(x.reshape(-1, 3), axis=0, dtype=np.float64) * 255.0)


def colour_check(fn: Callable, sigma: float = 20.0, *, images: Sequence[np.ndarray] = (),
                 image_names: Sequence[str] | None = None, patches: dict | None = None, size: int = 128,
                 margin: int = 16, multiple: int = 8, seed: int = 0) -> ColourReport:
    """Per-channel mean colour errors of ``fn`` on flat patches and images, clean and noisy.

    fn: (N, H, W, 3) float32 in [0, 1] -> same shape (any array type; clipped to [0, 1] here).
    sigma: Gaussian noise level of the noisy inputs, 0-255 scale. images: (H, W, 3) float arrays in
    [0, 1], cropped here to a multiple of ``multiple`` in H and W (top-left kept). patches: name ->
    (R, G, B) on the 0-255 scale, ``PATCHES`` by default; each is a ``size`` x ``size`` square
    (``size`` a multiple of ``multiple``) measured on its interior without ``margin`` pixels.
    seed: the noise seed; the same arguments always give the same report (for a deterministic fn).
    """
    patches = dict(PATCHES if patches is None else patches)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 (0-255 scale); got {sigma}")
    if size % multiple or size <= 2 * margin:
        raise ValueError(f"size must be a multiple of {multiple} larger than 2 * margin; got {size}, margin {margin}")
    names = list(image_names) if image_names is not None else [f"image_{i}" for i in range(len(images))]
    if len(names) != len(images):
        raise ValueError(f"got {len(images)} images but {len(names)} names")
    rows = []
    if patches:
        clean = flat_patches(list(patches.values()), size)
        noisy = _noisy(clean, sigma, [seed, 0])  # patches: stream (seed, 0); image i: (seed, 1, i)
        outputs = _run(fn, np.concatenate([clean, noisy]))
        inner = (slice(margin, size - margin), slice(margin, size - margin))
        for i, name in enumerate(patches):
            target = tuple(float(v) for v in patches[name])
            for j, which in enumerate(INPUTS):
                out = outputs[j * len(patches) + i][inner]
                rows.append(ColourRow("patch", name, which, target, _mean_rgb(out)))
    for i, (name, image) in enumerate(zip(names, images)):
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image {name!r}: expected (H, W, 3); got shape {image.shape}")
        h, w = (image.shape[0] // multiple) * multiple, (image.shape[1] // multiple) * multiple
        if h == 0 or w == 0:
            raise ValueError(f"image {name!r} is smaller than {multiple} pixels")
        clean = image[None, :h, :w]
        outputs = _run(fn, np.concatenate([clean, _noisy(clean, sigma, [seed, 1, i])]))
        target = _mean_rgb(clean)
        for j, which in enumerate(INPUTS):
            rows.append(ColourRow("image", name, which, target, _mean_rgb(outputs[j])))
    return ColourReport(float(sigma), int(seed), tuple(rows), (size - 2 * margin) ** 2 if patches else 0)


def colour_table(report: ColourReport, title: str | None = None) -> str:
    """A markdown table of a report: one line per row, colours and errors in grey levels (0-255)."""
    fmt = lambda values: "(" + ", ".join(f"{v:.0f}" for v in values) + ")"
    lines = [f"### {title}", ""] if title else []
    noise = ""
    if report.patch_pixels:
        noise = f" (the noise alone moves a noisy patch's mean by {report.patch_noise:.1f}, one std)"
    lines += [f"Per-channel mean colour error in grey levels (0-255), output - clean; noisy: sigma "
              f"{report.sigma:g}, seed {report.seed}{noise}.", "",
              "| kind | name | input | clean (R, G, B) | output (R, G, B) | error R | error G | error B | max abs |",
              "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in report.rows:
        e = r.error
        lines.append(f"| {r.kind} | {r.name} | {r.input} | {fmt(r.target)} | {fmt(r.output)} "
                     f"| {e[0]:+.1f} | {e[1]:+.1f} | {e[2]:+.1f} | {r.max_abs_error:.1f} |")
    lines += ["", f"Worst patch error: {report.worst('patch'):.1f}"
              + (f"; worst image error: {report.worst('image'):.1f}" if report.select("image") else "") + "."]
    return "\n".join(lines) + "\n"
