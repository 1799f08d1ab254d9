"""Ingest throughput: the daemon against a bare aiohttp handler, measured in the same run.

    python bench/bench_ingest.py [--seconds 10] [--rounds 3]

Each server runs pinned to one core with wrk (1 thread, 32 connections) on the other. Bare
aiohttp and the daemon take ``--rounds`` turns each; the medians are compared. Prints requests/s
for single-conversation POSTs (daemon vs bare aiohttp: target ratio >= 0.9 at default
sampling) and conversations/s for NDJSON batches of 1000 (target >= 100k/s/core).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Load, daemon_args, encoded, free_port, median_load, server, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    singles = [encoded(i) for i in range(2000)]
    batches = [b"\n".join(encoded(b * 1000 + i) for i in range(1000)) for b in range(20)]

    # Bare and daemon take turns, each in a fresh process, and the medians are compared: a
    # drift of the machine during the run then weighs on both sides alike.
    bare_runs: list[Load] = []
    single_runs: list[Load] = []
    for _ in range(args.rounds):
        port = free_port()
        with server(
            [sys.executable, "bench/bare_server.py", "--port", str(port)], port=port
        ) as pid:
            wrk(port, singles[:100], content_type="application/json", seconds=2)  # warm-up
            bare_runs.append(
                wrk(port, singles, content_type="application/json", seconds=args.seconds, pid=pid)
            )
        port = free_port()
        with server(daemon_args(port), port=port) as pid:
            wrk(port, singles[:100], content_type="application/json", seconds=2)
            single_runs.append(
                wrk(port, singles, content_type="application/json", seconds=args.seconds, pid=pid)
            )
    port = free_port()
    with server(daemon_args(port), port=port) as pid:
        wrk(port, batches[:2], content_type="application/x-ndjson", seconds=2, connections=4)
        batch = wrk(
            port,
            batches,
            content_type="application/x-ndjson",
            seconds=args.seconds,
            connections=4,
            pid=pid,
        )
    for name, runs in (("bare", bare_runs), ("daemon", single_runs)):
        each = ", ".join(f"{run.cpu_us_per_request:.1f}" for run in runs)
        print(f"{name} single POST, CPU us per request by round: {each}", file=sys.stderr)
    bare, single = median_load(bare_runs), median_load(single_runs)

    rows = [
        ("bare aiohttp, single POST", bare.requests_per_second, bare.cpu_us_per_request, ""),
        ("daemon, single POST", single.requests_per_second, single.cpu_us_per_request, ""),
        (
            "daemon, NDJSON batch of 1000 (per conv.)",
            batch.requests_per_second * 1000,
            batch.cpu_us_per_request / 1000,
            ">= 100,000/s",
        ),
    ]
    print(f"{'measure':<42}{'per second':>14}{'CPU us each':>13}{'target':>14}")
    for name, rate, cpu, target in rows:
        print(f"{name:<42}{rate:>14,.0f}{cpu:>13.1f}{target:>14}")
    ratios = [
        ("ratio daemon/bare, throughput", single.requests_per_second / bare.requests_per_second),
        (
            "ratio daemon/bare, by CPU per request",
            bare.cpu_us_per_request / single.cpu_us_per_request,
        ),
    ]
    for name, ratio in ratios:
        print(f"{name:<42}{ratio:>14.2f}{'':>13}{'>= 0.90':>14}")
    per_cpu_second = 1e6 / (batch.cpu_us_per_request / 1000)
    name = "NDJSON conversations per CPU-second"
    print(f"{name:<42}{per_cpu_second:>14,.0f}{'':>13}{'>= 100,000':>14}")


if __name__ == "__main__":
    main()
