"""Output files that outlive their writer: never replacing another's, synced to disk as they grow.

A camera restarted after a crash (maybe on another node that shares the storage) must not
overwrite what the killed process left. ``claim`` creates the file with ``O_CREAT | O_EXCL``:
the kernel (or the NFS server, which has done exclusive create since NFSv3) lets exactly one
caller create a name, so two processes racing for ``cam.mp4`` end up with ``cam.mp4`` and
``cam-1.mp4``, never with one file written by both.

Data handed to the kernel survives the death of the process (SIGKILL) but not a power loss
until the kernel writes it back, which may be half a minute later. ``Syncer`` runs ``fsync``
when the writer asks (after each complete piece of the file), on a thread of its own so a slow
disk never holds up the frames.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import SinkError

log = logging.getLogger("framegraph")

MAX_TRIES = 100_000
"""Names tried before giving up (a folder this full is a mistake, not a restart)."""
FLAGS = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def numbered(path: Path, number: int) -> Path:
    """``path`` for 0, else ``<stem>-<number><suffix>`` beside it (``cam.mp4`` -> ``cam-2.mp4``)."""
    return path if number == 0 else path.with_name(f"{path.stem}-{number}{path.suffix}")


def segment(path: Path, index: int) -> Path:
    """Segment ``index`` of ``path``: ``<stem>-<index, 5 digits><suffix>`` (``cam-00012.mp4``),
    so the segments of a recording sort by name in the order they were written."""
    return path.with_name(f"{path.stem}-{index:05d}{path.suffix}")


def claim(name: Callable[[int], Path], first: int = 0) -> tuple[int, Path, int]:
    """Create the first of ``name(first)``, ``name(first + 1)``, ... that does not exist yet.

    Args:
        name: the candidate path for each number.
        first: the number to start from.

    Returns:
        The number taken, its path and a descriptor open for writing on the new, empty file.

    Raises:
        SinkError: a name cannot be created for another reason than existing (permissions,
            a missing folder, a full disk), or ``MAX_TRIES`` names are all taken.
    """
    for number in range(first, first + MAX_TRIES):
        path = name(number)
        try:
            return number, path, os.open(path, FLAGS | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            raise SinkError(f"cannot create {path}: {error.strerror}") from None
    raise SinkError(f"no free name for {name(first)}: {MAX_TRIES} taken")


def create(path: Path) -> int:
    """Create or truncate ``path`` (what FFmpeg itself does); a descriptor open for writing.

    Raises:
        SinkError: it cannot be created.
    """
    try:
        return os.open(path, FLAGS | os.O_TRUNC, 0o666)
    except OSError as error:
        raise SinkError(f"cannot create {path}: {error.strerror}") from None


class Syncer:
    """Flushes one file to disk on request, from a thread of its own.

    The first sync also covers the file's folder, so the new name itself survives a power
    loss. Requests made while a sync runs fold into one more sync after it. ``close()`` syncs
    a last time and closes the descriptor. A filesystem that cannot sync (some FUSE mounts) is
    reported once and then left alone: the data still reaches the kernel.

    Args:
        fd: a descriptor of the file (any one: fsync writes back the file, not the descriptor).
        path: the file, for messages and its folder.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path
        self.syncs = 0
        self._wanted = threading.Event()
        self._closing = False
        self._failed = False
        self._thread = threading.Thread(target=self._run, name=f"fsync {path.name}", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Sync soon (returns at once)."""
        self._wanted.set()

    def _run(self) -> None:
        self._sync_folder()
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closing:
                return
            self._sync()

    def _sync(self) -> None:
        if self._failed:
            return
        try:
            os.fsync(self.fd)
            self.syncs += 1
        except OSError as error:
            self._failed = True
            log.warning("cannot sync %s to disk (%s); going on without", self.path, error.strerror)

    def _sync_folder(self) -> None:
        try:
            folder = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return  # the file's own sync still covers its data
        try:
            os.fsync(folder)
        except OSError as error:  # not every filesystem syncs folders; the data is unaffected
            log.debug("cannot sync folder %s: %s", self.path.parent, error.strerror)
        finally:
            os.close(folder)

    def close(self) -> None:
        """Stop the thread, sync a last time and close the descriptor."""
        self._closing = True
        self._wanted.set()
        self._thread.join()
        try:
            self._sync()
        finally:
            os.close(self.fd)
