"""One crmscore run at a time writes an output folder: an advisory lock file beside it.

A scoring folder ``<out>/as_of=YYYY-MM-DD`` (and any folder written with
:func:`crmscore.scoring.atomic_dir`) is written by one run at a time. The run holds an exclusive
advisory lock (``fcntl.flock``, non-blocking) on ``<out>/.as_of=YYYY-MM-DD.lock`` from before it reads
its input until the finished folder is in place; a second run for the same folder fails at once with
one line (:class:`~crmscore.errors.LockedError`, exit code 2) naming the folder and the process that
holds it. The operating system drops the lock when its holder exits, however it exits (``kill -9``
included), so a killed run never leaves a folder locked; the lock file it leaves behind is reused.

The lock is re-entrant within a process: a function that takes it while its caller already holds it
(``score_stage`` around :func:`~crmscore.scoring.atomic_dir`) carries on. Windows locks with
``msvcrt``; where neither exists the folder is written without a lock (the write is still atomic).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from crmscore.errors import LockedError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None  # type: ignore[assignment]

__all__ = ["folder_lock", "lock_file", "lock_holder"]

log = logging.getLogger("crmscore")

# msvcrt locks are mandatory: lock one byte far past the holder's note, so others can still read it.
_WINDOWS_LOCK_OFFSET = 1 << 20

# Lock files this process holds (its threads included): path → open descriptor, None when unlocked.
_held: dict[str, int | None] = {}
_held_guard = threading.Lock()


def lock_file(target: str | os.PathLike) -> Path:
    """The lock file of output folder ``target``: a hidden ``.<name>.lock`` beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def lock_holder(target: str | os.PathLike) -> dict | None:
    """What the holder of ``target``'s lock wrote into the lock file (pid, host, start time, command), if readable.

    The note stays in the file after its holder has gone (a killed run); it says who holds the lock only
    while someone does.
    """
    try:
        return _parse_note(lock_file(target).read_bytes())
    except OSError:
        return None


@contextlib.contextmanager
def folder_lock(target: str | os.PathLike) -> Iterator[bool]:
    """Hold the lock of output folder ``target`` for the ``with`` block; another holder raises ``LockedError``.

    Yields True when the folder is locked, False on a system or file system without locks (a debug or
    warning line says so). The lock file is created (with ``target``'s parent folder) and holds a note
    of this run; it is removed on leaving the block.
    """
    path = lock_file(target).absolute()
    key = str(path)
    with _held_guard:
        reentered = key in _held
    if reentered:  # this process holds it already (a caller up the stack): the outermost block lets go
        yield _held[key] is not None
        return
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, Path(target))
    with _held_guard:
        _held[key] = fd
    try:
        yield fd is not None
    finally:
        with _held_guard:
            del _held[key]
        if fd is not None:
            _release(path, fd)
        if created:  # a run that wrote nothing leaves no empty output folder behind
            with contextlib.suppress(OSError):
                path.parent.rmdir()


def _note() -> bytes:
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    note = {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": sys.argv}
    return (json.dumps(note) + "\n").encode()


def _parse_note(raw: bytes) -> dict | None:
    try:
        note = json.loads(raw.decode("utf-8", errors="replace").splitlines()[0])
    except (IndexError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def _busy(target: Path, fd: int) -> LockedError:
    try:
        note = _parse_note(os.pread(fd, 4096, 0)) if hasattr(os, "pread") else None
    except OSError:
        note = None
    if note and "pid" in note:
        who = f"another crmscore run (pid {note['pid']} on {note.get('host', '?')}, started {note.get('started', '?')})"
    else:
        who = "another crmscore run"  # it has not written its note yet
    return LockedError(
        f"{target}: {who} is writing this folder; wait for it to finish and run again, or write to another "
        "folder (--out)"
    )


def _try_lock(fd: int) -> bool:
    """Take the lock of open file ``fd`` without waiting; False when another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except PermissionError:  # EACCES: another process holds the byte
        return False
    return True


def _acquire(path: Path, target: Path) -> int | None:
    """Lock ``path`` and write this run's note into it; the open descriptor, or None without locks."""
    if fcntl is None and msvcrt is None:
        log.debug("no file locking on this system: %s is written without a lock", target)
        return None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            locked = _try_lock(fd)
        except OSError as exc:  # e.g. a network file system without locks
            os.close(fd)
            log.warning("cannot lock %s (%s): writing it without a lock", path, exc)
            return None
        if not locked:
            error = _busy(target, fd)
            os.close(fd)
            raise error
        # The holder before us removes the file as it lets go: if it did so between our open and our lock,
        # we hold a lock on a file nobody else will see; take the one at the path instead.
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, _note())
    return fd


def _release(path: Path, fd: int) -> None:
    if fcntl is not None:
        # Remove the file while still holding it, so that whoever locks the old file next sees it is gone.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # closing drops the lock
        return
    with contextlib.suppress(OSError):
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    os.close(fd)
    with contextlib.suppress(OSError):  # Windows cannot remove a file another process has open
        path.unlink()
