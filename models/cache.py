"""The on-disk cache shared by every model family: converted weights, ONNX exports, engines.

What is cached is code we run (an ONNX graph decides whether a face is found and blurred), so
the cache is built so that nobody but its owner can change what we load:

* Folders. The cache lives in a folder of the current user (default ~/.cache/framegraph,
  ``$FRAMEGRAPH_CACHE`` overrides), created with mode 0700, as is every subfolder. A folder
  that belongs to another user or that group or others may write is refused
  (:class:`CacheError`, one line), and so is one below a folder that others may write and
  that is not sticky (/tmp is): whoever can rename our folder can swap it for theirs. The
  path is used with its symlinks resolved once checked, so a link changed later redirects
  nothing.
* Entries. Each cached file ``X.ext`` has a record ``X.json`` holding the sha256 and size of
  its bytes (and whatever the caller keys it by), written after the file by the same writer.
  A reader opens the file without following symlinks, checks that it is a regular file of
  ours that others cannot write, reads its bytes once, hashes them and compares with the
  record, and hands those very bytes on: nothing opens the file by name after the check, so
  swapping it afterwards changes nothing. An entry that is missing its record, does not
  match it, or is not ours is rebuilt with a warning, never used.
* Writes. A file is written to a temporary file in its own folder, flushed to disk and
  renamed into place, so a reader never sees half a file. Reading an entry and building it
  happen under a per-entry ``flock`` on ``X.lock`` (opened without following symlinks,
  mode 0600), so processes starting together build once and never see a file without its
  record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger("framegraph")

PRIVATE_MODE = 0o700
"""Mode of every folder the cache creates."""


class CacheError(PermissionError):
    """The cache folder, or a file the cache must open, is not safe to use.

    It belongs to another user, others may write to it, or a symlink stands where a file of
    ours should be. The message is one line and says what to do.
    """


def resolve_cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Cache folder: ``override``, else $FRAMEGRAPH_CACHE, else ~/.cache/framegraph.

    Only names it: :func:`private_dir` / :func:`cache_folder` create and check it.
    """
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("FRAMEGRAPH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "framegraph"


def private_dir(path: str | os.PathLike) -> Path:
    """``path`` as a folder only the current user can change, created (mode 0700) if missing.

    Missing parents are created with mode 0700 too.

    Returns:
        The folder's absolute path with symlinks resolved: use it from then on, so that a
        symlink on the way changed after the check redirects nothing.

    Raises:
        CacheError: the folder is not a folder, belongs to another user or is writable by
            group or others; or a folder above it belongs to someone other than the user
            or root, or is writable by others without being sticky. One line.
    """
    path = Path(path).expanduser().absolute()
    try:
        return _check_private_dir(path)
    except CacheError:
        raise
    except OSError as error:  # cannot be created or looked at (no permission, a dangling link)
        raise CacheError(f"cache folder {path} cannot be used: {error.strerror}") from None


def _check_private_dir(path: Path) -> Path:
    """:func:`private_dir` on an absolute path; OSErrors pass through."""
    _make_dirs(path)
    real = Path(os.path.realpath(path))
    uid = os.getuid()
    for above in real.parents:
        st = os.stat(above)
        if st.st_uid not in (0, uid):
            raise CacheError(
                f"cache folder {path}: {above} above it belongs to uid {st.st_uid}, who could "
                "swap it; set FRAMEGRAPH_CACHE to a folder of your own"
            )
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise CacheError(
                f"cache folder {path}: {above} above it is writable by others (mode "
                f"{stat.S_IMODE(st.st_mode):o}, not sticky); set FRAMEGRAPH_CACHE to a folder "
                "of your own"
            )
    st = os.lstat(real)  # resolved: a symlink here was put in place after realpath
    if not stat.S_ISDIR(st.st_mode):
        raise CacheError(f"cache folder {path} is not a folder")
    if st.st_uid != uid:
        raise CacheError(
            f"cache folder {path} belongs to uid {st.st_uid}, not to you (uid {uid}); "
            "set FRAMEGRAPH_CACHE to a folder of your own"
        )
    if st.st_mode & 0o022:
        raise CacheError(
            f"cache folder {path} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):o}); chmod 700 it or set FRAMEGRAPH_CACHE to a "
            "folder of your own"
        )
    return real


def cache_folder(name: str, override: str | os.PathLike | None = None) -> Path:
    """``<cache>/<name>`` (e.g. a family's exports), both checked by :func:`private_dir`.

    Args:
        name: one path component (a family name, ``tensorrt``).
        override: the cache folder instead of :func:`resolve_cache_dir`'s default.
    """
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"cache subfolder must be one plain name, got {name!r}")
    root = private_dir(resolve_cache_dir(override))
    return private_dir(root / name)


def _make_dirs(path: Path) -> None:
    """Creates ``path`` and its missing parents, each with mode 0700 (less the umask)."""
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.mkdir(folder, PRIVATE_MODE)


def record_path(path: Path) -> Path:
    """Where the sha256 record of cache entry ``path`` lives: ``X.ext`` -> ``X.json``."""
    return path.with_suffix(".json")


def lock_path(path: Path) -> Path:
    """The lock file of cache entry ``path``: ``X.ext`` -> ``X.lock``."""
    return path.with_suffix(".lock")


