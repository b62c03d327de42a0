"""The on-disk cache shared by every model family: converted weights, ONNX exports, engines.

Writers never leave half a file where a reader looks: they write a temporary file in the same
folder and rename it into place. Work that should happen once across processes (building a
TensorRT engine) runs under an exclusive file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def resolve_cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Cache folder: ``override``, else $FRAMEGRAPH_CACHE, else ~/.cache/framegraph."""
    if override is not None:
        return Path(override)
    env = os.environ.get("FRAMEGRAPH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "framegraph"


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Creates ``path`` whole or not at all.

    Args:
        path: the final file; its folder is created.
        write: writes the content to the open binary file it is given.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_export(path: Path, export: Callable[[str], None]) -> None:
    """Like :func:`atomic_write` for exporters that want a file name (e.g. torch.onnx.export)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        export(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    Processes and threads (each opens its own descriptor) queue on it; the lock goes with the
    process if it dies.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
