"""The whole loop on loopback: SDK traces -> daemon -> evaluation events and exemplars."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from exporter.events import EVENT_NAME
from tests.support.daemon import Daemon, free_port, running_daemon
from tests.support.fake_agent import FakeAgent, Script, provider, scripts
from tests.support.otlp_receiver import Receiver, running_logs_receiver
from tests.support.promstack import Prometheus, running_prometheus

pytestmark = pytest.mark.slow
T = TypeVar("T")


def eventually(read: Callable[[], T | None], *, within: float = 30.0) -> T:
    """Return the first truthy ``read()``, polling; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = read()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def scored(daemon: Daemon) -> float:
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "agent_quality_scored_total"
    )


def play(daemon: Daemon, plays: list[Script]) -> dict[str, tuple[str, str]]:
    """Send ``plays`` as the real SDK does; return conversation id -> (trace id, root span id)."""
    memory = InMemorySpanExporter()
    tracer_provider = provider(OTLPSpanExporter(endpoint=f"{daemon.url}/v1/traces"))
    tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    agent = FakeAgent(tracer_provider.get_tracer("fake-agent"))
    for script in plays:
        agent.run(script)
    tracer_provider.force_flush()
    spans = memory.get_finished_spans()
    tracer_provider.shutdown()
    ids: dict[str, tuple[str, str]] = {}
    for span in spans:
        if span.parent is None:
            assert span.context is not None
            assert span.attributes is not None
            conversation = str(span.attributes["gen_ai.conversation.id"])
            ids[conversation] = (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    assert len(ids) == len(plays)
    return ids


def exemplar_traces(prometheus: Prometheus, *, bad: float) -> set[str]:
    """Return the trace ids of tool_success exemplars at or below ``bad``."""
    now = time.time()
    body = prometheus.get_json(
        "/api/v1/query_exemplars",
        query='agent_quality_score_bucket{dimension="tool_success"}',
        start=str(now - 600),
        end=str(now + 60),
    )
    found: set[str] = set()
    for series in body["data"]:
        for exemplar in series["exemplars"]:
            if float(exemplar["value"]) <= bad:
                found.add(exemplar["labels"]["trace_id"])
    return found


def test_bad_scores_lead_to_their_traces(tmp_path: Path) -> None:
    """Events carry each conversation's trace and span; exemplars name the bad ones' traces."""
    port = free_port()
    config: dict[str, Any] = {
        "agents": ["support-bot"],
        "sampling": {"base_rate": 1.0},
        "otlp": {"idle_timeout": "2s"},
        "otel_export": {
            "enabled": True,
            "endpoint": f"http://127.0.0.1:{port}/v1/logs",
            "queue": {"delay": "100ms"},
        },
    }
    with (
        running_logs_receiver(port, Receiver()) as receiver,
        running_daemon(tmp_path, config) as daemon,
        running_prometheus(
            tmp_path, targets=[f"127.0.0.1:{daemon.port}"], features=["exemplar-storage"]
        ) as prometheus,
    ):
        ids: dict[str, tuple[str, str]] = {}
        bad_traces: set[str] = set()
        # One bad conversation at a time: a bucket shows its last exemplar, and Prometheus
        # must scrape each before the next lands in the same bucket.
        for round_, failing in enumerate((1, 2)):
            plays = scripts(4, failing=failing, prefix=f"r{round_}")
            ids |= play(daemon, plays)
            expected = len(ids)
            eventually(lambda: scored(daemon) >= expected)  # noqa: B023  # called at once
            bad_traces.add(ids[plays[failing].conversation_id][0])
            eventually(lambda: bad_traces <= exemplar_traces(prometheus, bad=0.5))
        assert exemplar_traces(prometheus, bad=0.5) == bad_traces
        eventually(lambda: len(receiver.events) >= 3 * len(ids))
        events = list(receiver.events)
        assert {e.attributes["gen_ai.conversation.id"] for e in events} == set(ids)
        for event in events:
            assert event.event_name == EVENT_NAME
            conversation = event.attributes["gen_ai.conversation.id"]
            assert (event.trace_id, event.span_id) == ids[conversation]
        bad_events = {
            e.trace_id
            for e in events
            if e.attributes["gen_ai.evaluation.name"] == "tool_success"
            and e.attributes["gen_ai.evaluation.score.label"] == "bad"
        }
        assert bad_events == bad_traces
