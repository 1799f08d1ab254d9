"""Feedback dataset: selection policy, dedup, the writer's flushing, rotation and reading back."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.config import Config, parse_config
from exporter.config.model import DatasetConfig
from exporter.dataset import (
    DatasetWriter,
    Provenance,
    ReadStats,
    SelectionPolicy,
    build_sink,
    read_records,
)
from exporter.dataset.dedup import IdFilter
from exporter.dataset.reader import dataset_files
from exporter.dataset.segments import ACTIVE_NAME, Segments, finished_name, trim_torn_tail
from exporter.exceptions import ConfigError
from exporter.metrics import Metrics
from exporter.model import decode_conversation
from exporter.types import Evaluation
from tests.conftest import conversation


def evaluation(
    conversation_id: str = "c-1",
    *,
    scores: dict[str, float] | None = None,
    flags: list[str] | None = None,
    signals: dict[str, Any] | None = None,
    content: str = "Where is my order?",
    agent: str = "support-bot",
) -> Evaluation:
    """Return an evaluation of docs/api.md's example conversation, bad in task_completion."""
    document = conversation(id=conversation_id, signals=signals or {})
    document["messages"][0]["content"] = content
    return Evaluation(
        decode_conversation(json.dumps(document).encode()),
        agent,
        "base",
        {"task_completion": 0.2} if scores is None else scores,
        flags or [],
        {"task_completion": "The user asked twice."},
    )


def dataset_config(path: Path, **dataset: Any) -> Config:
    """Return a config with the dataset enabled at ``path`` and a fast flush."""
    section = {"enabled": True, "path": str(path), "flush_interval": "20ms", **dataset}
    return parse_config({"dataset": section}, source="test.yml")


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Return a sample's value, 0 when absent."""
    return registry.get_sample_value(f"agent_quality_{name}", labels) or 0.0


class Harness:
    """A writer on a fresh registry, closed at the end of the test."""

    def __init__(self, config: Config, **kwargs: Any) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.metrics = Metrics(config, self.registry)
        self.writer = self.make(**kwargs)

    def make(self, **kwargs: Any) -> DatasetWriter:
        sink = build_sink(self.config, metrics=self.metrics) if not kwargs else None
        if sink is None:
            dataset = self.config.dataset
            sink = DatasetWriter(
                config=dataset,
                policy=SelectionPolicy(selection=dataset.select, dimensions=self.config.dimensions),
                provenance=build_provenance(self.config),
                metrics=self.metrics,
                **kwargs,
            )
        return sink

    async def cycles(self, count: int = 2) -> None:
        """Wait for ``count`` complete flush cycles (the first may have started earlier)."""
        for _ in range(count):
            self.writer.flushed.clear()
            assert await asyncio.to_thread(self.writer.flushed.wait, 60.0)

    def value(self, name: str, **labels: str) -> float:
        return sample(self.registry, name, **labels)


def build_provenance(config: Config) -> Provenance:
    return Provenance(exporter_version="test", config_digest=config.digest)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(config: Config | None = None, **kwargs: Any) -> Harness:
        made.append(Harness(config or dataset_config(tmp_path / "ds"), **kwargs))
        return made[-1]

    yield make
    for item in made:
        await item.writer.aclose()


