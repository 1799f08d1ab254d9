"""Feedback dataset under failure: kill -9 mid-write, full disk, unwritable path, a second writer.

In every case scoring goes on, failures are counted, and a reader loads every complete record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.config import Config
from exporter.dataset import DatasetWriter, ReadStats, build_sink, dataset_files, read_records
from exporter.dataset.segments import ACTIVE_NAME
from exporter.metrics import Metrics
from exporter.model import decode_conversation
from exporter.pipeline import Pipeline
from exporter.scoring import build_scorers
from tests.conftest import conversation
from tests.support.daemon import running_daemon
from tests.test_dataset import Harness, dataset_config, evaluation

REPO = Path(__file__).resolve().parents[1]

# Drives a real writer in its own process: bad evaluations as fast as it can, printing each id
# with the monotonic time it was handed over, until it is killed.
_WRITER_SCRIPT = """
import asyncio, json, sys, time
from prometheus_client import CollectorRegistry
from exporter.config import parse_config
from exporter.dataset import build_sink
from exporter.metrics import Metrics
from exporter.model import decode_conversation
from exporter.types import Evaluation

config = parse_config({"dataset": {"enabled": True, "path": sys.argv[1], "flush_interval": "50ms",
                                   "rotation": {"max_bytes": 65536}}}, source="<test>")
template = json.loads(sys.argv[2])

async def main():
    sink = build_sink(config, metrics=Metrics(config, CollectorRegistry()))
    number = 0
    while True:
        template["id"] = f"c-{number}"
        template["messages"][0]["content"] = f"attempt {number} " + "x" * (number % 7 * 900)
        conversation = decode_conversation(json.dumps(template).encode())
        await sink.handle(Evaluation(conversation, "support-bot", "base", {"final_answer": 0.0}))
        print(number, time.monotonic(), flush=True)
        number += 1
        await asyncio.sleep(0.0005)

