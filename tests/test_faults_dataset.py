"""The feedback dataset's disk fails under the running daemon: full, then unwritable.

Scoring and ingest carry on, the failures are counted by reason, records beyond the backlog
bound are dropped and counted, and once the disk is back the backlog lands. Every selected
record is accounted for: written, pending, or dropped with a reason.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.dataset import read_records
from tests.support.daemon import Daemon, running_daemon
from tests.test_daemon import wait_for
from tests.test_dataset_durability import tiny_tmpfs  # noqa: F401 (a fixture, used by name)
from tests.test_faults import Scrape, Traffic, assert_accounting, thumbs_down

MAX_PENDING = 200


def dataset_config(directory: Path) -> dict[str, Any]:
    """Half the traffic sampled; every scored conversation is kept (it has a thumbs-down)."""
    return {
        "agents": ["support-bot"],
        "sampling": {"base_rate": 0.5, "boost_rate": 0.5},
        "dataset": {
            "enabled": True,
            "path": str(directory),
            "flush_interval": "100ms",
            "max_pending_records": MAX_PENDING,
        },
    }


def assert_every_record_accounted_for(scrape: Scrape) -> None:
    """Scored (all selected) == written + pending + dropped before writing, by reason."""
    fates = {
        "written": scrape.total("dataset_records_total"),
        "pending": scrape.total("dataset_pending_records"),
        "duplicates": scrape.total("dataset_duplicates_total"),
        **scrape.by_label("dataset_dropped_records_total", "reason"),
    }
    assert scrape.total("scored_total") == sum(fates.values()), fates


def faulty_then_fixed(
    daemon: Daemon, *, reason: str, fix: Callable[[], object], fault: Callable[[], object] | None
) -> tuple[Scrape, Scrape]:
    """Post, break the disk, post until the backlog overflows; fix it, let the backlog land."""
    with Traffic(daemon.url, make=thumbs_down) as traffic:
        if fault is not None:  # once records are landing
            wait_for(lambda: Scrape.of(daemon).total("dataset_records_total") > 0)
            fault()
        wait_for(
            lambda: (
                Scrape.of(daemon).total("dataset_dropped_records_total", reason="backlog_full") > 0
            ),
            timeout=30,
        )
    traffic.assert_served()
    broken = assert_accounting(daemon)
    assert broken.total("dataset_write_errors_total", reason=reason) >= 2
    assert broken.total("dataset_pending_records") == MAX_PENDING
    assert_every_record_accounted_for(broken)
    fix()
    wait_for(lambda: Scrape.of(daemon).total("dataset_pending_records") == 0)
    fixed = assert_accounting(daemon)
    assert_every_record_accounted_for(fixed)
    assert fixed.total("dataset_records_total") >= broken.total("dataset_records_total") + 200
    return broken, fixed


def fill(path: Path) -> None:
    """Write ``path`` until its filesystem is full."""
    with pytest.raises(OSError) as caught:
        path.write_bytes(b"\0" * (1024 * 1024))  # twice the filesystem: fills what is left
    assert caught.value.errno == errno.ENOSPC


class TestDiskFull:
    def test_full_filesystem(self, tiny_tmpfs: Path) -> None:  # noqa: F811 (the fixture)
        """ENOSPC on a real filesystem: counted as no_space; freeing space writes the backlog."""
        filler = tiny_tmpfs / "filler"
        directory = tiny_tmpfs / "ds"
        with running_daemon(tiny_tmpfs.parent, dataset_config(directory)) as daemon:
            broken, fixed = faulty_then_fixed(
                daemon, reason="no_space", fault=lambda: fill(filler), fix=filler.unlink
            )
            log = daemon.log()
        assert broken.total("dataset_records_total") > 0  # what fitted before the disk filled
        assert log.count("cannot write") == 1  # once a minute, however often it fails
        assert "writing again" in log
        ids = [record.id for record in read_records(directory)]
        assert len(ids) == len(set(ids)) == fixed.total("dataset_records_total")


class TestUnwritable:
    def test_parent_is_a_file(self, tmp_path: Path) -> None:
        """A path that cannot be created (root ignores modes): io errors until it can."""
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("x")
        directory = blocker / "ds"
        with running_daemon(tmp_path, dataset_config(directory)) as daemon:
            broken, fixed = faulty_then_fixed(daemon, reason="io", fault=None, fix=blocker.unlink)
            log = daemon.log()
        assert broken.total("dataset_records_total") == 0
        assert log.count("cannot write") == 1
        ids = [record.id for record in read_records(directory)]
        assert len(ids) == len(set(ids)) == fixed.total("dataset_records_total")
