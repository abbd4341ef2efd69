"""Atomic file writes: every file the library writes appears whole or not at all.

``write_atomic(path, content)`` writes to a temporary file in the same folder (a hidden
``.<name>.<random>.tmp``) and renames it onto ``path`` with ``os.replace``, which is atomic on one
file system. A failed write (disk full, an encoder raising half-way, Ctrl-C) removes the temporary
file and leaves whatever was at ``path`` before untouched. ``content`` is text (UTF-8), bytes, or a
callable that writes the content itself: ``writer(file)`` gets the open binary file object, or,
with ``to_path=True``, ``writer(tmp_path)`` gets the temporary path (for writers that only take a
file name; they must write exactly that path).

The temporary file is created with the permissions a plain ``open(path, "w")`` would give (0o666
less the umask) and synced to disk before the rename. Replacing a symbolic link replaces the link
itself, not the file it points to.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Callable, Union

Content = Union[str, bytes, Callable]


def _temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def _fill(tmp: Path, content: Content, to_path: bool) -> None:
    """Create ``tmp`` (exclusively) and write ``content`` into it, synced to disk."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    if callable(content) and to_path:
        os.close(fd)
        content(tmp)
        _sync(tmp)
        return
    with os.fdopen(fd, "wb") as file:
        if isinstance(content, str):
            file.write(content.encode("utf-8"))
        elif isinstance(content, (bytes, bytearray, memoryview)):
            file.write(content)
        else:
            content(file)
        file.flush()
        os.fsync(file.fileno())


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists (even as a dangling link): no check-then-write race
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
        os.replace(tmp, path)
    else:
        tmp.unlink()


def write_atomic(path: str | os.PathLike, content: Content, *, overwrite: bool = True,
                 to_path: bool = False) -> Path:
    """Write ``content`` to ``path`` atomically (module docstring); returns ``path`` as a Path.

    content: str (written as UTF-8), bytes, or a callable ``writer(binary_file)`` (``writer(tmp_path)``
    with ``to_path=True``). overwrite=False raises FileExistsError naming ``path`` when something
    (a file, a directory, a dangling link) is already there; the check and the write are one step.
    Raises FileNotFoundError when the parent folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist")
    if overwrite and path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    tmp = _temporary_path(path)
    try:
        _fill(tmp, content, to_path)
        _move_into_place(tmp, path, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """``write_atomic`` for text (UTF-8), replacing any file at ``path``."""
    return write_atomic(path, text)


def check_writable_folder(folder: str | os.PathLike, what: str = "the output") -> None:
    """Raise before any work when files cannot be created in ``folder``: FileNotFoundError when it
    does not exist, NotADirectoryError when it is a file, PermissionError when it is read-only."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"the folder of {what}, {folder}, does not exist; create it first")
    if not folder.is_dir():
        raise NotADirectoryError(f"the folder of {what}, {folder}, is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {what}: the folder {folder} is read-only")


def safe_name(name: str) -> str:
    """``name`` as a file or folder name: runs of characters other than letters, digits, ``.``, ``_``
    and ``-`` become one ``_`` ("FFDNet (true sigma)" -> "FFDNet_true_sigma")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "unnamed"
