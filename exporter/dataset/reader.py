"""Read a dataset directory: finished files in order, then the one being written.

A line without its newline is a write cut short by a crash (or still being written) and is
skipped as *torn*; a complete line that does not decode is skipped as *corrupt*. Both are
counted in ``ReadStats``, so a reader never fails on what a crash left behind.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from exporter.dataset.record import Record, decode_record
from exporter.dataset.segments import ACTIVE_NAME, is_finished_name

__all__ = ["ReadStats", "dataset_files", "read_ids", "read_records"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReadStats:
    """What a read found."""

    files: int = 0
    records: int = 0
    torn: int = 0
    corrupt: int = 0


class _IdOnly(msgspec.Struct):
    id: str


_id_decoder = msgspec.json.Decoder(_IdOnly)


def dataset_files(directory: Path) -> list[Path]:
    """Return the finished files, oldest first, then the active file if there is one."""
    names = sorted(name for name in os.listdir(directory) if is_finished_name(name))
    if (directory / ACTIVE_NAME).exists():
        names.append(ACTIVE_NAME)
    return [directory / name for name in names]


def _file_lines(path: Path, stats: ReadStats) -> Iterator[bytes]:
    """Yield the complete lines of one file; raise ``FileNotFoundError`` if it is gone."""
    with open(path, "rb") as file:
        stats.files += 1
        for line in file:
            if not line.endswith(b"\n"):
                stats.torn += 1
                log.info("skipping a torn last line in %s", path)
            elif line.strip():
                yield line


def _lines(directory: Path, stats: ReadStats) -> Iterator[bytes]:
    """Yield every complete line of every file, surviving a rotation during the read.

    The writer may finish ``current.jsonl`` (rename it) at any moment: finished files are
    listed again until no new one appears, and only then is the active file read, last.
    """
    done: set[str] = set()
    while True:
        files = dataset_files(directory)
        new = [p for p in files if p.name != ACTIVE_NAME and p.name not in done]
        if new:
            for path in new:
                done.add(path.name)
                yield from _file_lines(path, stats)
            continue
        try:
            yield from _file_lines(directory / ACTIVE_NAME, stats)
        except FileNotFoundError:
            if any(p.name == ACTIVE_NAME for p in files):
                continue  # finished between listing and opening: find its new name
        return


def read_records(directory: Path, *, stats: ReadStats | None = None) -> Iterator[Record]:
    """Yield every complete record in ``directory``; count skipped lines in ``stats``."""
    stats = stats if stats is not None else ReadStats()
    for line in _lines(directory, stats):
        try:
            record = decode_record(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            stats.corrupt += 1
            log.warning("skipping a corrupt line in %s: %s", directory, error)
            continue
        stats.records += 1
        yield record


def read_ids(directory: Path, *, limit: int) -> list[str]:
    """Return the ids of about the ``limit`` newest records, oldest first.

    Files are read newest first and reading stops once ``limit`` ids are found, so a writer
    seeding its dedup filter at start reads no more than it can remember.
    """
    stats, found = ReadStats(), list[str]()
    for path in reversed(dataset_files(directory)):
        ids = []
        try:
            for line in _file_lines(path, stats):
                try:
                    ids.append(_id_decoder.decode(line).id)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
        except FileNotFoundError:
            continue
        found[:0] = ids
        if len(found) >= limit:
            break
    return found[-limit:]
