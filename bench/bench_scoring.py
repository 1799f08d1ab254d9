"""Deterministic scoring throughput: conversations/s through the real pipeline, in process.

    python bench/bench_scoring.py [--conversations 20000] [--rounds 3]

The real ``exporter.pipeline.Pipeline`` with the embedded default config's scorers (tool
success, final answer, user feedback, refusal, PII, answer length, passthrough) and its 8
workers: submit N decoded conversations, time until the queue has drained. Two references
measured in the same run, on the same conversations:

- the same pipeline with no scorers: the queue, workers and metrics alone (the baseline the
  scorers add to);
- decoding the same conversations from JSON with msgspec (what ingest pays for each one).

The process is pinned to one core. Rounds alternate the three and keep each one's best (other
load on a shared machine only slows things down); rates are per CPU-second of this process and
per wall-clock second. Target: one core scores the sample of the NDJSON ingest target
(5% of 100,000/s = 5,000/s) with room to spare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import SERVER_CPU, conversation, pinned_self
from prometheus_client import CollectorRegistry

from exporter.config import parse_config
from exporter.config.model import Config
from exporter.metrics import Metrics
from exporter.model import Conversation, decode_conversation
from exporter.pipeline import Pipeline
from exporter.scoring import build_scorers

TARGET = 5_000.0  # conversations/s: 5% base sampling of 100k/s NDJSON ingest


def bodies(count: int) -> list[bytes]:
    """Return ``count`` ~800-byte conversations mixing what the scorers look for."""
    out = []
    for index in range(count):
        document = conversation(index)
        messages: list[dict[str, Any]] = document["messages"]
        if index % 5 == 1:  # a failing tool
            messages[2]["error"] = True
        if index % 7 == 2:  # a refusal
            messages[3]["content"] = "I'm sorry, but I can't help with that request."
        if index % 11 == 3:  # PII in the answer
            messages[3]["content"] = "I emailed jane.doe@example.com and called +44 20 7946 0958."
        if index % 13 == 4:  # no final answer
            del messages[3]
        if index % 3 == 0:  # upstream scores for the passthrough scorer
            document["scores"] = {"task_completion": 0.9, "coherence": 4}
        out.append(json.dumps(document).encode())
    return out


def _config(count: int) -> Config:
    return parse_config({"pipeline": {"queue_size": max(count, 1)}}, source="<bench>")


async def _drain(
    *, config: Config, scored: bool, items: Sequence[Conversation]
) -> tuple[float, float]:
    """Return (wall, CPU) seconds to submit ``items`` and drain the pipeline."""
    metrics = Metrics(config, CollectorRegistry())
    scorers = build_scorers(config, metrics=metrics) if scored else []
    pipeline = Pipeline(config=config, metrics=metrics, scorers=scorers)
    await pipeline.start()
    wall, cpu = time.perf_counter(), time.process_time()
    for item in items:
        if not pipeline.submit(item, agent="support-bot", reason="base"):
            raise RuntimeError("the queue is smaller than the batch")
    if not await pipeline.drain(600):
        raise RuntimeError("the pipeline did not drain in 10 minutes")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await pipeline.stop()
    done = metrics.registry.get_sample_value("agent_quality_scored_total", {"agent": "support-bot"})
    if done != len(items):
        raise RuntimeError(f"{done} of {len(items)} conversations scored")
    return wall, cpu


def _decode(raw: Sequence[bytes]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for body in raw:
        decode_conversation(body)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(count: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Return the best (per wall second, per CPU second) rate of each variant."""
    raw = bodies(count)
    items = [decode_conversation(body) for body in raw]
    config = _config(count)
    variants: dict[str, Callable[[], tuple[float, float]]] = {
        "scorers": lambda: asyncio.run(_drain(config=config, scored=True, items=items)),
        "no_scorers": lambda: asyncio.run(_drain(config=config, scored=False, items=items)),
        "decode": lambda: _decode(raw),
    }
    best = dict.fromkeys(variants, (0.0, 0.0))
    for _ in range(rounds):
        for name, run in variants.items():
            wall, cpu = run()
            best[name] = (
                max(best[name][0], count / wall),
                max(best[name][1], count / max(cpu, 1e-9)),
            )
    return best


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the bench, print its table and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with pinned_self(SERVER_CPU):
        best = measure(args.conversations, args.rounds)
    scored, bare, decoded = best["scorers"], best["no_scorers"], best["decode"]
    figures = {
        "scored_per_s": scored[0],
        "scored_per_cpu_s": scored[1],
        "no_scorers_per_cpu_s": bare[1],
        "decode_per_cpu_s": decoded[1],
        "ratio_to_no_scorers": scored[1] / bare[1],
        "ratio_to_decode": scored[1] / decoded[1],
        "scorers_us_each": 1e6 / scored[1] - 1e6 / bare[1],
    }
    print(f"{args.conversations:,} conversations, best of {args.rounds} rounds, one core")
    print(f"{'measure':<48}{'per wall s':>12}{'per CPU s':>12}{'target':>12}")
    rows = [
        ("pipeline, default scorers", scored, f">= {TARGET:,.0f}"),
        ("pipeline, no scorers (baseline)", bare, ""),
        ("msgspec decode of the same JSON (reference)", decoded, ""),
    ]
    for name, (wall, cpu), target in rows:
        print(f"{name:<48}{wall:>12,.0f}{cpu:>12,.0f}{target:>12}")
    print(f"{'ratio scored / no scorers (CPU)':<48}{figures['ratio_to_no_scorers']:>24.2f}")
    print(f"{'ratio scored / decode (CPU)':<48}{figures['ratio_to_decode']:>24.2f}")
    print(f"{'scorers CPU per conversation (us)':<48}{figures['scorers_us_each']:>24.1f}")
    return figures


if __name__ == "__main__":
    main()