class TestSelectionPolicy:
    """Which evaluations are selected, and the reasons given."""

    def policy(self, **select: Any) -> SelectionPolicy:
        config = parse_config({"dataset": {"select": select}}, source="test.yml")
        return SelectionPolicy(selection=config.dataset.select, dimensions=config.dimensions)

    def test_bad_dimension(self) -> None:
        """A score at or below its dimension's `bad` threshold selects, naming the dimension."""
        selection = self.policy().select(evaluation(scores={"task_completion": 0.5}))
        assert selection is not None
        assert selection.reasons == ("bad_score:task_completion",)
        assert selection.bad_dimensions == ("task_completion",)

    def test_good_scores_are_not_selected(self) -> None:
        """Scores above every bad threshold select nothing."""
        good = {"task_completion": 0.9, "coherence": 4.0}
        assert self.policy().select(evaluation(scores=good)) is None

    def test_only_listed_dimensions_select(self) -> None:
        """With a list, a bad score in another dimension is recorded but does not select."""
        policy = self.policy(bad_dimensions=["coherence"])
        assert policy.select(evaluation(scores={"task_completion": 0.1})) is None
        both = policy.select(evaluation(scores={"task_completion": 0.1, "coherence": 1.0}))
        assert both is not None
        assert both.reasons == ("bad_score:coherence",)
        assert set(both.bad_dimensions) == {"task_completion", "coherence"}

    def test_flag_selects(self) -> None:
        """A configured flag (the tier-2 judge's confirmed_bad) selects on its own."""
        selection = self.policy().select(evaluation(scores={}, flags=["refusal", "confirmed_bad"]))
        assert selection is not None
        assert selection.reasons == ("flag:confirmed_bad",)

    @pytest.mark.parametrize(
        ("value", "selected"),
        [(True, True), ("yes", True), (1, True), (False, False), ("false", False), (0, False)],
    )
    def test_thumbs_down_signal(self, value: object, selected: bool) -> None:
        """A truthy user_thumbs_down signal selects; falsy spellings do not."""
        result = self.policy().select(evaluation(scores={}, signals={"user_thumbs_down": value}))
        assert (result is not None) is selected

    def test_exclude_flag_vetoes(self) -> None:
        """An excluded flag keeps it out, whatever else selects it."""
        policy = self.policy(exclude_flags=["pii_email"])
        assert policy.select(evaluation(flags=["pii_email"])) is None

    def test_overturned_bad_score_does_not_count(self) -> None:
        """A bad score the confirming judge found fine neither selects nor counts as bad."""
        overturned = evaluation(scores={"task_completion": 0.2, "coherence": 1.0})
        overturned.overturned.add("task_completion")
        selection = self.policy().select(overturned)
        assert selection is not None
        assert selection.reasons == ("bad_score:coherence",)
        assert selection.bad_dimensions == ("coherence",)
        overturned.overturned.add("coherence")
        assert self.policy().select(overturned) is None
        overturned.conversation.signals["user_thumbs_down"] = True  # other evidence still counts
        selection = self.policy().select(overturned)
        assert selection is not None
        assert selection.reasons == ("signal:user_thumbs_down",)
        assert selection.bad_dimensions == ()

    def test_lower_is_better_dimension(self) -> None:
        """For a dimension where lower is better, bad means above the threshold."""
        config = parse_config(
            {
                "dimensions": [
                    {
                        "name": "latency",
                        "scale": {"min": 0, "max": 60},
                        "higher_is_better": False,
                        "thresholds": {"bad": 10},
                    },
                ],
                "scorers": [],
            }
        )
        policy = SelectionPolicy(selection=config.dataset.select, dimensions=config.dimensions)
        assert policy.select(evaluation(scores={"latency": 12})) is not None
        assert policy.select(evaluation(scores={"latency": 10})) is None


class TestIdFilter:
    """Dedup memory is bounded and recent ids are always remembered."""

    def test_remembers_and_rejects_repeats(self) -> None:
        """The second add of an id reports it as seen."""
        ids = IdFilter(10)
        assert ids.add("a")
        assert not ids.add("a")
        assert "a" in ids

    def test_bounded(self) -> None:
        """Never more than max_ids entries; the newest half is always remembered."""
        ids = IdFilter(100)
        for number in range(1000):
            ids.add(f"c-{number}")
            assert len(ids) <= 100
        assert all(f"c-{number}" in ids for number in range(950, 1000))
        assert "c-0" not in ids


