"""OTLP ingestion throughput: spans/s for export requests of 512 spans.

    python bench/bench_otlp.py [--batches 40] [--rounds 5]

The spans come from the real OpenTelemetry SDK: a fake support agent (agent span, LLM calls
with GenAI message attributes, tool spans, one conversation in five with a failing tool), cut
into requests of 512 spans as a BatchSpanProcessor does. Every request holds new traces, so
each span is decoded, read, buffered and assembled into its conversation (none is merely late).

Each round, with a new set of requests: in process (decode + assembly + intake, no HTTP, this
process pinned to one core), then over HTTP to the daemon (its own process pinned to one core,
the embedded default config with the daily maximum lifted; this process posts from the other
core with 4 connections), with spans per server CPU-second. Medians over the rounds, with the
lowest and highest. Target: >= 60,000 spans per server CPU-second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from _harness import (
    LOAD_CPU,
    SERVER_CPU,
    Spread,
    cpu_seconds,
    daemon_args,
    free_port,
    pinned_self,
    server,
    steady_config,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exporter.config import load_config
from exporter.ingest.otlp import PROTOBUF, OtlpReceiver, decode_request
from exporter.web import create_app
from exporter.web.keys import INTAKE, METRICS
from tests.support.fake_agent import FakeAgent, provider, scripts

BATCH = 512


def batches(count: int) -> list[bytes]:
    """Return ``count`` serialized export requests of ``BATCH`` spans each, all new traces."""
    memory = InMemorySpanExporter()
    tracer_provider = provider(memory, batch=False)
    agent = FakeAgent(tracer_provider.get_tracer("bench"))
    plays = scripts(count * BATCH // 4 + 8, failing=None, prefix="bench")
    for n, script in enumerate(plays):
        if n % 5 == 1:  # one in five: a second tool that fails
            script = scripts(2, failing=1, prefix=f"bench-f{n}")[1]
        agent.run(script)
        if len(memory.get_finished_spans()) >= count * BATCH:
            break
    spans = list(memory.get_finished_spans())[: count * BATCH]
    tracer_provider.shutdown()
    return [
        encode_spans(spans[i : i + BATCH]).SerializeToString() for i in range(0, len(spans), BATCH)
    ]


def in_process(bodies: list[bytes], config_path: Path) -> float:
    """Return spans/s through decode, span reading, buffering, assembly and the intake."""
    config = load_config(config_path)
    app = create_app(config)
    receiver = OtlpReceiver(config=config.otlp, intake=app[INTAKE], metrics=app[METRICS])

    async def run() -> float:
        started = time.perf_counter()
        for body in bodies:
            await receiver.export(decode_request(body, encoding=PROTOBUF))
        receiver.flush()
        return len(bodies) * BATCH / (time.perf_counter() - started)

    with pinned_self(SERVER_CPU):
        return asyncio.run(run())


async def _post_all(url: str, bodies: list[bytes], connections: int) -> float:
    queue = list(reversed(bodies))
    headers = {"Content-Type": PROTOBUF}
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"{response.status}: {await response.text()}")
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return len(bodies) * BATCH / (time.perf_counter() - started)


def measure(
    chunks: list[list[bytes]], warm: list[bytes], *, connections: int = 4
) -> tuple[list[float], list[float], list[float]]:
    """Alternate in-process runs and HTTP posts of each chunk; return spans/s of each round.

    In process: spans/s. Over HTTP, to the daemon on its own core (one process for all
    rounds, its CPU read per round): spans/s (wall) and spans per server CPU-second.
    """
    inside, wall, per_cpu = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        config = steady_config(Path(tmp))
        port = free_port()
        with server(daemon_args(port, config), port=port) as pid:
            url = f"http://127.0.0.1:{port}/v1/traces"
            with pinned_self(LOAD_CPU):
                asyncio.run(_post_all(url, warm, connections))
            for n, chunk in enumerate(chunks):
                inside.append(in_process(chunk, config))
                cpu_before = cpu_seconds(pid)
                with pinned_self(LOAD_CPU):
                    wall.append(asyncio.run(_post_all(url, chunk, connections)))
                per_cpu.append(len(chunk) * BATCH / (cpu_seconds(pid) - cpu_before))
                print(f"round {n + 1}/{len(chunks)} done", file=sys.stderr, flush=True)
    return inside, wall, per_cpu


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the bench, print its table and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=40, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.batches < 1:
        parser.error("--rounds and --batches must be at least 1")
    warm_count = max(2, args.batches // 4)
    bodies = batches(args.batches * args.rounds + warm_count)
    warm, rest = bodies[:warm_count], bodies[warm_count:]
    chunks = [rest[n * args.batches : (n + 1) * args.batches] for n in range(args.rounds)]
    size = sum(map(len, bodies)) / len(bodies)
    print(
        f"{args.rounds} rounds of {args.batches} requests of {BATCH} spans, "
        f"{size / 1024:,.0f} KiB each (protobuf), every conversation new"
    )
    inside, wall, per_cpu = measure(chunks, warm)
    figures: dict[str, float] = {}
    print(f"{'measure':<52}{'median':>12}{'low':>12}{'high':>12}  target")
    for label, key, values, target in (
        ("in process: decode + assemble + intake (1 core)", "in_process", inside, ""),
        ("daemon over HTTP, 4 connections (wall clock)", "http", wall, ""),
        ("daemon over HTTP, per server CPU second", "http_per_cpu_s", per_cpu, ">= 60,000"),
    ):
        spread = Spread.of(values)
        figures.update(spread.figures(key))
        print(f"{label:<52}{spread.columns(',.0f')}  {target}")
    return figures


if __name__ == "__main__":
    main()
