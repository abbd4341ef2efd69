"""Tests for ctl_jax.data: image files, the bundled dataset, patch sampling, the TFDS folder builder."""

import struct
import sys
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from ctl_jax.data.bundled import TEST_NAMES, TRAIN_NAMES, bundled_images
from ctl_jax.data.images import UnreadableImageError, list_images, load_folder, read_image, write_image
from ctl_jax.data.patches import PatchSampler
from ctl_jax.testing import random_image, random_images, save_pixels


def _png_rgb16(path, pixels):
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot write one). pixels: (H, W, 3) uint16."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def _truncated_png(path):
    save_pixels(path, np.zeros((32, 32, 3), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# ---------------------------------------------------------------- reading: conversions


def test_grey_png_replicated_to_rgb_and_kept_as_grey(tmp_path):
    path = save_pixels(tmp_path / "g.png", np.array([[0, 51, 255]], np.uint8))
    rgb = read_image(path, 3)
    assert rgb.dtype == np.float32 and rgb.shape == (1, 3, 3)
    np.testing.assert_array_equal(rgb[0] * 255, [[0, 0, 0], [51, 51, 51], [255, 255, 255]])
    np.testing.assert_array_equal(read_image(path, 1)[0, :, 0] * 255, [0, 51, 255])


def test_rgb_to_one_channel_is_pillow_itu601_luma(tmp_path):
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 150, 200]]], np.uint8)
    path = save_pixels(tmp_path / "c.png", pixels)
    # 0.299 R + 0.587 G + 0.114 B, rounded: 76.2 -> 76, 149.7 -> 150, 29.1 -> 29, 140.75 -> 141
    np.testing.assert_array_equal(read_image(path, 1)[0, :, 0] * 255, [76, 150, 29, 141])
    np.testing.assert_array_equal(read_image(path, 3) * 255, pixels)


def test_rgba_is_composited_over_white(tmp_path):
    pixels = np.array([[[100, 0, 200, 51], [1, 2, 3, 0], [10, 20, 30, 255]]], np.uint8)
    path = save_pixels(tmp_path / "a.png", pixels)
    # alpha 51 = 0.2: 0.2 * colour + 0.8 * 255 -> (224, 204, 244); alpha 0 -> white; 255 -> colour
    expected = np.array([[224, 204, 244], [255, 255, 255], [10, 20, 30]])
    np.testing.assert_allclose(read_image(path, 3)[0] * 255, expected, atol=1e-3)
    # luma of the composite: 0.299 * 224 + 0.587 * 204 + 0.114 * 244 = 214.5 -> 215
    np.testing.assert_allclose(read_image(path, 1)[0, :, 0] * 255, [215, 255, 18], atol=1e-3)