class TestWriter:
    """Selected evaluations reach the disk, deduplicated, redacted, with provenance."""

    async def test_selected_records_are_written(self, harness: Callable[..., Harness]) -> None:
        """Only selected evaluations are written; metrics count records and bytes."""
        h = harness()
        await h.writer.handle(evaluation("bad-1"))
        await h.writer.handle(evaluation("good-1", scores={"task_completion": 1.0}))
        await h.cycles()
        records = list(read_records(Path(h.config.dataset.path)))
        assert [r.id for r in records] == ["bad-1"]
        assert h.value("dataset_records_total", agent="support-bot") == 1
        on_disk = sum(p.stat().st_size for p in dataset_files(Path(h.config.dataset.path)))
        assert h.value("dataset_bytes_total") == on_disk > 0

    async def test_record_contents(self, harness: Callable[..., Harness]) -> None:
        """A record carries scores, flags, explanations, reasons and provenance."""
        h = harness()
        await h.writer.handle(evaluation("c-9", flags=["refusal"]))
        await h.cycles()
        (record,) = read_records(Path(h.config.dataset.path))
        assert record.scores == {"task_completion": 0.2}
        assert record.flags == ["refusal"]
        assert record.explanations == {"task_completion": "The user asked twice."}
        assert record.selected_because == ["bad_score:task_completion"]
        assert record.sampling_reason == "base"
        assert record.provenance.config_digest == h.config.digest
        assert record.provenance.redacted == ("email", "card", "ip", "phone")
        assert record.time.tzinfo is not None

    async def test_dedup_by_conversation_id(self, harness: Callable[..., Harness]) -> None:
        """The same conversation id is written once; repeats are counted."""
        h = harness()
        for _ in range(3):
            await h.writer.handle(evaluation("same"))
        await h.cycles()
        await h.writer.handle(evaluation("same"))
        await h.cycles()
        assert [r.id for r in read_records(Path(h.config.dataset.path))] == ["same"]
        assert h.value("dataset_duplicates_total") == 3

    async def test_dedup_survives_a_restart(self, harness: Callable[..., Harness]) -> None:
        """A new writer on the same directory remembers the ids already written."""
        first = harness()
        await first.writer.handle(evaluation("kept"))
        await first.writer.aclose()
        second = harness(first.config)
        await second.writer.handle(evaluation("kept"))
        await second.writer.handle(evaluation("new"))
        await second.cycles()
        ids = [r.id for r in read_records(Path(first.config.dataset.path))]
        assert ids == ["kept", "new"]
        assert second.value("dataset_duplicates_total") == 1

    async def test_redacted_by_default(self, harness: Callable[..., Harness]) -> None:
        """Personal data never reaches the disk: not in messages nor in judge explanations."""
        h = harness()
        bad = evaluation("pii", content="I am jane@example.com, card 4111 1111 1111 1111")
        bad.explanations["task_completion"] = "jane@example.com was ignored"
        await h.writer.handle(bad)
        await h.cycles()
        raw = b"".join(p.read_bytes() for p in dataset_files(Path(h.config.dataset.path)))
        assert b"jane@example.com" not in raw
        assert b"4111" not in raw
        (record,) = read_records(Path(h.config.dataset.path))
        assert record.conversation.messages[0].content == "I am [EMAIL], card [CARD]"
        assert record.explanations["task_completion"] == "[EMAIL] was ignored"

    async def test_redaction_can_be_turned_off(
        self, harness: Callable[..., Harness], tmp_path: Path
    ) -> None:
        """With redaction disabled the text is kept and provenance says nothing was redacted."""
        h = harness(dataset_config(tmp_path / "raw", redaction={"enabled": False}))
        await h.writer.handle(evaluation("raw", content="I am jane@example.com"))
        await h.cycles()
        (record,) = read_records(Path(h.config.dataset.path))
        assert record.conversation.messages[0].content == "I am jane@example.com"
        assert record.provenance.redacted == ()

    async def test_handle_copies_the_evaluation(
        self, harness: Callable[..., Harness], tmp_path: Path
    ) -> None:
        """Changes the pipeline makes after handle() do not leak into the record."""
        h = harness(dataset_config(tmp_path / "ds", flush_interval="1h"))
        item = evaluation("copied")
        await h.writer.handle(item)
        item.flags.append("later")
        item.scores["coherence"] = 1.0
        await h.writer.aclose()
        (record,) = read_records(Path(h.config.dataset.path))
        assert record.flags == []
        assert "coherence" not in record.scores

    async def test_aclose_flushes_and_finishes_the_file(
        self, harness: Callable[..., Harness], tmp_path: Path
    ) -> None:
        """With a long interval, aclose still writes everything and renames the active file."""
        h = harness(dataset_config(tmp_path / "ds", flush_interval="1h"))
        for number in range(5):
            await h.writer.handle(evaluation(f"c-{number}"))
        await h.writer.aclose()
        files = dataset_files(tmp_path / "ds")
        assert [p.name for p in files if p.name == ACTIVE_NAME] == []
        assert len(list(read_records(tmp_path / "ds"))) == 5

    async def test_handle_after_close_counts_a_drop(self, harness: Callable[..., Harness]) -> None:
        """An evaluation arriving after aclose is counted, never silently lost."""
        h = harness()
        await h.writer.aclose()
        await h.writer.handle(evaluation("late"))
        assert h.value("dataset_dropped_records_total", reason="shutdown") == 1

    async def test_pending_is_bounded(
        self, harness: Callable[..., Harness], tmp_path: Path
    ) -> None:
        """Beyond max_pending_records new records are dropped and counted.

        The directory cannot be created (a file is in the way), so nothing leaves.
        """
        (tmp_path / "ds").write_text("in the way")
        h = harness(dataset_config(tmp_path / "ds", flush_interval="1h", max_pending_records=3))
        for number in range(5):
            await h.writer.handle(evaluation(f"c-{number}"))
        await asyncio.sleep(0.2)  # whatever the woken writer tries, it cannot write
        assert h.value("dataset_pending_records") == 3
        assert h.value("dataset_dropped_records_total", reason="backlog_full") == 2

    async def test_a_tenth_of_the_bound_waiting_is_written_at_once(
        self, harness: Callable[..., Harness], tmp_path: Path
    ) -> None:
        """Records wait for the interval (here an hour) only while fewer than a tenth of
        max_pending_records: then the writer wakes, so a burst lands as fast as the disk goes.
        """
        h = harness(dataset_config(tmp_path / "ds", flush_interval="1h", max_pending_records=100))
        for number in range(9):
            await h.writer.handle(evaluation(f"c-{number}"))
        await asyncio.sleep(0.3)
        assert h.value("dataset_records_total", agent="support-bot") == 0
        for number in range(9, 40):
            await h.writer.handle(evaluation(f"c-{number}"))
        for _ in range(600):
            if h.value("dataset_records_total", agent="support-bot") == 40:
                break
            await asyncio.sleep(0.01)
        assert h.value("dataset_records_total", agent="support-bot") == 40
        assert h.value("dataset_pending_records") == 0

    async def test_a_failing_disk_is_retried_on_the_interval_only(
        self, harness: Callable[..., Harness], tmp_path: Path
    ) -> None:
        """Records piling up on a broken directory do not make the writer retry per record."""
        (tmp_path / "ds").write_text("in the way")
        h = harness(dataset_config(tmp_path / "ds", flush_interval="1h", max_pending_records=100))
        for number in range(90):
            await h.writer.handle(evaluation(f"c-{number}"))
            if number % 10 == 0:
                await asyncio.sleep(0.02)  # let the woken writer fail
        assert h.value("dataset_write_errors_total", reason="io") == 1
        assert h.value("dataset_pending_records") == 90

    async def test_disabled_builds_no_sink(self) -> None:
        """The default config has the dataset off: no writer, no thread, no directory."""
        config = parse_config({})
        assert config.dataset.enabled is False
        threads = threading.active_count()
        assert build_sink(config, metrics=Metrics(config, CollectorRegistry())) is None
        assert threading.active_count() == threads


