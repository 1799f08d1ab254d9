"""The daemon's memory when fed ten times faster than it can score, for minutes on end.

    python bench/bench_memory.py [--minutes 5] [--overload 10] [--sleep-ms 20]

The drain rate is made known and small: one pipeline worker and a plugin scorer that sleeps
``--sleep-ms`` (``bench/_slow_scorer.py``), beside the default scorers, so about
1000 / sleep_ms conversations/s leave the queue. Half the conversations are sampled
(``base_rate: 0.5``, no daily maximum) and fed at ``--overload`` times the drain rate, so the
queue fills within seconds and the surplus is dropped and counted (``queue_full``), while the
other half fills the late-signal buffer to its bounds: both bounded structures are at their
largest for most of the run.

The daemon runs pinned to one core; this process posts single conversations (distinct ids,
16 connections, paced) from the other core, sampled at ``--overload`` times the drain rate,
and reads the daemon's RSS (``VmRSS``) every ``--interval`` seconds. Reported: the idle RSS
before any load (the baseline), the maximum, the final value, and the slope over the last
half of the run in MB/min. Targets: maximum <= 150 MB, last-half slope within +-1 MB/min
(flat), every conversation accounted for and the drops counted as ``queue_full``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import yaml
from _harness import LOAD_CPU, daemon_args, encoded, free_port, pinned_self, scraped, server, total

from exporter.config.loader import default_document

TARGET_MB, FLAT_MB_PER_MIN = 150.0, 1.0
#: The sampled share (besides the 1 in 50 boosted): the rest waits in the late-signal buffer,
#: which fills to its bounds.
SAMPLED = 0.5
CONNECTIONS = 16


def config_document(sleep_ms: float) -> dict[str, Any]:
    """Return the default config with everything sampled, one worker and the slow scorer."""
    slow = {
        "name": "slow",
        "type": "plugin",
        "path": "bench._slow_scorer:score",
        "dimension": "coherence",
        "options": {"sleep_ms": sleep_ms},
    }
    return {
        "sampling": {
            "base_rate": SAMPLED,
            # Every id in the boost band: a late signal could promote any unsampled one, so
            # all of them wait in the late-signal buffer (a thumbs-down, 1 in 50, is boosted).
            "boost_rate": 1.0,
            "daily_budget": {"max_samples": None},
        },
        # A full queue at the end is the point; shutting down need not wait for it.
        "pipeline": {"workers": 1, "drain_grace_period": "1s"},
        "scorers": [*default_document()["scorers"], slow],
    }


def rss_mb(pid: int) -> float:
    """Return the resident set size of ``pid`` in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def feed(port: int, *, rate: float, seconds: float) -> int:
    """Post single conversations at ``rate``/s for ``seconds``; return how many were sent."""
    url = f"http://127.0.0.1:{port}/v1/conversations"
    headers = {"Content-Type": "application/json"}
    count = int(rate * seconds)
    started = time.monotonic()
    next_index = 0
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                index, next_index = next_index, next_index + 1
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                async with session.post(url, data=encoded(index), headers=headers) as response:
                    if response.status != 202:
                        raise RuntimeError(f"{response.status}: {await response.text()}")
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return count


async def sample(pid: int, *, interval: float, until: asyncio.Event) -> list[tuple[float, float]]:
    """Return (seconds since start, RSS MB) every ``interval`` until ``until`` is set."""
    started, points = time.monotonic(), []
    while True:
        points.append((time.monotonic() - started, rss_mb(pid)))
        try:
            await asyncio.wait_for(until.wait(), interval)
        except TimeoutError:
            continue
        points.append((time.monotonic() - started, rss_mb(pid)))
        return points


