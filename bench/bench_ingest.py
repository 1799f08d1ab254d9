"""Ingest in the steady state: the daemon against a bare aiohttp handler, in alternating rounds.

    python bench/bench_ingest.py [--seconds 6] [--rounds 5]

Each server runs pinned to one core with wrk (1 thread) on the other. Every round runs, each
in a fresh process: bare aiohttp (single POSTs), then the daemon at each conversation mix (5%
and 25% of conversations carrying a thumbs-down, a boost trigger): single POSTs (32
connections), then NDJSON batches of 1000 (4 connections). The figures are the medians over
the rounds, with the lowest and highest round; the ratios to bare aiohttp pair each round's
daemon with that round's bare server, so a drift of the machine weighs on both sides alike.

What the daemon does is its steady state: the embedded default config with the daily maximum
lifted (at full speed the default's 50,000 a day are spent in seconds, after which scoring
stops and ingest looks cheaper), every request with new conversation ids (so the hash spreads
them over the whole sampling range and the late-signal buffer turns over as in production),
and the server's CPU read once the scoring queue has drained, so the scoring of the sampled
share is in the figure. A round in which anything was dropped (queue full, daily budget) is
reported: its figure would leave out work.

Targets: single POST at >= 0.95 of bare aiohttp by CPU per request and by throughput, at both
mixes; NDJSON >= 150,000 conversations per CPU-second at both mixes.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Load,
    Spread,
    daemon_args,
    free_port,
    mixed,
    scraped,
    server,
    steady_config,
    total,
    wrk,
)

#: Shares of conversations carrying a negative signal (the user's thumbs-down).
MIXES = (0.05, 0.25)
BATCH = 1000
JSON, NDJSON = "application/json", "application/x-ndjson"


@dataclasses.dataclass
class Round:
    """One round's measurements."""

    bare: Load
    single: dict[float, Load]
    ndjson: dict[float, Load]
    sampled: dict[float, float]
    dropped: dict[float, float]


def _settle(port: int) -> Callable[[], None]:
    """Return a wait until the daemon on ``port`` has scored everything it queued."""

    def wait() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if total(scraped(port), "agent_quality_queue_depth") == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("the scoring queue did not drain within 60 s")

    return wait


def _bare(seconds: int, tag: str) -> Load:
    port = free_port()
    args = [sys.executable, "bench/bare_server.py", "--port", str(port)]
    with server(args, port=port) as pid:
        wrk(port, mixed(20, negative_share=0.05, tag=f"{tag}w"), content_type=JSON, seconds=2)
        bodies = mixed(20, negative_share=0.05, tag=tag)
        return wrk(port, bodies, content_type=JSON, seconds=seconds, pid=pid, unique=True)


def _daemon(config: Path, share: float, seconds: int, tag: str) -> tuple[Load, Load, float, float]:
    """Return single-POST and NDJSON loads, the sampled share and the conversations dropped."""
    port = free_port()
    settle = _settle(port)
    with server(daemon_args(port, config), port=port) as pid:
        warm = mixed(20, negative_share=share, tag=f"{tag}w")
        wrk(port, warm, content_type=JSON, seconds=2, unique=True)
        bodies = mixed(20, negative_share=share, tag=f"{tag}s")
        single = wrk(
            port, bodies, content_type=JSON, seconds=seconds, pid=pid, unique=True, settle=settle
        )
        batch = [b"\n".join(mixed(BATCH, negative_share=share, tag=f"{tag}n"))]
        ndjson = wrk(
            port,
            batch,
            content_type=NDJSON,
            seconds=seconds,
            connections=4,
            pid=pid,
            unique=True,
            settle=settle,
        )
        samples = scraped(port)
    received = total(samples, "agent_quality_conversations_total")
    sampled = total(samples, "agent_quality_sampled_total") / received
    dropped = total(samples, "agent_quality_dropped_total")
    return single, ndjson, sampled, dropped


def measure(*, rounds: int, seconds: int) -> list[Round]:
    """Run ``rounds`` alternating rounds; return their measurements."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = steady_config(Path(tmp))
        for n in range(rounds):
            this = Round(_bare(seconds, f"r{n}b"), {}, {}, {}, {})
            for share in MIXES:
                tag = f"r{n}m{share * 100:.0f}"
                single, ndjson, sampled, dropped = _daemon(config, share, seconds, tag)
                this.single[share], this.ndjson[share] = single, ndjson
                this.sampled[share], this.dropped[share] = sampled, dropped
            results.append(this)
            print(f"round {n + 1}/{rounds} done", file=sys.stderr, flush=True)
    return results


def report(results: Sequence[Round]) -> dict[str, float]:
    """Print the table of medians and spreads; return run_all.py's figures."""
    figures: dict[str, float] = {}
    lines: list[tuple[str, Spread, str, str]] = []

    def add(label: str, key: str, values: Sequence[float], form: str, target: str = "") -> None:
        spread = Spread.of(values)
        figures.update(spread.figures(key))
        lines.append((label, spread, form, target))

    add(
        "bare aiohttp, single POST, CPU us/request",
        "bare_cpu_us",
        [r.bare.cpu_us_per_request for r in results],
        ".1f",
    )
    add(
        "bare aiohttp, single POST, requests/s",
        "bare_per_s",
        [r.bare.requests_per_second for r in results],
        ",.0f",
    )
    for share in MIXES:
        mix = f"{share:.0%} negative"
        key = f"{share * 100:.0f}"
        add(
            f"daemon, single POST, {mix}, CPU us/request",
            f"single_cpu_us_{key}",
            [r.single[share].cpu_us_per_request for r in results],
            ".1f",
        )
        add(
            f"daemon, single POST, {mix}, requests/s",
            f"single_per_s_{key}",
            [r.single[share].requests_per_second for r in results],
            ",.0f",
        )
        add(
            f"ratio to bare by CPU per request, {mix}",
            f"ratio_cpu_{key}",
            [r.bare.cpu_us_per_request / r.single[share].cpu_us_per_request for r in results],
            ".3f",
            ">= 0.95",
        )
        add(
            f"ratio to bare by throughput, {mix}",
            f"ratio_throughput_{key}",
            [r.single[share].requests_per_second / r.bare.requests_per_second for r in results],
            ".3f",
            ">= 0.95",
        )
        add(
            f"NDJSON x{BATCH}, {mix}, conversations per CPU-s",
            f"ndjson_per_cpu_s_{key}",
            [1e6 / (r.ndjson[share].cpu_us_per_request / BATCH) for r in results],
            ",.0f",
            ">= 150,000",
        )
        add(
            f"NDJSON x{BATCH}, {mix}, conversations/s (wall)",
            f"ndjson_per_s_{key}",
            [r.ndjson[share].requests_per_second * BATCH for r in results],
            ",.0f",
        )
        add(
            f"share of conversations scored, {mix}",
            f"sampled_{key}",
            [r.sampled[share] for r in results],
            ".3f",
        )
        add(
            f"conversations dropped, {mix}",
            f"dropped_{key}",
            [r.dropped[share] for r in results],
            ",.0f",
            "0",
        )
    print(f"{'measure':<48}{'median':>12}{'low':>12}{'high':>12}  target")
    for label, spread, form, target in lines:
        print(f"{label:<48}{spread.columns(form)}  {target}")
    return figures


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the bench, print its table and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=6, help="seconds of load per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    results = measure(rounds=args.rounds, seconds=args.seconds)
    print(f"{args.rounds} rounds of {args.seconds} s; bare, then the daemon at each mix")
    return report(results)


if __name__ == "__main__":
    main()