class TestRotation:
    """Files rotate by size and age, by atomic rename, and never hold half a record."""

    async def test_size_rotation(self, harness: Callable[..., Harness], tmp_path: Path) -> None:
        """Finished files stay under max_bytes, hold whole records, and nothing is lost."""
        h = harness(dataset_config(tmp_path / "ds", rotation={"max_bytes": 8192}))
        for number in range(40):
            await h.writer.handle(evaluation(f"c-{number}", content="x" * 400))
        await h.cycles()
        await h.writer.aclose()
        files = dataset_files(tmp_path / "ds")
        assert len(files) > 3
        for path in files:
            data = path.read_bytes()
            assert len(data) <= 8192
            assert data.endswith(b"\n")
        assert sorted(r.id for r in read_records(tmp_path / "ds")) == sorted(
            f"c-{n}" for n in range(40)
        )
        assert h.value("dataset_rotations_total") == len(files)

    async def test_age_rotation(self, harness: Callable[..., Harness], tmp_path: Path) -> None:
        """An active file older than max_age is finished even with no new records."""
        now = [1_800_000_000.0]
        config = dataset_config(tmp_path / "ds", rotation={"max_age": "1m"})
        h = harness(config, clock=lambda: now[0])
        await h.writer.handle(evaluation("old"))
        await h.cycles()
        assert (tmp_path / "ds" / ACTIVE_NAME).exists()
        now[0] += 61
        await h.cycles()
        assert not (tmp_path / "ds" / ACTIVE_NAME).exists()
        (finished,) = dataset_files(tmp_path / "ds")
        assert finished.name == "feedback-20270115T080000.000000Z.jsonl"
        assert h.value("dataset_rotations_total") == 1

    def test_failed_append_leaves_whole_lines(self, tmp_path: Path) -> None:
        """A write that fails part-way is truncated back to the last complete line."""
        segments = Segments(tmp_path, max_bytes=1 << 20, max_age=3600)
        segments.open()
        assert segments.append([b'{"id": "a"}\n']) == 1
        # A file-size limit makes the kernel accept 100 bytes of the write, then refuse (EFBIG).
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(segments.active) + 100, hard))
        try:
            with pytest.raises(OSError, match="too large"):
                segments.append([b"y" * 1024 + b"\n"])
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)
        assert segments.active.read_bytes() == b'{"id": "a"}\n'
        segments.close()