async def _run(pid: int, port: int, *, rate: float, seconds: float, interval: float) -> Any:
    done = asyncio.Event()
    sampler = asyncio.create_task(sample(pid, interval=interval, until=done))
    try:
        sent = await feed(port, rate=rate, seconds=seconds)
    finally:
        done.set()
    return sent, await sampler


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Return the least-squares slope of RSS over time, in MB per minute."""
    if len(points) < 2:
        return 0.0
    per_second = statistics.linear_regression([t for t, _ in points], [m for _, m in points])
    return per_second.slope * 60


def measure(*, minutes: float, overload: float, sleep_ms: float, interval: float) -> dict[str, Any]:
    """Run the daemon under overload; return RSS points and its counters at the end."""
    nominal = 1000 / sleep_ms
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "memory.yml"
        config.write_text(yaml.safe_dump(config_document(sleep_ms)))
        port = free_port()
        with server(daemon_args(port, config), port=port) as pid:
            time.sleep(2)
            idle = rss_mb(pid)
            started = time.monotonic()
            sent, points = asyncio.run(
                _run(
                    pid,
                    port,
                    rate=nominal * overload / SAMPLED,
                    seconds=minutes * 60,
                    interval=interval,
                )
            )
            elapsed = time.monotonic() - started
            samples = scraped(port)
    return {
        "idle": idle,
        "points": points,
        "sent": sent,
        "elapsed": elapsed,
        "nominal": nominal,
        "received": total(samples, "agent_quality_conversations_total"),
        "scored": total(samples, "agent_quality_scored_total"),
        "queue_full": total(samples, "agent_quality_dropped_total", reason="queue_full"),
        "dropped": total(samples, "agent_quality_dropped_total"),
        "not_sampled": total(samples, "agent_quality_not_sampled_total"),
        "buffered": total(samples, "agent_quality_late_buffer_conversations"),
        "waiting": total(samples, "agent_quality_queue_depth")
        + total(samples, "agent_quality_in_flight"),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the bench, print its table and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--overload", type=float, default=10, help="times the drain rate")
    parser.add_argument("--sleep-ms", type=float, default=20, help="the slow scorer's sleep")
    parser.add_argument("--interval", type=float, default=5, help="seconds between RSS samples")
    args = parser.parse_args(argv)
    with pinned_self(LOAD_CPU):
        run = measure(
            minutes=args.minutes,
            overload=args.overload,
            sleep_ms=args.sleep_ms,
            interval=args.interval,
        )
    points = run["points"]
    half = points[-1][0] / 2
    last_half = [(t, mb) for t, mb in points if t >= half]
    drained = run["scored"] / run["elapsed"]
    fed = run["sent"] / run["elapsed"] * SAMPLED  # the sampled share is what meets the queue
    unaccounted = run["received"] - run["scored"] - run["dropped"] - run["waiting"]
    unaccounted -= run["not_sampled"] + run["buffered"]
    figures = {
        "idle_mb": run["idle"],
        "max_mb": max(mb for _, mb in points),
        "final_mb": points[-1][1],
        "slope_mb_per_min": slope(last_half),
        "fed_per_s": fed,
        "drained_per_s": drained,
        "overload": fed / drained if drained else float("inf"),
        "queue_full": run["queue_full"],
        "unaccounted": unaccounted,
    }
    print(
        f"{args.minutes:g} min, fed {fed:,.0f}/s (asked {run['nominal'] * args.overload:,.0f}/s),"
        f" drained {drained:,.1f}/s (nominal {run['nominal']:,.0f}/s): x{figures['overload']:.1f}"
    )
    print("RSS MB by second: " + ", ".join(f"{t:.0f}s {mb:.1f}" for t, mb in points))
    rows = [
        ("RSS idle, before load (baseline), MB", f"{figures['idle_mb']:.1f}", ""),
        ("RSS max, MB", f"{figures['max_mb']:.1f}", f"<= {TARGET_MB:g}"),
        ("RSS final, MB", f"{figures['final_mb']:.1f}", f"<= {TARGET_MB:g}"),
        ("RSS max / idle", f"{figures['max_mb'] / figures['idle_mb']:.2f}", ""),
        ("RSS slope, last half, MB/min", f"{figures['slope_mb_per_min']:+.2f}", "flat, +-1"),
        ("received by the daemon", f"{run['received']:,.0f}", f"= {run['sent']:,} sent"),
        ("scored", f"{run['scored']:,.0f}", ""),
        ("dropped, queue_full", f"{run['queue_full']:,.0f}", "> 0"),
        ("unaccounted (received - scored - dropped - queued)", f"{unaccounted:,.0f}", "0"),
    ]
    for name, value, target in rows:
        print(f"{name:<52}{value:>12}{target:>16}")
    if run["received"] != run["sent"]:
        raise RuntimeError(f"sent {run['sent']} but the daemon counted {run['received']}")
    return figures


if __name__ == "__main__":
    main()
