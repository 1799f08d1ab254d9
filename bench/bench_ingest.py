"""Ingest throughput: the daemon against a bare aiohttp handler, measured in the same run.

    python bench/bench_ingest.py [--seconds 10]

Each server runs pinned to one core with wrk (1 thread, 32 connections) on the other.
Prints requests/s for single-conversation POSTs (daemon vs bare aiohttp: target ratio >= 0.9
at default sampling) and conversations/s for NDJSON batches of 1000 (target >= 100k/s/core).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import encoded, free_port, server, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    singles = [encoded(i) for i in range(2000)]
    batches = [b"\n".join(encoded(b * 1000 + i) for i in range(1000)) for b in range(20)]

    port = free_port()
    with server([sys.executable, "bench/bare_server.py", "--port", str(port)], port=port) as pid:
        wrk(port, singles[:100], content_type="application/json", seconds=2)  # warm-up
        bare = wrk(port, singles, content_type="application/json", seconds=args.seconds, pid=pid)

    port = free_port()
    daemon = [
        sys.executable,
        "-m",
        "exporter",
        "run",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with server(daemon, port=port) as pid:
        wrk(port, singles[:100], content_type="application/json", seconds=2)
        single = wrk(port, singles, content_type="application/json", seconds=args.seconds, pid=pid)
        batch = wrk(
            port,
            batches,
            content_type="application/x-ndjson",
            seconds=args.seconds,
            connections=4,
            pid=pid,
        )

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
