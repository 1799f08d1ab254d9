"""What the OTLP buffer really holds: the daemon's RSS growth against its own byte count.

    python bench/bench_otlp_memory.py [--max-mib 128] [--scenario traces|one-trace|events]

``otlp.buffer.max_bytes`` is meant to bound the memory the partial conversations take, so
``agent_quality_otlp_buffer_bytes`` has to track what the process holds for them. This bench
runs the daemon (its own process, pinned to one core) with the buffer bound at ``--max-mib``
and nothing that completes a conversation: the spans are the real SDK's, from the fake support
agent of bench/bench_otlp.py (LLM calls resending the history, tools, failures), with their
root spans turned into children so no trace ever ends, and the idle timeout and maximum age
at hours. It posts them in requests of 512 until the buffer has evicted (``otlp_buffer_full``)
and then as much again, so the buffer sits at its bound with old conversations replaced by new
ones, then reads the RSS (``VmRSS``). One huge trace cannot sit at the bound (past it, the
buffer evicts the whole conversation): that scenario stops at 90% of the bound.

The baseline, measured in the same run: the daemon's RSS after a warm-up of 2,000 complete
conversations (the same spans with their roots, assembled and scored at once), so imports,
caches and the allocator's first arenas are in it. Reported: RSS growth over the baseline,
the gauge, and their ratio (target <= 1.5).

Scenarios: ``traces`` (a new trace per conversation, the usual case), ``one-trace`` (every
span in a single trace: one huge partial conversation), ``events`` (the LLM calls' messages
moved from span attributes into ``gen_ai.client.inference.operation.details`` log records on
``/v1/logs``, as util-genai sends them with ``event_only``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from _harness import daemon_args, free_port, scraped, server, total
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.fake_agent import FakeAgent, provider, scripts

BATCH = 512
TARGET = 1.5
SCENARIOS = ("traces", "one-trace", "events")
_MESSAGES = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")
_DETAILS = "gen_ai.client.inference.operation.details"
_CONVERSATION = "gen_ai.conversation.id"


def rss_bytes(pid: int) -> int:
    """Return the resident set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def agent_spans(conversations: int, prefix: str) -> ExportTraceServiceRequest:
    """Return the SDK's spans of ``conversations`` conversations, one in five failing a tool."""
    memory = InMemorySpanExporter()
    tracer_provider = provider(memory, batch=False)
    agent = FakeAgent(tracer_provider.get_tracer("bench"))
    for n, script in enumerate(scripts(conversations, failing=None, prefix=prefix)):
        if n % 5 == 1:
            script = scripts(2, failing=1, prefix=f"{prefix}-f{n}")[1]
        agent.run(script)
    request = encode_spans(memory.get_finished_spans())
    tracer_provider.shutdown()
    return request


def _spans(request: ExportTraceServiceRequest) -> Iterator[Any]:
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            yield from scope_spans.spans


def bodies(request: ExportTraceServiceRequest, scenario: str) -> list[tuple[str, bytes]]:
    """Return (path, body) requests of ``BATCH`` spans (or log records) whose traces never end."""
    spans = list(_spans(request))
    events: dict[bytes, LogRecord] = {}  # by span id
    for span in spans:
        if not span.parent_span_id:
            span.parent_span_id = b"\xff" * 8  # a parent that never comes: the trace never ends
        if scenario == "one-trace":  # and no conversation id: one partial conversation
            span.trace_id = b"\x01" * 16
            kept = [kv for kv in span.attributes if kv.key != _CONVERSATION]
            del span.attributes[:]
            span.attributes.extend(kept)
        if scenario == "events" and any(kv.key in _MESSAGES for kv in span.attributes):
            record = LogRecord(
                event_name=_DETAILS,
                trace_id=span.trace_id,
                span_id=span.span_id,
                observed_time_unix_nano=span.end_time_unix_nano,
            )
            record.attributes.extend(kv for kv in span.attributes if kv.key in _MESSAGES)
            events[span.span_id] = record
            kept = [kv for kv in span.attributes if kv.key not in _MESSAGES]
            del span.attributes[:]
            span.attributes.extend(kept)
    resource = request.resource_spans[0].resource
    result = []
    for start in range(0, len(spans), BATCH):
        chunk = spans[start : start + BATCH]
        result.append(("/v1/traces", encode_chunk(request, chunk)))
        records = [events[span.span_id] for span in chunk if span.span_id in events]
        if records:
            logs = ExportLogsServiceRequest(
                resource_logs=[
                    ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])
                ]
            )
            result.append(("/v1/logs", logs.SerializeToString()))
    return result


