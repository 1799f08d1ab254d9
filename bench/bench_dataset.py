"""The feedback dataset writer: records and MB a second to disk, and what a burst loses.

    python bench/bench_dataset.py [--burst 85000] [--rate 17000] [--records 60000]

The real writer (``exporter.dataset.build_sink``) on the embedded default's dataset settings
(flush every 5 s, at most 10,000 records waiting, redaction on), in this process, fed from
the event loop as the pipeline feeds it: ~800-byte conversations (``bench/_harness.py``), each
scored bad so that it is selected, each with its own id. Two measurements:

- **throughput**: ``--records`` fed as fast as the writer takes them, never more than the
  pending bound (so nothing is dropped); records and MB a second written and fsynced, from the
  first record queued to the last one on disk, per wall-clock second and per CPU-second of
  the process (the loop feeding it and the writer thread);
- **burst**: ``--burst`` records fed at ``--rate`` a second, as when a bad release makes every
  scored conversation a dataset record (issue 16 saw 65,000 of 85,000 lost); how many were
  dropped as ``backlog_full``, and how long the backlog took to land after the burst.

The disk is a temporary directory on this machine's own filesystem. Target: no drop in the
burst, and a throughput above its rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import SERVER_CPU, conversation, pinned_self
from prometheus_client import CollectorRegistry

from exporter.config import parse_config
from exporter.dataset import DatasetWriter, build_sink
from exporter.metrics import Metrics
from exporter.model import decode_conversation
from exporter.types import Evaluation

#: Records fed per loop turn before yielding to the writer thread, as a busy pipeline would.
FEED_BATCH = 50


def evaluations(count: int, *, start: int) -> list[Evaluation]:
    """Return ``count`` bad evaluations of distinct conversations (all selected)."""
    made = []
    for index in range(start, start + count):
        document = conversation(index)
        made.append(
            Evaluation(
                decode_conversation(json.dumps(document).encode()),
                "support-bot",
                "base",
                {"task_completion": 0.2, "tool_success": 1.0},
                [],
                {"task_completion": "The agent answered a question nobody asked."},
            )
        )
    return made


class Bench:
    """One writer on a fresh registry and directory."""

    def __init__(self, directory: Path) -> None:
        config = parse_config({"dataset": {"enabled": True, "path": str(directory)}})
        self.registry = CollectorRegistry()
        self.metrics = Metrics(config, self.registry)
        sink = build_sink(config, metrics=self.metrics)
        assert sink is not None
        self.writer: DatasetWriter = sink
        self.max_pending = config.dataset.max_pending_records

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(f"agent_quality_{name}", labels) or 0.0

    def pending(self) -> float:
        return self.value("dataset_pending_records")

    async def landed(self, count: float, *, within: float = 600.0) -> float:
        """Wait until ``count`` records are written or dropped; return when (monotonic)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            done = self.value("dataset_records_total", agent="support-bot") + self.value(
                "dataset_dropped_records_total", reason="backlog_full"
            )
            if done >= count:
                return time.monotonic()
            await asyncio.sleep(0.005)
        raise TimeoutError(f"{count} records did not land within {within}s")


async def throughput(directory: Path, records: int) -> dict[str, float]:
    """Feed ``records`` without ever exceeding the pending bound; return the write rates."""
    bench = Bench(directory)
    items = evaluations(records, start=0)
    started, cpu_started = time.monotonic(), time.process_time()
    fed = 0
    while fed < records:
        room = int(bench.max_pending - bench.pending()) - FEED_BATCH
        if room <= 0:
            await asyncio.sleep(0.001)
            continue
        for item in items[fed : fed + min(room, FEED_BATCH)]:
            await bench.writer.handle(item)
        fed = min(records, fed + min(room, FEED_BATCH))
        await asyncio.sleep(0)
    finished = await bench.landed(records)
    used = time.process_time() - cpu_started
    written = bench.value("dataset_records_total", agent="support-bot")
    megabytes = bench.value("dataset_bytes_total") / 1e6
    dropped = bench.value("dataset_dropped_records_total", reason="backlog_full")
    await bench.writer.aclose()
    elapsed = finished - started
    return {
        "records_per_s": written / elapsed,
        "mb_per_s": megabytes / elapsed,
        "records_per_cpu_s": written / used,
        "bytes_per_record": megabytes * 1e6 / written,
        "throughput_dropped": dropped,
    }


async def burst(directory: Path, count: int, rate: float) -> dict[str, float]:
    """Feed ``count`` records at ``rate`` a second; return the drops and the drain time."""
    bench = Bench(directory)
    items = evaluations(count, start=10_000_000)
    started = time.monotonic()
    for first in range(0, count, FEED_BATCH):
        delay = started + first / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for item in items[first : first + FEED_BATCH]:
            await bench.writer.handle(item)
    fed_for = time.monotonic() - started
    finished = await bench.landed(count)
    dropped = bench.value("dataset_dropped_records_total", reason="backlog_full")
    written = bench.value("dataset_records_total", agent="support-bot")
    await bench.writer.aclose()
    return {
        "burst_rate": count / fed_for,
        "burst_written": written,
        "burst_dropped": dropped,
        "burst_drain_s": finished - started - fed_for,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the bench, print its table and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=60_000, help="for the throughput")
    parser.add_argument("--burst", type=int, default=85_000)
    parser.add_argument("--rate", type=float, default=17_000, help="burst records a second")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    with pinned_self(SERVER_CPU), tempfile.TemporaryDirectory() as tmp:
        figures |= asyncio.run(throughput(Path(tmp) / "throughput", args.records))
        figures |= asyncio.run(burst(Path(tmp) / "burst", args.burst, args.rate))
    rows = [
        ("written, records/s (wall clock)", f"{figures['records_per_s']:,.0f}", ""),
        ("written, MB/s (wall clock)", f"{figures['mb_per_s']:,.1f}", ""),
        ("written, records per CPU-second", f"{figures['records_per_cpu_s']:,.0f}", ""),
        ("bytes per record", f"{figures['bytes_per_record']:,.0f}", ""),
        (
            f"burst: {args.burst:,} fed at, records/s",
            f"{figures['burst_rate']:,.0f}",
            f"asked {args.rate:,.0f}",
        ),
        ("burst: written", f"{figures['burst_written']:,.0f}", ""),
        ("burst: dropped (backlog_full)", f"{figures['burst_dropped']:,.0f}", "0"),
        ("burst: backlog landed after the burst, s", f"{figures['burst_drain_s']:.1f}", ""),
    ]
    for name, value, target in rows:
        print(f"{name:<46}{value:>12}{target:>14}")
    return figures


if __name__ == "__main__":
    main()
