"""Atomic file output: a reader never sees a half-written file.

Every file crmscore writes goes to a temporary name in the same folder first and is then moved into
place with :func:`os.replace`, which is atomic on POSIX file systems. A run killed half-way leaves the
previous file (or none), never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["atomic_path", "write_parquet", "write_csv", "write_json", "write_text"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it onto ``target``, else delete it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions of a normally created file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_parquet(df: pd.DataFrame, target: str | os.PathLike) -> Path:
    """Write ``df`` to Parquet atomically (no index) and return the path."""
    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(target)


def write_csv(df: pd.DataFrame, target: str | os.PathLike, **kwargs: Any) -> Path:
    """Write ``df`` to CSV atomically (no index; dates as ISO) and return the path."""
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False, date_format="%Y-%m-%d", **kwargs)
    return Path(target)


def write_json(payload: Any, target: str | os.PathLike) -> Path:
    """Write ``payload`` as indented, key-sorted JSON atomically and return the path."""
    return write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", target)


def write_text(text: str, target: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Leave the objects alive now out of the collector's full collections until the block ends.

    A full collection walks every tracked object: with the models and the libraries loaded that is
    about a quarter of a second, paid on each :func:`release_memory` between chunks. Objects that live
    through the block anyway (models, the customers) need not be walked; those created inside are.
    """
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def release_memory() -> None:
    """Hand memory freed by Python and pandas back to the operating system where the C library allows.

    glibc keeps freed heap pages for reuse, so after a large temporary the process's resident size
    stays high although the memory is free; ``malloc_trim`` returns it. A no-op elsewhere.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()  # Arrow's own allocator keeps freed pages too
    except (ImportError, AttributeError):
        pass
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        pass