asyncio.run(main())
"""


def bad_conversation(number: int) -> bytes:
    """Return a conversation the default scorers find bad (no final answer)."""
    document = conversation(id=f"c-{number}")
    document["messages"] = [{"role": "user", "content": f"hello {number}"}]
    return json.dumps(document).encode()


class Daemonish:
    """The real pipeline with the default scorers and the dataset writer as its sink."""

    def __init__(self, config: Config, **writer: object) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(config, self.registry)
        sink = build_sink(config, metrics=self.metrics)
        assert isinstance(sink, DatasetWriter)
        self.writer = sink
        self.pipeline = Pipeline(
            config=config,
            metrics=self.metrics,
            scorers=build_scorers(config, metrics=self.metrics),
            sinks=[sink],
        )

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(f"agent_quality_{name}", labels) or 0.0

    async def score(self, numbers: range) -> None:
        """Submit conversations and wait until every one is scored."""
        before = self.value("scored_total", agent="support-bot")
        for number in numbers:
            item = decode_conversation(bad_conversation(number))
            assert self.pipeline.submit(item, agent="support-bot", reason="base")
        deadline = time.monotonic() + 60  # for a hang, not for speed
        while self.value("scored_total", agent="support-bot") < before + len(numbers):
            assert time.monotonic() < deadline, "scoring stalled"
            await asyncio.sleep(0.01)

    async def cycles(self, count: int = 2) -> None:
        for _ in range(count):
            self.writer.flushed.clear()
            assert await asyncio.to_thread(self.writer.flushed.wait, 60.0)


def complete_ids(directory: Path) -> tuple[list[str], ReadStats]:
    stats = ReadStats()
    return [r.id for r in read_records(directory, stats=stats)], stats


class TestKill9:
    """A writer process killed with SIGKILL mid-write loses at most its last flush interval."""

    def test_reader_loads_every_complete_record(self, tmp_path: Path) -> None:
        """Every record handed over well before the kill is on disk, whole and readable."""
        directory = tmp_path / "ds"
        template = json.dumps(conversation())
        process = subprocess.Popen(
            [sys.executable, "-c", _WRITER_SCRIPT, str(directory), template],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        handed: list[tuple[int, float]] = []
        try:
            assert process.stdout is not None
            # Run for a while and a few rotations, so the kill lands mid-stream.
            while (
                len(handed) < 2
                or handed[-1][1] - handed[0][1] < 2.5
                or len(dataset_files(directory)) < 4
            ):
                line = process.stdout.readline()
                assert line, (
                    f"writer script died: {process.stderr.read() if process.stderr else ''}"
                )
                number, moment = line.split()
                handed.append((int(number), float(moment)))
            process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            # What it printed before dying and we had not read yet was handed over too.
            for line in process.stdout.read().splitlines():
                if len(parts := line.split()) == 2:  # the last one may be cut short
                    handed.append((int(parts[0]), float(parts[1])))
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        assert process.returncode == -signal.SIGKILL
        ids, stats = complete_ids(directory)
        assert stats.corrupt == 0
        assert stats.torn <= 1
        assert len(ids) == len(set(ids))
        # Flushes run every 50 ms; allow a generous margin for a loaded 2-core machine.
        settled = {f"c-{n}" for n, moment in handed if moment < killed_at - 1.0}
        assert settled, "the kill came too early to prove anything"
        assert settled <= set(ids)
        assert set(ids) <= {f"c-{n}" for n, _ in handed}

    async def test_restart_after_kill_finishes_and_remembers(self, tmp_path: Path) -> None:
        """After a crash the next writer finishes the leftover file and skips known ids."""
        directory = tmp_path / "ds"
        directory.mkdir()
        first = Harness(dataset_config(tmp_path / "seed", flush_interval="1h"))
        for number in range(3):
            await first.writer.handle(evaluation(f"c-{number}"))
        await first.writer.aclose()
        (seed,) = dataset_files(tmp_path / "seed")
        # What a crash leaves: an active file ending in half a record.
        (directory / ACTIVE_NAME).write_bytes(seed.read_bytes() + seed.read_bytes()[:100])
        second = Harness(dataset_config(directory))
        try:
            await second.writer.handle(evaluation("c-1"))
            await second.writer.handle(evaluation("c-3"))
            await second.cycles()
        finally:
            await second.writer.aclose()
        ids, stats = complete_ids(directory)
        assert ids == ["c-0", "c-1", "c-2", "c-3"]
        assert stats.torn == 0
        assert second.value("dataset_duplicates_total") == 1


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs: a real filesystem that fills up (needs root to mount)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; TestDiskFull.test_dev_full covers ENOSPC")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


class TestDiskFull:
    """ENOSPC is counted and logged once, scoring goes on, and the backlog lands later."""

    async def test_tmpfs_fills_up(self, tiny_tmpfs: Path, caplog: pytest.LogCaptureFixture) -> None:
        """On a full filesystem no half record is left, and freeing space writes the backlog."""
        filler = tiny_tmpfs / "filler"
        filler.write_bytes(b"\0" * (480 * 1024))
        daemon = Daemonish(dataset_config(tiny_tmpfs / "ds"))
        await daemon.pipeline.start()
        try:
            with caplog.at_level(logging.WARNING, logger="exporter.dataset"):
                for batch in range(10):
                    await daemon.score(range(batch * 20, batch * 20 + 20))
                    await daemon.cycles(1)
                await daemon.cycles()
            assert daemon.value("scored_total", agent="support-bot") == 200
            assert daemon.value("dataset_write_errors_total", reason="no_space") >= 2
            warnings = [r for r in caplog.records if "cannot write" in r.getMessage()]
            assert len(warnings) == 1
            written, stats = complete_ids(tiny_tmpfs / "ds")
            assert 0 < len(written) < 200
            assert stats.torn == 0
            assert stats.corrupt == 0
            assert daemon.value("dataset_pending_records") == 200 - len(written)
            filler.unlink()
            await daemon.cycles()
            written, _ = complete_ids(tiny_tmpfs / "ds")
            assert sorted(written) == sorted(f"c-{n}" for n in range(200))
            assert daemon.value("dataset_records_total", agent="support-bot") == 200
        finally:
            await daemon.pipeline.stop()

    async def test_dev_full(self, tmp_path: Path) -> None:
        """The active file pointing at /dev/full: every flush fails with ENOSPC, scoring goes on."""
        directory = tmp_path / "ds"
        daemon = Daemonish(dataset_config(directory))
        await daemon.pipeline.start()
        try:
            await daemon.cycles()  # the directory is open
            (directory / ACTIVE_NAME).symlink_to("/dev/full")
            await daemon.score(range(30))
            await daemon.cycles(3)
            assert daemon.value("scored_total", agent="support-bot") == 30
            assert daemon.value("dataset_write_errors_total", reason="no_space") >= 2
            assert daemon.value("dataset_records_total", agent="support-bot") == 0
            (directory / ACTIVE_NAME).unlink()  # space again
            await daemon.cycles()
            assert daemon.value("dataset_records_total", agent="support-bot") == 30
        finally:
            await daemon.pipeline.stop()
        ids, _ = complete_ids(directory)
        assert len(ids) == 30


class TestUnwritable:
    """A path that can never be written: counted, logged once per interval, scoring goes on."""

    async def test_parent_is_a_file(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """Root ignores permission bits, so the path is made impossible instead."""
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("x")
        daemon = Daemonish(dataset_config(blocker / "ds"))
        await daemon.pipeline.start()
        try:
            with caplog.at_level(logging.WARNING, logger="exporter.dataset"):
                await daemon.score(range(25))
                await daemon.cycles(4)
        finally:
            await daemon.pipeline.stop()
        assert daemon.value("scored_total", agent="support-bot") == 25
        assert daemon.value("dataset_write_errors_total", reason="io") >= 4
        assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
        assert daemon.value("dataset_dropped_records_total", reason="shutdown") == 25


class TestSecondWriter:
    """Two daemons pointed at one directory do not interleave their lines."""

    async def test_lock(self, tmp_path: Path) -> None:
        """The second waits (counting `locked`) and takes over when the first stops."""
        config = dataset_config(tmp_path / "ds")
        first = Harness(config)
        await first.writer.handle(evaluation("from-first"))
        await first.cycles()
        # Only now: both writers' threads open the directory as they start, so a second one
        # made earlier could win the lock and the roles would be the other way round.
        second = Harness(config)
        try:
            await second.writer.handle(evaluation("from-second"))
            await second.cycles()
            assert second.value("dataset_write_errors_total", reason="locked") >= 1
            assert second.value("dataset_records_total", agent="support-bot") == 0
            await first.writer.aclose()
            await second.cycles()
            ids, _ = complete_ids(tmp_path / "ds")
            assert ids == ["from-first", "from-second"]
        finally:
            await first.writer.aclose()
            await second.writer.aclose()


def scrape(url: str, name: str) -> float:
    """Return the sum of a metric's samples on the daemon's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"agent_quality_{name}")
    )


