"""Ingest + scoring with ``otel_export`` off, its endpoint refusing connections, and hanging.

    python bench/bench_events.py [--conversations 4000] [--rounds 5] [--batch 200]

The real daemon, pinned to one core, takes traced conversations as NDJSON (every one sampled,
the daily cap out of reach) and scores them with the default scorers; this process posts from
the other core and waits until ``agent_quality_scored_total`` has them all. Three daemons,
measured in alternating rounds: ``off`` (the embedded default, the baseline), ``dead`` (the
endpoint is a loopback port nothing listens on) and ``hanging`` (a socket that accepts and
never answers). Figures: the daemon's CPU per conversation, each variant's median over the
rounds as a ratio to ``off``'s, the evaluation events it counted (sent, failed, dropped) and
its resident memory at the end. Target: dead and hanging within 5% of off.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from _harness import (
    LOAD_CPU,
    conversation,
    cpu_seconds,
    daemon_args,
    free_port,
    pinned_self,
    scraped,
    server,
    total,
)

TARGET = 1.05
VARIANTS = ("off", "dead", "hanging")


@contextlib.contextmanager
def hanging_endpoint() -> Iterator[int]:
    """Yield the port of a socket that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


def config_document(endpoint: str | None) -> dict[str, Any]:
    """Return the config: everything sampled, no cap, events to ``endpoint`` (None: off)."""
    document: dict[str, Any] = {
        "sampling": {"base_rate": 1.0, "boost_rate": 1.0, "daily_budget": {"max_samples": None}},
        "pipeline": {"queue_size": 100_000},
    }
    if endpoint is not None:
        document["otel_export"] = {"enabled": True, "endpoint": endpoint, "timeout": "5s"}
    return document


def bodies(count: int, batch: int, offset: int) -> list[bytes]:
    """Return NDJSON bodies of ``batch`` traced conversations each."""
    lines = []
    for index in range(offset, offset + count):
        item = conversation(index)
        item["id"] = f"bench-{index}"
        item["trace_id"] = f"{index + 1:032x}"
        item["span_id"] = f"{index + 1:016x}"
        lines.append(json.dumps(item).encode())
    return [b"\n".join(lines[i : i + batch]) for i in range(0, len(lines), batch)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def one_round(port: int, pid: int, *, count: int, batch: int, offset: int) -> float:
    """Post ``count`` conversations, wait until scored; return daemon CPU us per conversation."""
    payloads = bodies(count, batch, offset)
    before = total(scraped(port), "agent_quality_scored_total")
    cpu = cpu_seconds(pid)
    for body in payloads:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/conversations",
            data=body,
            headers={"Content-Type": "application/x-ndjson"},
        )
        urllib.request.urlopen(request, timeout=30).close()
    deadline = time.monotonic() + 300
    while total(scraped(port), "agent_quality_scored_total") < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon did not score the round in 300 s")
        time.sleep(0.05)
    return (cpu_seconds(pid) - cpu) / count * 1e6


def measure(*, count: int, rounds: int, batch: int) -> dict[str, Any]:
    """Run the three daemons side by side and alternate rounds between them."""
    results: dict[str, Any] = {name: {"us": []} for name in VARIANTS}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        hanging = stack.enter_context(hanging_endpoint())
        endpoints = {
            "off": None,
            "dead": f"http://127.0.0.1:{free_port()}/v1/logs",
            "hanging": f"http://127.0.0.1:{hanging}/v1/logs",
        }
        daemons: dict[str, tuple[int, int]] = {}
        for name, endpoint in endpoints.items():
            path = Path(tmp) / f"{name}.yml"
            path.write_text(yaml.safe_dump(config_document(endpoint)))
            port = free_port()
            pid = stack.enter_context(server(daemon_args(port, path), port=port))
            daemons[name] = (port, pid)
        for index in range(rounds + 1):  # the first round warms up and is not counted
            for name in VARIANTS if index % 2 else reversed(VARIANTS):
                port, pid = daemons[name]
                us = one_round(port, pid, count=count, batch=batch, offset=index * count)
                if index:
                    results[name]["us"].append(us)
        for name, (port, pid) in daemons.items():
            samples = scraped(port)
            results[name]["events"] = {
                outcome: total(samples, "agent_quality_evaluation_events_total", outcome=outcome)
                for outcome in ("sent", "failed", "dropped")
            }
            results[name]["scored"] = total(samples, "agent_quality_scored_total")
            results[name]["rss_kib"] = rss_kib(pid)
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the bench, print its table and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args(argv)
    with pinned_self(LOAD_CPU):
        results = measure(count=args.conversations, rounds=args.rounds, batch=args.batch)
    base = statistics.median(results["off"]["us"])
    print(
        f"{args.conversations:,} conversations a round, {args.rounds} alternating rounds, "
        "daemon on one core"
    )
    head = ("otel_export", "CPU us/conv", "spread", "ratio", "sent", "failed", "dropped", "RSS MiB")
    print(f"{head[0]:<12}" + "".join(f"{h:>12}" for h in head[1:]))
    figures: dict[str, float] = {}
    for name in VARIANTS:
        runs = results[name]["us"]
        median = statistics.median(runs)
        events = results[name]["events"]
        ratio = median / base
        print(
            f"{name:<12}{median:>12.1f}{f'{min(runs):.0f}-{max(runs):.0f}':>12}{ratio:>12.3f}"
            f"{events['sent']:>12,.0f}{events['failed']:>12,.0f}{events['dropped']:>12,.0f}"
            f"{results[name]['rss_kib'] / 1024:>12.1f}"
        )
        figures[f"{name}_us"] = median
        figures[f"{name}_ratio"] = ratio
        figures[f"{name}_dropped"] = events["dropped"]
        figures[f"{name}_rss_kib"] = float(results[name]["rss_kib"])
    print(f"target: dead and hanging CPU per conversation <= {TARGET:.2f} x off")
    return figures


if __name__ == "__main__":
    main()
