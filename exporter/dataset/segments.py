"""The dataset directory: one file being appended to, and finished files renamed into place.

Records are appended to ``current.jsonl``. When it grows past ``max_bytes`` or gets older than
``max_age`` it is closed and renamed to ``feedback-<opened, UTC>.jsonl`` in one atomic step, so
a consumer that ships ``feedback-*.jsonl`` files never sees one half-written. Each append is one
``write`` plus ``fsync``; if it fails part-way the file is truncated back to its last complete
line. A ``current.jsonl`` left by a crash is trimmed to its last newline and finished on start.
An advisory lock keeps two daemons from appending to the same directory. Retention deletes
finished files, oldest first, once the directory outgrows its byte bound or a file was opened
longer ago than the age bound; the active file is never deleted.

Synchronous on purpose: the writer thread calls it, never the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "ACTIVE_NAME",
    "DirectoryLocked",
    "Segments",
    "finished_name",
    "is_finished_name",
    "opened_at",
    "trim_torn_tail",
]

ACTIVE_NAME = "current.jsonl"
_PREFIX, _SUFFIX, _LOCK_NAME = "feedback-", ".jsonl", ".lock"
_FILE_MODE = 0o640  # conversations, even redacted, are nobody else's business


class DirectoryLocked(OSError):
    """Another process holds the dataset directory."""

    def __init__(self, directory: Path) -> None:
        super().__init__(errno.EAGAIN, "another process is writing this dataset", str(directory))


def finished_name(opened: float) -> str:
    """Return the name of a finished file opened at ``opened`` (sorts chronologically)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(opened))
    return f"{_PREFIX}{stamp}.{int(opened % 1 * 1e6):06d}Z{_SUFFIX}"


def is_finished_name(name: str) -> bool:
    """Say whether ``name`` is a finished dataset file."""
    return name.startswith(_PREFIX) and name.endswith(_SUFFIX)


def opened_at(name: str) -> float | None:
    """Return when the finished file ``name`` was opened, or None for a name not ours."""
    stamp = name.removeprefix(_PREFIX).removesuffix(_SUFFIX)
    seconds, _, micros = stamp.removesuffix("Z").partition(".")
    try:
        opened = dt.datetime.strptime(seconds, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
        return opened.timestamp() + int(micros or 0) / 1e6
    except ValueError:
        return None


def trim_torn_tail(path: Path) -> int:
    """Cut ``path`` after its last newline (a crash may have left half a line); return bytes cut."""
    with open(path, "r+b") as file:
        size = end = file.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - 65536)
            file.seek(start)
            newline = file.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            file.truncate(end)
            os.fsync(file.fileno())
        return size - end


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Segments:
    """Appends to the active file of ``directory`` and rotates it by size and age."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        max_age: float,
        retention_bytes: int | None = None,
        retention_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._retention_bytes = retention_bytes
        self._retention_age = retention_age
        self._clock = clock
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._size = 0
        self._opened = 0.0
        self.rotations = 0  # files finished by rotate(), for the metrics

    @property
    def active(self) -> Path:
        """Return the path of the file being appended to."""
        return self.directory / ACTIVE_NAME

    def open(self) -> None:
        """Create the directory, take its lock, finish what a crash left; raise ``OSError``."""
        if self._lock_fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.directory / _LOCK_NAME, os.O_WRONLY | os.O_CREAT, _FILE_MODE)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            os.close(lock_fd)
            raise DirectoryLocked(self.directory) from error
        self._lock_fd = lock_fd
        if self.active.exists():
            trim_torn_tail(self.active)
            self._finish(self.active.stat().st_mtime)

    def append(self, lines: Sequence[bytes]) -> int:
        """Append as many of ``lines`` as fit in the active file; return how many.

        Rotates first when the active file has no room for the first line; a line longer than
        ``max_bytes`` gets a file of its own. One write and one fsync per call; on ``OSError``
        nothing of this call remains in the file.
        """
        if not lines:
            return 0
        if self._fd is not None and self._size and self._size + len(lines[0]) > self._max_bytes:
            self.rotate()
        if self._fd is None:
            if self.active.exists():  # left by an append whose undo failed
                trim_torn_tail(self.active)
            self._fd = os.open(
                self.active, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, _FILE_MODE
            )
            self._size = os.fstat(self._fd).st_size
            self._opened = self._clock()
        count, room = 0, self._max_bytes - self._size
        while count < len(lines) and (count == 0 or len(lines[count]) <= room):
            room -= len(lines[count])
            count += 1
        data = b"".join(lines[:count])
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError:
            self._undo()
            raise
        self._size += len(data)
        return count

    def _undo(self) -> None:
        """Truncate a partial append away so the file still ends with a complete line."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            # Cannot even truncate: close it; `open` trims the tail on the next start.
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def rotate_if_due(self) -> bool:
        """Finish the active file if it is older than ``max_age``; return whether it did."""
        if self._fd is None or not self._size or self._clock() - self._opened < self._max_age:
            return False
        self.rotate()
        return True

    def rotate(self) -> None:
        """Close the active file and rename it to its finished name."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)
        size, self._size = self._size, 0
        if size:
            self._finish(self._opened)
            self.rotations += 1
        else:
            self.active.unlink(missing_ok=True)

    def enforce_retention(self) -> int:
        """Delete finished files past the retention bounds, oldest first; return how many.

        The byte bound counts the whole directory, the active file included, so the disk the
        dataset takes stays under it. A file's age counts from when it was opened (its name),
        which rotation keeps within ``max_age`` of its last record.
        """
        if self._retention_bytes is None and self._retention_age is None:
            return 0
        finished = []
        for path in sorted(self.directory.iterdir()):  # finished names sort chronologically
            if is_finished_name(path.name):
                with contextlib.suppress(FileNotFoundError):  # a consumer moved it away
                    finished.append((path, path.stat().st_size))
        total = self._size + sum(size for _, size in finished)
        age = self._retention_age
        deadline = -math.inf if age is None else self._clock() - age
        deleted = 0
        for path, size in finished:
            over_bytes = self._retention_bytes is not None and total > self._retention_bytes
            opened = opened_at(path.name)
            if not (over_bytes or (opened is not None and opened < deadline)):
                break
            path.unlink(missing_ok=True)
            total -= size
            deleted += 1
        if deleted:
            _fsync_directory(self.directory)
        return deleted

    def _finish(self, opened: float) -> None:
        target = self.directory / finished_name(opened)
        while target.exists():  # two files opened in the same microsecond: keep both
            opened += 1e-6
            target = self.directory / finished_name(opened)
        os.rename(self.active, target)
        _fsync_directory(self.directory)

    def close(self) -> None:
        """Finish the active file and release the directory."""
        try:
            self.rotate()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