class _Untrusted(Exception):
    """A cache file that must not be used; the message says why."""


def _read_own(path: Path) -> bytes:
    """The whole content of ``path``, read once through one descriptor.

    Raises:
        FileNotFoundError: there is no such file.
        _Untrusted: it is a symlink or not a regular file, belongs to another user, or
            group or others may write it.
    """
    try:
        # O_NOFOLLOW: a symlink is refused, not followed; O_NONBLOCK: a FIFO planted here
        # cannot hang the open (it has no effect on regular files).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise _Untrusted("a symlink" if os.path.islink(path) else error.strerror) from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())  # of what we opened, not of whatever has the name now
        if not stat.S_ISREG(st.st_mode):
            raise _Untrusted("not a regular file")
        if st.st_uid != os.getuid():
            raise _Untrusted(f"it belongs to uid {st.st_uid}")
        if st.st_mode & 0o022:
            raise _Untrusted(f"others may write it (mode {stat.S_IMODE(st.st_mode):o})")
        return handle.read()


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``: the digest entries are recorded and checked with."""
    return hashlib.sha256(data).hexdigest()


def read_entry(path: Path, expect: Mapping[str, Any] | None = None) -> bytes | None:
    """The bytes of cache entry ``path`` if they are exactly what our writer recorded.

    The file is read once; the bytes returned are the bytes hashed, so callers load from
    them (onnxruntime and TensorRT both take bytes) and never open the file again.

    Args:
        path: the entry.
        expect: items its record must also hold (e.g. an engine's full key).

    Returns:
        The bytes; None when the entry is missing, or (with a warning saying why) when it
        has no record, does not match it, or is not a regular file of ours: the caller
        rebuilds it.
    """
    try:
        data = _read_own(path)
    except FileNotFoundError:
        return None
    except (_Untrusted, OSError) as error:
        return _distrust(path, str(error))
    try:
        record = json.loads(_read_own(record_path(path)))
    except FileNotFoundError:
        return _distrust(path, f"no digest recorded in {record_path(path).name}")
    except (_Untrusted, OSError, ValueError) as error:
        return _distrust(path, f"its record {record_path(path).name} is unusable ({error})")
    if not isinstance(record, dict):
        return _distrust(path, f"its record {record_path(path).name} is unusable")
    if record.get("size") != len(data) or record.get("sha256") != sha256(data):
        return _distrust(path, "its sha256 differs from the one recorded when it was written")
    for name, value in (expect or {}).items():
        if record.get(name) != value:
            return _distrust(path, f"it was recorded for another {name}")
    return data


def _distrust(path: Path, reason: str) -> None:
    log.warning("cache: not using %s: %s; rebuilding it", path, reason)


def write_entry(path: Path, data: bytes, meta: Mapping[str, Any] | None = None) -> None:
    """Writes cache entry ``path`` and then its record (sha256, size and ``meta``).

    Call it under the entry's lock (:func:`cached_entry` does), in a folder from
    :func:`cache_folder`.
    """
    record = {**(meta or {}), "sha256": sha256(data), "size": len(data)}
    # never a moment with new bytes beside the old record (a reader would rebuild them)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record_path(path))
    atomic_write(path, lambda f: f.write(data))
    atomic_write(record_path(path), lambda f: f.write(json.dumps(record, indent=1).encode()))


def cached_entry(
    path: Path, build: Callable[[], bytes], meta: Mapping[str, Any] | None = None
) -> bytes:
    """The verified bytes of cache entry ``path``, built by ``build()`` when there are none.

    Under the entry's lock: :func:`read_entry` (with ``meta`` expected in the record), and
    when it gives nothing, ``build()``, :func:`write_entry` and the built bytes themselves.

    Args:
        path: the entry, in a folder from :func:`cache_folder`.
        build: makes the entry's bytes.
        meta: what the entry is keyed by, kept in its record and checked on reading.
    """
    with file_lock(lock_path(path)):
        data = read_entry(path, meta)
        if data is None:
            data = build()
            write_entry(path, data, meta)
    return data


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Creates ``path`` whole or not at all.

    A temporary file (mode 0600, created exclusively) in ``path``'s folder is written,
    flushed to disk and renamed over ``path``; a symlink at ``path`` is replaced, not
    followed.

    Args:
        path: the final file; its folder must exist (:func:`cache_folder`).
        write: writes the content to the open binary file it is given.
    """
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
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (where the file system allows)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder: the rename still stands
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def scratch_file(folder: Path, suffix: str = "") -> Iterator[Path]:
    """A new empty file of ours (mode 0600) in ``folder``, removed after the block: for tools
    that write by file name (the ONNX exporter, the quantizer)."""
    fd, name = tempfile.mkstemp(prefix=".scratch-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` for the ``with`` block.

    The file is created (mode 0600) if missing; its folder must exist. Processes and threads
    (each opens its own descriptor) queue on it; the lock goes with the process if it dies.

    Raises:
        CacheError: ``path`` is a symlink (never followed: it could point at any file of
            ours) or not a regular file of ours.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        if os.path.islink(path):
            raise CacheError(f"lock file {path} is a symlink (not followed); remove it") from None
        raise CacheError(f"cannot open lock file {path}: {error.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise CacheError(f"lock file {path} is not a file of yours; remove it")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