class TestRetention:
    """Finished files are deleted, oldest first, past the byte or age bound; never current."""

    @staticmethod
    def finished(directory: Path, sizes: list[int], *, start: float = 1_800_000_000.0) -> Path:
        """Write one finished file per size, opened a day apart from ``start``."""
        directory.mkdir()
        for day, size in enumerate(sizes):
            path = directory / finished_name(start + day * 86400)
            path.write_bytes(b"x" * (size - 1) + b"\n")
        return directory

    def test_byte_bound_counts_the_current_file(self, tmp_path: Path) -> None:
        """Over the bound, the oldest finished files go until the directory fits."""
        directory = self.finished(tmp_path / "ds", [4000, 4000, 4000])
        segments = Segments(directory, max_bytes=1 << 20, max_age=3600, retention_bytes=9000)
        segments.open()
        segments.append([b"y" * 1999 + b"\n"])  # 14,000 bytes in all
        assert segments.enforce_retention() == 2
        kept = sorted(p.name for p in directory.iterdir() if p.suffix == ".jsonl")
        assert kept == [ACTIVE_NAME, finished_name(1_800_000_000.0 + 2 * 86400)]
        assert segments.enforce_retention() == 0  # 6,000 bytes: within the bound
        segments.close()

    def test_current_file_is_never_deleted(self, tmp_path: Path) -> None:
        """A current file alone over the bound stays: it is still being written."""
        directory = self.finished(tmp_path / "ds", [4096])
        segments = Segments(directory, max_bytes=1 << 20, max_age=3600, retention_bytes=4096)
        segments.open()
        segments.append([b"y" * 8191 + b"\n"])
        assert segments.enforce_retention() == 1
        assert [p.name for p in directory.iterdir() if p.suffix == ".jsonl"] == [ACTIVE_NAME]
        segments.close()

    def test_age_bound_by_opening_time(self, tmp_path: Path) -> None:
        """Files opened longer than max_age ago go; younger ones and foreign names stay."""
        start = 1_800_000_000.0
        directory = self.finished(tmp_path / "ds", [100, 100, 100, 100], start=start)
        (directory / "feedback-mine.jsonl").write_bytes(b"{}\n")  # sorts after; never dated
        now = start + 3 * 86400 + 60  # the files were opened 3d, 2d, 1d and 60s ago
        segments = Segments(
            directory, max_bytes=1 << 20, max_age=3600, retention_age=1.5 * 86400, clock=lambda: now
        )
        segments.open()
        assert segments.enforce_retention() == 2
        assert len(dataset_files(directory)) == 3
        segments.close()

    def test_no_bounds_keep_everything(self, tmp_path: Path) -> None:
        """With both bounds null nothing is ever deleted."""
        directory = self.finished(tmp_path / "ds", [100] * 5, start=0.0)
        segments = Segments(directory, max_bytes=1 << 20, max_age=3600)
        segments.open()
        assert segments.enforce_retention() == 0
        assert len(dataset_files(directory)) == 5
        segments.close()

    async def test_writer_keeps_the_newest_within_the_bound(
        self, harness: Callable[..., Harness], tmp_path: Path
    ) -> None:
        """The running writer deletes after each rotation, counts it, and keeps the newest."""
        config = dataset_config(
            tmp_path / "ds", rotation={"max_bytes": 8192}, retention={"max_bytes": 20000}
        )
        h = harness(config)
        for number in range(40):
            await h.writer.handle(evaluation(f"c-{number:02d}", content="x" * 400))
        await h.cycles()
        directory = tmp_path / "ds"
        on_disk = sum(p.stat().st_size for p in directory.iterdir() if p.suffix == ".jsonl")
        assert on_disk <= 20000
        assert h.value("dataset_deleted_files_total") >= 1
        kept = sorted(r.id for r in read_records(directory))
        assert kept[-1] == "c-39"
        assert kept == [f"c-{n:02d}" for n in range(40 - len(kept), 40)]


