"""Atomic writes (ctl_jax.files): a failed write leaves the old file intact and no temporary file."""

import contextlib
import errno
import json
import os
import resource
import signal
import stat

import numpy as np
import pytest
from PIL import Image

from ctl_jax.data.images import read_image, write_image
from ctl_jax.data.operator_pairs import load_operator_cache, prepare_operator_cache
from ctl_jax.files import check_writable_folder, write_atomic, write_text_atomic


def _disk_full(written: bytes):
    """A writer that writes ``written`` and then fails like a full disk."""
    def writer(file):
        file.write(written)
        raise OSError(errno.ENOSPC, "No space left on device")
    return writer


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_text_bytes_and_writers_round_trip(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "héllo")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_atomic(tmp_path / "c.bin", lambda file: file.write(b"by file"))
    write_atomic(tmp_path / "d.txt", lambda path: path.write_text("by path"), to_path=True)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "c.bin").read_bytes() == b"by file"
    assert (tmp_path / "d.txt").read_text() == "by path"
    assert _leftovers(tmp_path, {"a.txt", "b.bin", "c.bin", "d.txt"}) == []


def test_permissions_are_those_of_a_plain_open(tmp_path):
    (tmp_path / "plain").write_text("x")
    write_atomic(tmp_path / "atomic", "x")
    assert stat.S_IMODE((tmp_path / "atomic").stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


@pytest.mark.parametrize("to_path", [False, True])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, to_path):
    path = tmp_path / "report.md"
    path.write_text("old content")

    def failing_path_writer(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, failing_path_writer if to_path else _disk_full(b"half"), to_path=to_path)
    assert path.read_text() == "old content"
    assert _leftovers(tmp_path, {"report.md"}) == []
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C half-way: the same
        write_atomic(path, lambda file: (file.write(b"x"), (_ for _ in ()).throw(KeyboardInterrupt())))
    assert path.read_text() == "old content" and _leftovers(tmp_path, {"report.md"}) == []


def test_no_overwrite_refuses_files_and_dangling_links_in_one_step(tmp_path):
    path = tmp_path / "out.png"
    write_atomic(path, b"first", overwrite=False)
    with pytest.raises(FileExistsError, match="out.png exists"):
        write_atomic(path, b"second", overwrite=False)
    assert path.read_bytes() == b"first"
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(FileExistsError, match="link.png exists"):
        write_atomic(link, b"x", overwrite=False)
    assert not (tmp_path / "nowhere.png").exists()
    write_atomic(link, b"replaced")  # overwrite replaces the link itself
    assert not link.is_symlink() and link.read_bytes() == b"replaced"
    assert _leftovers(tmp_path, {"out.png", "link.png"}) == []


def test_missing_folder_and_directory_targets(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_atomic(tmp_path / "missing" / "a.txt", "x")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(IsADirectoryError, match="dir.png"):
        write_atomic(tmp_path / "dir.png", b"x")
    with pytest.raises(FileExistsError, match="dir.png"):
        write_atomic(tmp_path / "dir.png", b"x", overwrite=False)


def test_check_writable_folder(tmp_path, monkeypatch):
    check_writable_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_writable_folder(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_writable_folder(tmp_path / "file")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a read-only mount answers (even root)
    with pytest.raises(PermissionError, match="read-only"):
        check_writable_folder(tmp_path)


def test_write_image_overwrite_keeps_the_old_image_when_the_encoder_fails(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    write_image(path, np.full((6, 5, 3), 0.25, np.float32))
    before = path.read_bytes()

    def encoder_fails_half_way(self, fp, format=None, **params):
        fp.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4088)  # the 4096 bytes a full disk let through
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", encoder_fails_half_way)
    with pytest.raises(OSError, match="No space left"):
        write_image(path, np.zeros((6, 5, 3), np.float32), overwrite=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    np.testing.assert_allclose(read_image(path, 3), 64 / 255)
    assert _leftovers(tmp_path, {"out.png"}) == []


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past ``nbytes`` in any file fail with EFBIG, as on a full disk (the process-wide
    RLIMIT_FSIZE, with SIGXFSZ ignored so the write raises instead of killing the process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_write_image_overwrite_on_a_full_disk_keeps_the_old_image(tmp_path):
    path = tmp_path / "out.png"
    write_image(path, np.full((6, 5, 3), 0.25, np.float32))
    before = path.read_bytes()
    noise = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)  # about 12 kB as PNG
    with pytest.raises(OSError, match="too large"), file_size_limit(4096):
        write_image(path, noise, overwrite=True)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, {"out.png"}) == []


def test_operator_cache_writes_are_atomic(tmp_path, monkeypatch):
    image = np.random.default_rng(0).random((20, 20, 3)).astype(np.float32)
    cache = prepare_operator_cache([image], ["a"], ["l0"], tmp_path / "cache", per_image=1, crop=16, progress=False)
    pair_file = next(cache.glob("a__l0__*.npz"))
    before = pair_file.read_bytes()
    pair_file.unlink()

    def savez_fails(file, **arrays):
        file.write(b"PK\x03\x04partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_fails)
    with pytest.raises(OSError, match="No space left"):
        prepare_operator_cache([image], ["a"], ["l0"], cache, per_image=1, crop=16, progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in cache.iterdir()) == ["cache.json"]  # no half-written pair, no temporary
    assert json.loads((cache / "cache.json").read_text())["per_image"] == 1
    prepare_operator_cache([image], ["a"], ["l0"], cache, per_image=1, crop=16, progress=False)
    assert pair_file.read_bytes() == before and len(load_operator_cache(cache)) == 1