def post_batch(url: str, first: int, count: int) -> None:
    """POST ``count`` bad conversations carrying an e-mail address, as one JSON array."""
    batch = []
    for number in range(first, first + count):
        document = conversation(id=f"c-{number}", signals={"user_thumbs_down": True})
        document["messages"] = [{"role": "user", "content": f"I'm user{number}@example.com"}]
        batch.append(document)
    request = urllib.request.Request(
        f"{url}/v1/conversations",
        data=json.dumps(batch).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 202


def daemon_config(directory: Path) -> dict[str, Any]:
    """Score everything and keep it in ``directory``, flushing every 100 ms."""
    return {
        "sampling": {"base_rate": 1.0, "boost_rate": 1.0},
        "dataset": {
            "enabled": True,
            "path": str(directory),
            "flush_interval": "100ms",
            "rotation": {"max_bytes": 65536},
        },
    }


class TestDaemon:
    """The real daemon, as users run it, writing the dataset."""

    def test_kill_9_mid_stream(self, tmp_path: Path) -> None:
        """Everything the daemon counted as written survives SIGKILL, whole and redacted."""
        directory = tmp_path / "ds"
        with running_daemon(tmp_path, daemon_config(directory)) as daemon:
            number = 0
            while scrape(daemon.url, "dataset_records_total") < 400:
                post_batch(daemon.url, number, 50)
                number += 50
            post_batch(daemon.url, number, 200)  # still being scored and written ...
            counted = scrape(daemon.url, "dataset_records_total")
            daemon.process.send_signal(signal.SIGKILL)  # ... when the daemon dies
            daemon.process.wait(timeout=10)
        assert daemon.process.returncode == -signal.SIGKILL
        ids, stats = complete_ids(directory)
        assert stats.corrupt == 0
        assert len(ids) >= counted >= 400
        assert len(ids) == len(set(ids))
        raw = b"".join(p.read_bytes() for p in dataset_files(directory))
        assert b"@example.com" not in raw
        assert b"[EMAIL]" in raw

    def test_sigterm_finishes_the_file_and_export_reads_it(self, tmp_path: Path) -> None:
        """A clean stop renames the active file; export-dataset turns it into cases."""
        directory = tmp_path / "ds"
        config = daemon_config(directory)
        with running_daemon(tmp_path, config) as daemon:
            post_batch(daemon.url, 0, 30)
            deadline = time.monotonic() + 60  # for a hang, not for speed
            while scrape(daemon.url, "dataset_records_total") < 30:
                assert time.monotonic() < deadline, daemon.log()
                time.sleep(0.05)
            assert daemon.stop() == 0
        assert not (directory / ACTIVE_NAME).exists()
        (config_file,) = tmp_path.glob("config-*.yml")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "exporter",
                "export-dataset",
                f"--config.file={config_file}",
                "--format",
                "inspect",
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        cases = [json.loads(line) for line in done.stdout.splitlines()]
        assert sorted(case["id"] for case in cases) == sorted(f"c-{n}" for n in range(30))
        assert all(
            "signal:user_thumbs_down" in case["metadata"]["selected_because"] for case in cases
        )