class TestReader:
    """The reader loads every complete record and skips what a crash left."""

    async def test_torn_last_line_is_skipped(
        self, harness: Callable[..., Harness], tmp_path: Path
    ) -> None:
        """Half a line at the end of the active file is skipped and counted, not an error."""
        h = harness(dataset_config(tmp_path / "ds", flush_interval="1h"))
        for number in range(3):
            await h.writer.handle(evaluation(f"c-{number}"))
        await h.writer.aclose()
        (finished,) = dataset_files(tmp_path / "ds")
        whole = finished.read_bytes()
        finished.unlink()
        # Three whole records, then half of the first again without its newline.
        (tmp_path / "ds" / ACTIVE_NAME).write_bytes(whole + whole[: len(whole) // 6])
        stats = ReadStats()
        assert [r.id for r in read_records(tmp_path / "ds", stats=stats)] == ["c-0", "c-1", "c-2"]
        assert (stats.torn, stats.corrupt, stats.records) == (1, 0, 3)

    def test_corrupt_line_is_skipped(self, tmp_path: Path) -> None:
        """A complete line that is not a record is skipped and counted."""
        (tmp_path / "feedback-20260101T000000.000000Z.jsonl").write_bytes(b"{not json}\n")
        stats = ReadStats()
        assert list(read_records(tmp_path, stats=stats)) == []
        assert stats.corrupt == 1

    def test_trim_torn_tail(self, tmp_path: Path) -> None:
        """Trimming cuts after the last newline, also when the torn part is long."""
        path = tmp_path / "f"
        path.write_bytes(b"one\ntwo\n" + b"z" * 200_000)
        assert trim_torn_tail(path) == 200_000
        assert path.read_bytes() == b"one\ntwo\n"

    async def test_start_finishes_what_a_crash_left(
        self, harness: Callable[..., Harness], tmp_path: Path
    ) -> None:
        """A leftover active file is trimmed and renamed when a writer starts."""
        directory = tmp_path / "ds"
        directory.mkdir()
        h = harness(dataset_config(tmp_path / "seed", flush_interval="1h"))
        await h.writer.handle(evaluation("survivor"))
        await h.writer.aclose()
        (seed,) = dataset_files(tmp_path / "seed")
        (directory / ACTIVE_NAME).write_bytes(seed.read_bytes() + b'{"format": "agent-qu')
        again = harness(dataset_config(directory))
        await again.cycles()
        (finished,) = dataset_files(directory)
        assert finished.name != ACTIVE_NAME
        assert finished.read_bytes() == seed.read_bytes()


class TestConfig:
    """The dataset section: defaults in one place, paths, errors that name the key."""

    def test_dataclass_defaults_match_default_yml(self) -> None:
        """DatasetConfig() (used when no config is loaded) says what default.yml says."""
        loaded = parse_config({}).dataset
        assert replace(loaded, path=DatasetConfig().path) == DatasetConfig()

    def test_retention_bounds_can_be_turned_off(self) -> None:
        """null for either bound means no limit of that kind."""
        dataset = parse_config({"dataset": {"retention": {"max_bytes": None, "max_age": None}}})
        assert (dataset.dataset.retention_max_bytes, dataset.dataset.retention_max_age) == (
            None,
            None,
        )

    def test_relative_path_follows_the_config_file(self, tmp_path: Path) -> None:
        """A relative path is resolved against the config file's directory."""
        config = parse_config({"dataset": {"path": "fb"}}, source=str(tmp_path / "c.yml"))
        assert config.dataset.path == str(tmp_path / "fb")

    @pytest.mark.parametrize(
        ("section", "where"),
        [
            ({"select": {"bad_dimensions": ["nope"]}}, "$.dataset.select.bad_dimensions[0]"),
            (
                {"redaction": {"patterns": [{"name": "x", "regex": "("}]}},
                "$.dataset.redaction.patterns[0].regex",
            ),
            (
                {"redaction": {"patterns": [{"name": "email", "regex": "x"}]}},
                "$.dataset.redaction.patterns[0].name",
            ),
            ({"redaction": {"kinds": ["ssn"]}}, "$.dataset.redaction.kinds[0]"),
            ({"rotation": {"max_age": "soon"}}, "$.dataset.rotation.max_age"),
            ({"retention": {"max_age": "soon"}}, "$.dataset.retention.max_age"),
            ({"retention": {"max_bytes": 10}}, "$.dataset.retention.max_bytes"),
        ],
    )
    def test_errors_name_the_key(self, section: dict[str, Any], where: str) -> None:
        """Bad dataset settings fail at load, naming the JSON path."""
        with pytest.raises(ConfigError) as caught:
            parse_config({"dataset": section}, source="test.yml")
        assert caught.value.path == where