def post(port: int, path: str, body: bytes) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def measure(*, max_mib: int, scenario: str) -> dict[str, float]:
    """Fill the buffer to its bound (and past it); return RSS growth, the gauge, their ratio."""
    warm_up = agent_spans(2000, "warm")
    warm_spans = list(_spans(warm_up))
    warm = [
        encode_chunk(warm_up, warm_spans[i : i + BATCH]) for i in range(0, len(warm_spans), BATCH)
    ]
    requests = bodies(agent_spans(4000, "flood"), scenario)
    bound = max_mib << 20
    config = {
        "sampling": {"base_rate": 0.05},
        "otlp": {
            "idle_timeout": "3h",
            "buffer": {"max_bytes": bound, "max_conversations": 1_000_000, "max_age": "4h"},
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "otlp-memory.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        with server(daemon_args(port, path), port=port) as pid:
            for body in warm:
                post(port, "/v1/traces", body)
            time.sleep(1)
            baseline = rss_bytes(pid)
            fill(port, requests, bound=bound, one_trace=scenario == "one-trace")
            time.sleep(1)
            grown = rss_bytes(pid) - baseline
            samples = scraped(port)
    counted = total(samples, "agent_quality_otlp_buffer_bytes")
    return {
        "baseline_mb": baseline / 1e6,
        "rss_growth_mb": grown / 1e6,
        "buffer_mb": counted / 1e6,
        "ratio": grown / counted,
        "conversations": total(samples, "agent_quality_otlp_buffer_conversations"),
        "evicted": total(samples, "agent_quality_dropped_total", reason="otlp_buffer_full"),
        "spans": total(samples, "agent_quality_otlp_spans_total", outcome="accepted"),
        "log_records": total(samples, "agent_quality_otlp_log_records_total", outcome="accepted"),
    }


def fill(port: int, requests: list[tuple[str, bytes]], *, bound: int, one_trace: bool) -> None:
    """Post ``requests`` over and over, new conversations each round, until the bound.

    Many conversations: go on after the first eviction for as many requests again, so the
    buffer replaces old conversations with new ones at its bound. One trace: the same trace
    every round, up to 90% of the bound (past it, the buffer would evict it whole).
    """
    sent, evicted_at, round_ = 0, 0, 0
    while True:
        for route, body in requests:
            post(port, route, body if one_trace else _renamed(route, body, round_))
            sent += 1
            if sent % 8:
                continue
            samples = scraped(port)
            if one_trace:
                if total(samples, "agent_quality_otlp_buffer_bytes") >= 0.9 * bound:
                    return
            elif evicted_at:
                if sent >= 2 * evicted_at:
                    return
            elif total(samples, "agent_quality_dropped_total", reason="otlp_buffer_full"):
                evicted_at = sent
        round_ += 1


def encode_chunk(request: ExportTraceServiceRequest, spans: list[Any]) -> bytes:
    """Return ``spans`` (of ``request``) as one request, root spans kept."""
    chunk = ExportTraceServiceRequest()
    scope = chunk.resource_spans.add(resource=request.resource_spans[0].resource)
    scope.scope_spans.add().spans.extend(spans)
    return chunk.SerializeToString()


def _renamed(route: str, body: bytes, round_: int) -> bytes:
    """Return ``body`` with new trace and conversation ids for round ``round_``.

    Every round then brings new conversations, as production traffic does.
    """
    if round_ == 0:
        return body
    tag = round_.to_bytes(4, "big")
    if route == "/v1/traces":
        request = ExportTraceServiceRequest.FromString(body)
        for span in _spans(request):
            span.trace_id = tag + span.trace_id[4:]
            for kv in span.attributes:
                if kv.key == _CONVERSATION:
                    kv.value.string_value += f"-r{round_}"
        return request.SerializeToString()
    logs = ExportLogsServiceRequest.FromString(body)
    for resource_logs in logs.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                record.trace_id = tag + record.trace_id[4:]
    return logs.SerializeToString()


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run each scenario, print the table and return the figures of the first."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-mib", type=int, default=128, help="otlp.buffer.max_bytes, MiB")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append")
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}
    print(f"otlp.buffer.max_bytes = {args.max_mib} MiB; RSS baseline after a warm-up")
    print(f"{'scenario':<12}{'RSS growth MB':>15}{'buffer_bytes MB':>17}{'ratio':>8}{'target':>9}")
    for scenario in args.scenario or SCENARIOS:
        result = measure(max_mib=args.max_mib, scenario=scenario)
        verdict = "pass" if result["ratio"] <= TARGET else "FAIL"
        print(
            f"{scenario:<12}{result['rss_growth_mb']:>15.1f}"
            f"{result['buffer_mb']:>17.1f}{result['ratio']:>8.2f}{'<= 1.5':>9} {verdict}"
            f"  ({result['conversations']:,.0f} partial conversations held, "
            f"{result['evicted']:,.0f} evicted, {result['spans']:,.0f} spans and "
            f"{result['log_records']:,.0f} log records taken, "
            f"baseline {result['baseline_mb']:.0f} MB)"
        )
        figures.setdefault("ratio", result["ratio"])
        figures[f"ratio_{scenario.replace('-', '_')}"] = result["ratio"]
    return figures


if __name__ == "__main__":
    main()
