"""OTLP ingestion throughput: spans/s for export requests of 512 spans.

    python bench/bench_otlp.py [--batches 200] [--skip-http]

The spans come from the real OpenTelemetry SDK: a fake support agent (agent span, LLM calls
with GenAI message attributes, tool spans, one conversation in five with a failing tool), cut
into requests of 512 spans as a BatchSpanProcessor does. Every request holds new traces, so
each span is decoded, read, buffered and assembled into its conversation (none is merely late).

Two figures: in process (decode + assembly + intake, no HTTP, one core), and over HTTP against
the app on the embedded default config (its own process pinned to one core; this process posts
from the other with 4 connections).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from _harness import cpu_seconds, free_port, server
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


def in_process(bodies: list[bytes]) -> float:
    """Return spans/s through decode, span reading, buffering, assembly and the intake."""
    config = load_config()
    app = create_app(config)
    receiver = OtlpReceiver(config=config.otlp, intake=app[INTAKE], metrics=app[METRICS])

    async def run() -> float:
        started = time.perf_counter()
        for body in bodies:
            await receiver.export(decode_request(body, encoding=PROTOBUF))
        receiver.flush()
        return len(bodies) * BATCH / (time.perf_counter() - started)

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


def serve(port: int) -> None:
    """Run the app on ``port``."""
    from aiohttp import web

    app = create_app(load_config())
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def over_http(bodies: list[bytes], *, connections: int = 4) -> tuple[float, float]:
    """Return spans/s posted to the app on its own core, and spans per server CPU second."""
    port = free_port()
    daemon = [sys.executable, "bench/bench_otlp.py", "--serve", str(port)]
    with server(daemon, port=port) as pid:
        url = f"http://127.0.0.1:{port}/v1/traces"
        warm, measured = bodies[: len(bodies) // 10], bodies[len(bodies) // 10 :]
        asyncio.run(_post_all(url, warm, connections))
        cpu_before = cpu_seconds(pid)
        rate = asyncio.run(_post_all(url, measured, connections))
        cpu = cpu_seconds(pid) - cpu_before
    return rate, len(measured) * BATCH / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    bodies = batches(args.batches)
    size = sum(map(len, bodies)) / len(bodies)
    print(f"{len(bodies)} requests of {BATCH} spans, {size / 1024:,.0f} KiB each (protobuf)")
    print(f"{'measure':<52}{'spans/s':>12}")
    print(f"{'in process: decode + assemble + intake (1 core)':<52}{in_process(bodies):>12,.0f}")
    if not args.skip_http:
        rate, per_cpu_second = over_http(bodies)
        print(f"{'daemon over HTTP, 4 connections (wall clock)':<52}{rate:>12,.0f}")
        print(f"{'daemon over HTTP, per server CPU second':<52}{per_cpu_second:>12,.0f}")


if __name__ == "__main__":
    main()
