"""One writer per folder: an exclusive lock on ``<folder>/.lock``.

``workdir_lock(path)`` takes an ``fcntl.flock`` lock on ``path/.lock`` (creating the folder) and
writes the holder's pid, host, start time and command into the file as JSON. A second process
asking for the same folder fails at once with a :class:`WorkdirError` naming the holder; it never
waits. The kernel drops a flock lock when its holder exits, however it exits (SIGKILL included),
so a lock file left by a dead process does not block anyone: the next writer simply takes it.

Within one process the lock is re-entrant (a nested ``workdir_lock`` on a folder this process
already holds only counts), so code that locks a folder never deadlocks on itself. The lock file
is removed on release, and so is the folder if the lock created it and it is still empty (a refused
run leaves nothing behind).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
from pathlib import Path

LOCK_FILE = ".lock"

_held: dict[str, tuple[int, int, bool]] = {}  # real path of a folder -> (lock fd, depth, folder created)
_held_guard = threading.Lock()


class WorkdirError(RuntimeError):
    """A folder cannot be written: another process holds it, or it is not writable."""


@contextlib.contextmanager
def workdir_lock(path):
    """Hold the write lock of folder ``path`` (created if missing) for the ``with`` block.

    WorkdirError, at once, when another process holds it (the message names its pid, host and
    start time) or when the folder cannot be created or written.
    """
    key = _key(path)
    with _held_guard:
        if key in _held:
            fd, depth, created = _held[key]
            _held[key] = (fd, depth + 1, created)
        else:
            created = not os.path.lexists(path)
            _held[key] = (_acquire(Path(path)), 1, created)
    try:
        yield Path(path)
    finally:
        with _held_guard:
            fd, depth, created = _held.pop(key)
            if depth > 1:
                _held[key] = (fd, depth - 1, created)
            else:
                _release(Path(path), fd, remove_folder=created)


def holds_lock(path) -> bool:
    """Whether this process holds the lock of ``path``."""
    with _held_guard:
        return _key(path) in _held


def read_holder(path) -> dict | None:
    """The holder info stored in ``path/.lock`` (None when there is no readable lock file).

    The file may be left by a process that is gone; only the lock itself says who holds it."""
    try:
        return _parse_holder((Path(path) / LOCK_FILE).read_bytes())
    except OSError:
        return None


# -- helpers -----------------------------------------------------------------------------------

def _key(path) -> str:
    return os.path.realpath(os.path.abspath(path))


def _acquire(folder: Path) -> int:
    """Lock ``folder/.lock``; returns the open descriptor that holds the lock."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot create the folder {folder} ({e.strerror or e}); "
                           f"choose another folder or fix its parent's permissions") from None
    lock_path = folder / LOCK_FILE
    for _ in range(100):  # retried only when a releasing holder removed the file between open and lock
        fd = _open_lock_file(lock_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _parse_holder(_read_fd(fd))
            os.close(fd)
            raise WorkdirError(_busy_message(folder, holder)) from None
        except OSError as e:
            os.close(fd)
            raise WorkdirError(f"cannot lock {lock_path} ({e.strerror or e}): this filesystem does not "
                               f"support locks; use a local folder") from None
        if _is_current_file(fd, lock_path):
            _write_holder(fd, lock_path)
            return fd
        os.close(fd)
    raise WorkdirError(f"cannot lock {lock_path}: it keeps being replaced; is another program deleting it?")


def _open_lock_file(lock_path: Path) -> int:
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WorkdirError(f"cannot write in {lock_path.parent} ({e.strerror or e}); make it writable "
                           f"or choose another folder") from None


def _is_current_file(fd: int, lock_path: Path) -> bool:
    """Whether ``fd`` is still the file at ``lock_path`` (a releasing holder unlinks it)."""
    try:
        on_disk = os.stat(lock_path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _write_holder(fd: int, lock_path: Path) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:300]}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError as e:
        _release(lock_path.parent, fd)  # the caller's finally does not run: the lock was never handed out
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise WorkdirError(f"cannot write in {lock_path.parent} ({reason}); free space, make it "
                           f"writable or choose another folder") from None


def _read_fd(fd: int) -> bytes:
    try:
        return os.pread(fd, 4096, 0)
    except OSError:
        return b""


def _parse_holder(data: bytes) -> dict | None:
    try:
        info = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _busy_message(folder: Path, holder: dict | None) -> str:
    lock_path = folder / LOCK_FILE
    if holder is None:
        who = "another process (it is just starting: its details are not written yet)"
        stop = "wait for it to finish or stop it"
    else:
        who = (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
               f" ({holder.get('command')})")
        stop = f"wait for it to finish or stop it (kill {holder.get('pid')} on {holder.get('host')})"
    return (f"{folder} is in use by {who}; {stop}. The lock is released when that process ends; "
            f"if it has ended and the folder is still locked (a network filesystem), delete {lock_path}")


def _release(folder: Path, fd: int, remove_folder: bool = False) -> None:
    """Remove the lock file (while still holding it, so no one locks a file about to vanish), unlock,
    and with ``remove_folder`` remove the folder if it is empty."""
    try:
        if _is_current_file(fd, folder / LOCK_FILE):
            os.unlink(folder / LOCK_FILE)
    except OSError:
        pass  # a read-only or vanished folder: the lock is still released below
    finally:
        os.close(fd)
    if remove_folder:
        with contextlib.suppress(OSError):  # not empty (the run wrote something), or gone
            folder.rmdir()
