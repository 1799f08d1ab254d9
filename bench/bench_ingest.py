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
    with server([sys.executable, "bench/bare_server.py", "--port", str(port)], port=port):
        wrk(port, singles[:100], content_type="application/json", seconds=2)  # warm-up
        bare = wrk(port, singles, content_type="application/json", seconds=args.seconds)

    port = free_port()
    daemon = [
        sys.executable,
        "-m",
        "exporter",
        "run",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with server(daemon, port=port):
        wrk(port, singles[:100], content_type="application/json", seconds=2)
        single = wrk(port, singles, content_type="application/json", seconds=args.seconds)
        batch = wrk(
            port, batches, content_type="application/x-ndjson", seconds=args.seconds, connections=4
        )

    print(f"{'measure':<46}{'value':>14}{'target':>12}")
    print(f"{'bare aiohttp, single POST (req/s)':<46}{bare:>14,.0f}{'baseline':>12}")
    print(f"{'daemon, single POST (req/s)':<46}{single:>14,.0f}")
    print(f"{'  ratio daemon / bare':<46}{single / bare:>14.2f}{'>= 0.90':>12}")
    print(
        f"{'daemon, NDJSON batches of 1000 (conv/s)':<46}{batch * 1000:>14,.0f}{'>= 100,000':>12}"
    )


if __name__ == "__main__":
    main()