def test_grey_with_alpha_is_composited_over_white(tmp_path):
    path = tmp_path / "la.png"
    Image.fromarray(np.array([[[0, 51], [100, 255]]], np.uint8), mode="LA").save(path)
    np.testing.assert_allclose(read_image(path, 1)[0, :, 0] * 255, [204, 100], atol=1e-3)
    np.testing.assert_allclose(read_image(path, 3)[0] * 255, [[204] * 3, [100] * 3], atol=1e-3)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_keeps_16_bits(tmp_path, suffix):
    values = np.array([[0, 65535, 32768, 257]], np.uint16)
    path = save_pixels(tmp_path / f"g16{suffix}", values)
    assert Image.open(path).mode.startswith("I;16")
    expected = [0.0, 1.0, 32768 / 65535, 1 / 255]
    np.testing.assert_allclose(read_image(path, 1)[0, :, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(read_image(path, 3)[0], np.repeat(np.array(expected)[:, None], 3, 1), rtol=1e-6)


def test_16_bit_colour_png_is_reduced_to_its_high_byte(tmp_path):
    path = _png_rgb16(tmp_path / "c16.png", np.array([[[0x80FF, 0xFFFF, 0x00FF]]], np.uint16))
    np.testing.assert_array_equal(read_image(path, 3)[0, 0] * 255, [0x80, 0xFF, 0x00])


def test_palette_images_with_and_without_transparency(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 0, 255, 10, 20, 30])
    image.putdata([0, 1, 2])
    image.save(tmp_path / "p.png")
    image.save(tmp_path / "pt.png", transparency=1)
    colours = [[255, 0, 0], [0, 0, 255], [10, 20, 30]]
    np.testing.assert_array_equal(read_image(tmp_path / "p.png", 3)[0] * 255, colours)
    colours[1] = [255, 255, 255]
    np.testing.assert_array_equal(read_image(tmp_path / "pt.png", 3)[0] * 255, colours)


def test_bilevel_bmp_and_jpeg(tmp_path):
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "b.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "b.bmp", 1)[0, :, 0], [0, 1])
    save_pixels(tmp_path / "j.JPG", np.full((16, 16, 3), (200, 100, 50), np.uint8), quality=95)
    image = read_image(tmp_path / "j.JPG", 3)
    assert image.shape == (16, 16, 3)
    np.testing.assert_allclose(image.mean(axis=(0, 1)) * 255, [200, 100, 50], atol=3)


def test_read_errors(tmp_path):
    path = save_pixels(tmp_path / "ok.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="channels must be 1 .* or 3 .*; got 4"):
        read_image(path, 4)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png", 3)
    bad = _truncated_png(tmp_path / "bad.png")
    with pytest.raises(UnreadableImageError, match="bad.png"):
        read_image(bad, 3)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="text.png"):  # UnreadableImageError is a ValueError
        read_image(tmp_path / "text.png", 1)


def _quadrants(height, width):
    """uint8 (H, W, 3): four flat quadrants in distinct colours (survive JPEG; show any rotation or flip)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    pixels[:h, :w], pixels[:h, w:] = (255, 0, 0), (0, 255, 0)
    pixels[h:, :w], pixels[h:, w:] = (0, 0, 255), (255, 255, 255)
    return pixels


@pytest.mark.parametrize("orientation, clockwise_turns", [(6, 1), (8, 3), (3, 2), (1, 0)])
def test_exif_orientation_is_applied_on_reading(tmp_path, orientation, clockwise_turns):
    stored = _quadrants(40, 48)  # stored 40 high and 48 wide; orientations 6 and 8 show it 48 x 40
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    shown = np.rot90(stored, k=-clockwise_turns)  # what a viewer shows
    image = read_image(path, 3)
    assert image.shape == shown.shape
    h, w = shown.shape[:2]
    centres = np.ix_([h // 4, 3 * h // 4], [w // 4, 3 * w // 4])  # one pixel inside each quadrant
    np.testing.assert_allclose(image[centres], shown[centres] / 255.0, atol=0.05)  # away from JPEG's seams
    assert read_image(path, 1).shape[:2] == shown.shape[:2]


def test_read_image_of_a_folder_says_it_is_a_folder(tmp_path):
    (tmp_path / "photo.png").mkdir()
    with pytest.raises(IsADirectoryError, match="photo.png is a folder, not an image file"):
        read_image(tmp_path / "photo.png", 3)


def test_float_images_on_the_0_255_scale_are_refused():
    from ctl_jax.data.images import check_unit_scale
    from ctl_jax.eval.sweep import check_images

    scaled = random_image((20, 20, 3)) * 255
    with pytest.raises(ValueError, match=r"PatchSampler image 0: .*\[0, 1\] scale; found values in \[.*, 25.\..*divide by 255"):
        PatchSampler([scaled], 8, 2, seed=0)
    with pytest.raises(ValueError, match="test image 0: .*divide by 255"):
        check_images([scaled])
    with pytest.raises(ValueError, match="divide by 255"):
        write_image("unused.png", scaled)
    check_unit_scale(random_image((4, 4, 3)) * 1.5 - 0.2, strict=False)  # unclipped noise or overshoot: kept
    with pytest.raises(ValueError, match=r"found values in \[-0.2, 1.3\]$"):  # below 0: no 0..255 hint
        check_unit_scale(np.array([-0.2, 1.3]))


# ---------------------------------------------------------------- folders


def test_list_images_sorted_case_insensitive_and_filtered(tmp_path):
    for name in ["b.PNG", "a.jpeg", "c.TIFF", "d.bmp", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpeg", "b.PNG", "c.TIFF", "d.bmp"]


def test_missing_and_empty_folder_errors(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(missing)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_folder(missing, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"empty.*\.png.*\.tiff"):
        load_folder(empty, 3)


def test_load_folder_skips_unreadable_and_small_images_with_warnings(tmp_path):
    save_pixels(tmp_path / "a.png", np.full((8, 8), 10, np.uint8))
    _truncated_png(tmp_path / "broken.png")
    save_pixels(tmp_path / "small.png", np.zeros((4, 9, 3), np.uint8))
    with pytest.warns(UserWarning) as record:
        images = load_folder(tmp_path, 3, min_size=5)
    messages = [str(w.message) for w in record]
    assert any("broken.png" in m for m in messages)
    assert any("small.png" in m and "4x9" in m and "min_size=5" in m for m in messages)
    assert len(images) == 1 and images[0].shape == (8, 8, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no usable image"):
            load_folder(tmp_path, 3, min_size=100)


# ---------------------------------------------------------------- writing


def test_write_image_round_trip_and_refuses_overwrite(tmp_path):
    image = random_image((5, 7, 3)) * 1.2 - 0.1  # some values out of range
    path = tmp_path / "out.png"
    write_image(path, image)
    np.testing.assert_array_equal(read_image(path, 3), np.clip(np.round(image * 255), 0, 255) / 255)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="out.png"):
        write_image(path, np.zeros((5, 7, 3), np.float32))
    assert path.read_bytes() == before
    write_image(path, np.zeros((5, 7, 1), np.float32), overwrite=True)
    np.testing.assert_array_equal(read_image(path, 1), np.zeros((5, 7, 1)))
    write_image(tmp_path / "out.jpg", np.full((8, 8, 1), 0.5, np.float32))
    np.testing.assert_allclose(read_image(tmp_path / "out.jpg", 1), 128 / 255, atol=2 / 255)
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "x.png", np.zeros((5, 7), np.float32))
    with pytest.raises(ValueError, match="suffix"):
        write_image(tmp_path / "x.gif", np.zeros((5, 7, 3), np.float32))


# ---------------------------------------------------------------- patches


def _random_images(seed=0, channels=3):
    return random_images([(40, 50), (64, 33), (32, 32)], channels, seed)


def test_patch_sampler_shapes_and_determinism():
    images = _random_images()
    sampler = PatchSampler(images, patch_size=32, batch_size=6, seed=3)
    batch = sampler.batch(7)
    assert batch.shape == (6, 32, 32, 3) and batch.dtype == np.float32
    assert 0 <= batch.min() and batch.max() <= 1
    np.testing.assert_array_equal(sampler.batch(7), batch)
    assert not np.array_equal(sampler.batch(8), batch)
    # A fresh sampler (as after resuming from a checkpoint) gives batch 7 without batches 0-6.
    np.testing.assert_array_equal(PatchSampler(images, 32, 6, seed=3).batch(7), batch)
    assert not np.array_equal(PatchSampler(images, 32, 6, seed=4).batch(7), batch)


def test_patch_sampler_augment_covers_all_flips_and_rotations():
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1) / 15  # no symmetry
    expected = set()
    for flipped in (image, image[:, ::-1]):
        for k in range(4):
            expected.add(np.rot90(flipped, k).tobytes())
    assert len(expected) == 8
    augmented = PatchSampler([image], patch_size=4, batch_size=64, seed=0).batch(0)
    assert {patch.tobytes() for patch in augmented} == expected
    plain = PatchSampler([image], patch_size=4, batch_size=16, seed=0, augment=False).batch(0)
    assert all(np.array_equal(patch, image) for patch in plain)


def test_patch_sampler_channel_permutation_is_deterministic_and_covers_all_orders():
    colours = np.array([0.1, 0.5, 0.9], np.float32)
    flat = np.broadcast_to(colours, (8, 8, 3)).copy()
    sampler = PatchSampler([flat], patch_size=4, batch_size=64, seed=5)
    assert sampler.channel_permute
    batch = sampler.batch(3)
    orders = {tuple(np.argsort(np.argsort(patch[0, 0])).tolist()) for patch in batch}  # where each value went
    assert len(orders) == 6  # all 3! orders of the channels
    for patch in batch:
        np.testing.assert_array_equal(np.sort(patch.reshape(-1, 3), axis=1), np.broadcast_to(colours, (16, 3)))
    # a pure function of (seed, step): again, on a fresh sampler, and different for another step or seed
    np.testing.assert_array_equal(sampler.batch(3), batch)
    np.testing.assert_array_equal(PatchSampler([flat], 4, 64, seed=5).batch(3), batch)
    assert not np.array_equal(sampler.batch(4), batch)
    assert not np.array_equal(PatchSampler([flat], 4, 64, seed=6).batch(3), batch)
    plain = PatchSampler([flat], 4, 64, seed=5, channel_permute=False).batch(3)
    np.testing.assert_array_equal(plain, np.broadcast_to(colours, plain.shape))


def test_patch_sampler_channel_permutation_keeps_crops_and_flips():
    images = _random_images()
    permuted, which = PatchSampler(images, 16, 32, seed=2).indexed_batch(9)
    plain, which_plain = PatchSampler(images, 16, 32, seed=2, channel_permute=False).indexed_batch(9)
    np.testing.assert_array_equal(which, which_plain)
    changed = 0
    for a, b in zip(permuted, plain):
        order = [int(np.flatnonzero(np.all(b == a[..., c : c + 1], axis=(0, 1)))[0]) for c in range(3)]
        np.testing.assert_array_equal(a, b[..., order])  # the same crop and flip, channels reordered
        changed += order != [0, 1, 2]
    assert changed > 16  # 5 in 6 patches are expected to change order


def test_patch_sampler_channel_permutation_defaults():
    assert PatchSampler(_random_images(), 16, 2, seed=0).channel_permute  # colour: on
    assert not PatchSampler(_random_images(), 16, 2, seed=0, augment=False).channel_permute
    assert not PatchSampler(_random_images(channels=1), 16, 2, seed=0).channel_permute  # grey
    assert not PatchSampler(_random_images(channels=6), 16, 2, seed=0).channel_permute  # input + target pairs
    forced = PatchSampler(_random_images(channels=6), 16, 4, seed=0, channel_permute=True)
    assert forced.channel_permute and forced.batch(0).shape == (4, 16, 16, 6)


def test_patch_sampler_uint8_images_match_float_images():
    floats = _random_images(channels=1)
    uint8s = [np.round(image * 255).astype(np.uint8) for image in floats]
    as_float = [image.astype(np.float32) / 255 for image in uint8s]
    np.testing.assert_allclose(PatchSampler(uint8s, 16, 4, seed=1).batch(2),
                               PatchSampler(as_float, 16, 4, seed=1).batch(2), atol=1e-6)


def test_patch_sampler_errors():
    images = _random_images()
    with pytest.raises(ValueError, match=r"image 2 is 32x32.*patch_size=33"):
        PatchSampler(images, patch_size=33, batch_size=2, seed=0)
    with pytest.raises(ValueError, match=r"same channel count.*\[1, 3\]"):
        PatchSampler(images + [np.zeros((40, 40, 1), np.float32)], 16, 2, seed=0)
    with pytest.raises(ValueError, match="at least one image"):
        PatchSampler([], 16, 2, seed=0)
    with pytest.raises(ValueError, match="step"):
        PatchSampler(images, 16, 2, seed=0).batch(-1)


def test_patch_sampler_is_fast():
    sampler = PatchSampler(bundled_images("test", 3), patch_size=96, batch_size=16, seed=0)
    sampler.batch(0)
    start = time.perf_counter()
    for step in range(50):
        sampler.batch(step)
    per_batch = (time.perf_counter() - start) / 50
    assert per_batch < 5e-3, f"{per_batch * 1e3:.2f} ms per batch of 16 96x96 patches"


# ---------------------------------------------------------------- bundled images


def test_bundled_split_is_fixed_disjoint_and_non_empty():
    assert TEST_NAMES and TRAIN_NAMES and not set(TEST_NAMES) & set(TRAIN_NAMES)
    test_rgb = bundled_images("test", 3)
    train_grey = bundled_images("train", 1)
    assert len(test_rgb) == len(TEST_NAMES) and len(train_grey) == len(TRAIN_NAMES)
    for image in test_rgb + train_grey:
        assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
        assert min(image.shape[:2]) >= 256
    assert all(image.shape[2] == 3 for image in test_rgb)
    assert all(image.shape[2] == 1 for image in train_grey)
    train_pixels = {image.tobytes() for image in train_grey}
    assert not any(image.tobytes() in train_pixels for image in bundled_images("test", 1))
    with pytest.raises(ValueError, match="split"):
        bundled_images("validation", 3)


def _saturated_green(image):
    r, g, b = (np.round(image[..., c] * 255).astype(int) for c in range(3))
    return int(np.sum((g > r + 20) & (g > b + 20)))


def test_bundled_images_cover_colours_and_load_offline(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setitem(sys.modules, "pooch", None)  # "import pooch" fails: nothing can be downloaded
    train, test = bundled_images("train", 3), bundled_images("test", 3)
    assert len(test) > 2 and len(train) >= 5
    # saturated greens (the colour the old set lacked) in the training and in the test images
    greens = [_saturated_green(image) for image in train]
    assert sum(greens) > 10_000, greens
    assert sum(_saturated_green(image) for image in test) > 10_000
    # colour sets: at most one grey training image, no grey test image
    is_grey = lambda image: np.ptp(image, axis=-1).max() < 1 / 255  # noqa: E731
    assert sum(map(is_grey, train)) <= 1 and not any(map(is_grey, test))
    # less than a third of the training pixels are grey (channels within 12 levels), averaged per image
    grey_share = np.mean([np.mean(np.ptp(image, axis=-1) <= 12 / 255) for image in train])
    assert grey_share < 1 / 3, grey_share
    # saturated pixels of every hue sextant in training, of at least four in the test images
    sextants = lambda images: set(np.concatenate([_hue_sextants(image) for image in images]).tolist())  # noqa: E731
    assert sextants(train) == set(range(6)) and len(sextants(test)) >= 4
    assert "cat" not in TEST_NAMES + TRAIN_NAMES  # the same picture as chelsea


def _hue_sextants(image):
    """The hue sextant (0 red-yellow, 1 yellow-green, ..., 5 magenta-red) of the saturated pixels."""
    pixels = image[::2, ::2].reshape(-1, 3)
    pixels = pixels[np.ptp(pixels, axis=1) > 0.25]
    order = np.argsort(-pixels, axis=1)  # channels from largest to smallest
    sextant = np.full(9, -1)  # indexed by 3 * largest + second largest
    sextant[[1, 3, 5, 7, 6, 2]] = range(6)  # RG, GR, GB, BG, BR, RB
    return sextant[3 * order[:, 0] + order[:, 1]]


# ---------------------------------------------------------------- TFDS folder builder


def test_tfds_folder_round_trip(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("array_record")
    from ctl_jax.data.tfds_folder import ImageFolderBuilder, load_prepared, prepare_folder

    source = tmp_path / "images"
    (source / "train").mkdir(parents=True)
    (source / "test").mkdir()
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    save_pixels(source / "train" / "b.png", colour)
    save_pixels(source / "train" / "a.png", np.full((6, 5), 77, np.uint8))
    save_pixels(source / "test" / "c.png", np.array([[[100, 0, 200, 51]]], np.uint8))
    _truncated_png(source / "test" / "d.png")

    with pytest.warns(UserWarning, match="d.png"):
        builder = prepare_folder(source, tmp_path / "tfds")
    assert isinstance(builder, ImageFolderBuilder)
    assert builder.name == "ctl_image_folder" and str(builder.version) == "1.0.0"
    assert sorted(builder.info.splits.keys()) == ["test", "train"]
    names = [example["name"] for example in builder.as_data_source("train")]
    assert names in (["a.png", "b.png"], [b"a.png", b"b.png"])

    train = load_prepared(tmp_path / "tfds", "train", 3)
    np.testing.assert_array_equal(train[0], np.full((6, 5, 3), 77 / 255, np.float32))
    np.testing.assert_array_equal(train[1], colour / np.float32(255))
    np.testing.assert_array_equal(load_prepared(tmp_path / "tfds", "train", 1)[1],
                                  read_image(source / "train" / "b.png", 1))
    np.testing.assert_allclose(load_prepared(tmp_path / "tfds", "test", 3)[0][0, 0] * 255, [224, 204, 244])
    with pytest.raises(ValueError, match=r"'validation'.*\['test', 'train'\]"):
        load_prepared(tmp_path / "tfds", "validation", 3)
    with pytest.raises(FileNotFoundError, match="prepare_folder"):
        load_prepared(tmp_path / "nothing", "train", 3)

    flat = tmp_path / "flat"
    flat.mkdir()
    save_pixels(flat / "x.png", colour)
    prepare_folder(flat, tmp_path / "tfds_flat")
    np.testing.assert_array_equal(load_prepared(tmp_path / "tfds_flat", "train", 3)[0], colour / np.float32(255))


def test_tfds_missing_extra_says_what_to_install(tmp_path, monkeypatch):
    from ctl_jax.data import tfds_folder

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'ctl_jax\[data\]'"):
        tfds_folder.prepare_folder(tmp_path, tmp_path / "out")

