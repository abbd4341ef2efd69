"""Tests for ctl_jax.eval.colour: the per-channel colour-shift check."""

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np
import pytest

from ctl_jax.eval.colour import PATCHES, colour_check, colour_table, flat_patches


def _images():
    rng = np.random.default_rng(0)  # values kept away from 0 and 1, so shifts of a few levels are not clipped
    return [0.2 + 0.6 * rng.random(shape, dtype=np.float32) for shape in [(40, 52, 3), (64, 64, 3)]]


def _rows(report, **select):
    return {(r.kind, r.name, r.input): r for r in report.select(**select)}


def test_required_patches_are_there():
    assert PATCHES["green"] == (51, 153, 51) and PATCHES["yellow"] == (204, 204, 25)
    assert {"red", "blue", "skin", "grey"} <= set(PATCHES)
    patches = flat_patches([(51, 153, 51), (0, 0, 255)], 8)
    assert patches.shape == (2, 8, 8, 3) and patches.dtype == np.float32
    np.testing.assert_allclose(patches[0, 3, 5] * 255, (51, 153, 51), atol=1e-4)
    np.testing.assert_allclose(patches[1, 0, 0], (0, 0, 1))


def test_identity_has_no_colour_error():
    report = colour_check(lambda x: x, sigma=20, images=_images(), image_names=["a", "b"])
    kinds = {(r.kind, r.input) for r in report.rows}
    assert kinds == {("patch", "clean"), ("patch", "noisy"), ("image", "clean"), ("image", "noisy")}
    assert len(report.select("patch")) == 2 * len(PATCHES) and len(report.select("image")) == 4
    for r in report.select(input="clean"):
        np.testing.assert_allclose(r.error, 0, atol=1e-3)
        np.testing.assert_allclose(r.output, r.target, atol=1e-3)
    # Noisy and identity: only the mean of the noise is left (about sigma / sqrt(pixels)), as long as
    # the output's clipping at 0 and 1 does not bite (the yellow's and red's dark channels would).
    for name in ("green", "skin", "grey"):
        row = _rows(report)[("patch", name, "noisy")]
        assert row.max_abs_error < 1.0, row
    assert all(r.max_abs_error < 1.5 for r in report.select("image", "noisy"))  # 1920 and 4096 pixels
    # With sigma 0 every row is exact.
    assert colour_check(lambda x: x, sigma=0, images=_images()).worst("patch") < 1e-3


def test_green_shift_is_measured():
    shift = np.array([0, 10, -4], np.float32) / 255  # +10 grey levels of green, -4 of blue

    def fn(x):
        return x + shift

    report = colour_check(fn, sigma=20, images=_images(), image_names=["a", "b"])
    rows = _rows(report)
    for which, atol in (("clean", 1e-3), ("noisy", 1.5)):
        np.testing.assert_allclose(rows[("patch", "green", which)].error, (0, 10, -4), atol=atol)
        np.testing.assert_allclose(rows[("image", "a", which)].error, (0, 10, -4), atol=atol)
    np.testing.assert_allclose(rows[("patch", "grey", "clean")].output, (128, 138, 124), atol=1e-3)
    assert report.worst("patch", "clean") == pytest.approx(10, abs=1e-3)
    assert report.worst("image", "clean") == pytest.approx(10, abs=1e-3)


def test_desaturating_network_fails_the_check():
    def towards_grey(x):  # what the bug looked like: colours pulled halfway towards their grey
        return 0.5 * x + 0.5 * x.mean(-1, keepdims=True)

    report = colour_check(towards_grey, sigma=0)
    green = _rows(report)[("patch", "green", "clean")]
    mean = (51 + 153 + 51) / 3
    np.testing.assert_allclose(green.output, (25.5 + mean / 2, 76.5 + mean / 2, 25.5 + mean / 2), atol=1e-3)
    assert green.error[1] < -30 and green.error[0] > 15
    assert _rows(report)[("patch", "grey", "clean")].max_abs_error < 1e-3  # grey stays grey
    assert report.worst() > 30


def test_border_effects_are_not_measured():
    def bad_borders(x):
        y = np.array(x)
        y[:, :8] = 0  # a network's zero-padding artefact along the edge
        return y

    report = colour_check(bad_borders, sigma=0, size=64, margin=8)
    assert report.worst("patch") < 1e-3
    assert colour_check(bad_borders, sigma=0, size=64, margin=4).worst("patch") > 1


def test_deterministic_noise_and_json():
    fn = lambda x: np.clip(x, 0.1, 0.9)  # noticeable on noisy inputs only  # noqa: E731
    first = colour_check(fn, sigma=30, images=_images(), seed=3)
    assert colour_check(fn, sigma=30, images=_images(), seed=3) == first
    other = colour_check(fn, sigma=30, images=_images(), seed=4)
    assert _rows(other)[("patch", "grey", "noisy")].output != _rows(first)[("patch", "grey", "noisy")].output
    assert _rows(other)[("patch", "grey", "clean")] == _rows(first)[("patch", "grey", "clean")]
    data = json.loads(json.dumps(first.to_dict()))
    assert data["sigma"] == 30 and data["seed"] == 3 and len(data["rows"]) == len(first.rows)
    assert data["patch_pixels"] == 96 * 96 and first.patch_noise == pytest.approx(30 / 96)
    assert data["rows"][0]["error"] == list(first.rows[0].error)


def test_images_are_cropped_to_a_multiple_and_passed_whole():
    shapes = []

    def fn(x):
        shapes.append(x.shape)
        return x

    colour_check(fn, sigma=5, images=[np.full((43, 50, 3), 0.5, np.float32)], patches={}, multiple=8)
    assert shapes == [(2, 40, 48, 3)]  # clean and noisy in one call


def test_table():
    report = colour_check(lambda x: x + np.float32(3 / 255), sigma=20, images=_images()[:1], image_names=["photo"])
    table = colour_table(report, title="identity + 3")
    assert table.startswith("### identity + 3")
    assert "| kind | name | input |" in table and "| patch | green | clean | (51, 153, 51) | (54, 156, 54) |" in table
    assert "| image | photo | noisy |" in table and "+3.0" in table
    assert f"Worst patch error: {report.worst('patch'):.1f}" in table
    assert len([line for line in table.splitlines() if line.startswith("| patch")]) == 2 * len(PATCHES)


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        colour_check(lambda x: x[..., :1], sigma=0)
    with pytest.raises(ValueError, match="names"):
        colour_check(lambda x: x, images=_images(), image_names=["one"])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        colour_check(lambda x: x, images=[np.zeros((16, 16, 1), np.float32)])
    with pytest.raises(ValueError, match="sigma"):
        colour_check(lambda x: x, sigma=-1)
    with pytest.raises(ValueError, match="margin"):
        colour_check(lambda x: x, size=32, margin=16)
