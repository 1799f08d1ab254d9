"""POST /v1/traces end to end: the real OpenTelemetry SDK exporting to the real app on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.json.http.trace_exporter import (
    OTLPSpanExporter as JsonSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as ProtobufSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from exporter.web.keys import PIPELINE, REGISTRY, STATE
from tests.support.app import Client, MakeClient, sample
from tests.support.fake_agent import (
    Convention,
    FakeAgent,
    RecordingExporter,
    Script,
    export_request,
    make_span,
    provider,
    scripts,
)

ALL = {"sampling": {"base_rate": 1.0}}
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
SUCCESS = SpanExportResult.SUCCESS


def quality(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every score, flag and scorer-run sample, to compare two apps."""
    registry: CollectorRegistry = client.app[REGISTRY]
    families = {
        "agent_quality_score",
        "agent_quality_score_squares",
        "agent_quality_flags",
        "agent_quality_evaluations",
    }
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        if family.name in families
        for s in family.samples
    }


async def settle(client: Client) -> None:
    """Wait until the pipeline has scored everything queued."""
    await client.app[PIPELINE].drain(60)


async def export(
    client: Client,
    plays: list[Script],
    *,
    convention: Convention = "genai",
    encoding: str = "protobuf",
    headers: dict[str, str] | None = None,
    gzip: bool = False,
) -> list[SpanExportResult]:
    """Play ``plays`` in an SDK-instrumented agent exporting to ``client``'s app."""
    url = str(client.make_url("/v1/traces"))
    inner: SpanExporter
    if encoding == "protobuf":
        compression = Compression.Gzip if gzip else Compression.NoCompression
        inner = ProtobufSpanExporter(endpoint=url, headers=headers, compression=compression)
    else:
        inner = JsonSpanExporter(endpoint=url, headers=headers)
    recording = RecordingExporter(inner)
    tracer_provider = provider(recording)
    agent = FakeAgent(tracer_provider.get_tracer("fake-agent"), convention=convention)
    for script in plays:
        agent.run(script)
    # The exporter's HTTP client blocks: run it off the loop that serves the app.
    await asyncio.to_thread(tracer_provider.shutdown)
    return recording.results


async def post_to_sink(client: Client, plays: list[Script]) -> None:
    """Send the same conversations through POST /v1/conversations."""
    documents = [script.conversation(agent="support-bot") for script in plays]
    response = await client.post("/v1/conversations", json=documents)
    assert response.status == 202


async def eventually(check: Callable[[], bool], *, within: float = 60.0) -> None:
    """Wait until ``check()`` holds; fail after ``within`` seconds (for a hang, not for speed)."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class TestSdkExport:
    @pytest.mark.parametrize(
        ("convention", "encoding", "gzip"),
        [
            ("genai", "protobuf", False),
            ("genai", "protobuf", True),
            ("genai", "json", False),
            ("openinference", "protobuf", False),
        ],
    )
    async def test_scores_match_the_json_sink(
        self, client_for: MakeClient, convention: Convention, encoding: str, gzip: bool
    ) -> None:
        """Several conversations, one with a failing tool: the same scores as the JSON sink."""
        plays = scripts(4, failing=1)
        traces, sink = await client_for(**ALL), await client_for(**ALL)
        results = await export(traces, plays, convention=convention, encoding=encoding, gzip=gzip)
        assert results == [SUCCESS]
        await settle(traces)
        await post_to_sink(sink, plays)
        await settle(sink)

        tool_success = {"agent": "support-bot", "dimension": "tool_success"}
        assert sample(traces, "agent_quality_score_count", **tool_success) == 4
        assert sample(traces, "agent_quality_score_sum", **tool_success) == 3.5
        assert sample(traces, "agent_quality_scored_total", agent="support-bot") == 4
        assert quality(traces) == quality(sink)
        assert sample(traces, "agent_quality_otlp_conversations_total", trigger="root_span") == 4
        # Agent span, one LLM call per tool plus the answer, and the tool spans.
        assert sample(traces, "agent_quality_otlp_spans_total", outcome="accepted") == 18
        assert sample(traces, "agent_quality_otlp_buffer_conversations") == 0

    async def test_bearer_token(
        self, client_for: MakeClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a token configured the exporter needs the Authorization header."""
        monkeypatch.setenv("AQE_TEST_TOKEN", "tok-123")
        client = await client_for(server={"auth": {"bearer_token_env": "AQE_TEST_TOKEN"}}, **ALL)
        plays = scripts(1, failing=None)
        assert await export(client, plays) == [SpanExportResult.FAILURE]
        assert sample(client, "agent_quality_otlp_spans_total", outcome="accepted") == 0
        headers = {"Authorization": "Bearer tok-123"}
        assert await export(client, plays, headers=headers) == [SUCCESS]
        await settle(client)
        assert sample(client, "agent_quality_scored_total", agent="support-bot") == 1


class TestErrors:
    async def test_malformed_bodies_get_400_and_the_daemon_keeps_serving(
        self, client_for: MakeClient
    ) -> None:
        """Broken protobuf and JSON: 400 with a google.rpc.Status in the request's encoding."""
        client = await client_for(**ALL)
        good = export_request(make_span({"gen_ai.operation.name": "chat"})).SerializeToString()
        response = await client.post("/v1/traces", data=good[:-4], headers=PROTOBUF)
        assert response.status == 400
        assert response.content_type == "application/x-protobuf"
        status = Status.FromString(await response.read())
        assert status.code == 3
        assert "protobuf" in status.message

        response = await client.post("/v1/traces", data=b'{"resourceSpans": [', headers=JSON)
        assert response.status == 400
        assert response.content_type == "application/json"
        assert (await response.json())["code"] == 3

        assert (
            sample(client, "agent_quality_rejected_total", endpoint="traces", reason="malformed")
            == 2
        )
        assert await export(client, scripts(2, failing=None)) == [SUCCESS]
        await settle(client)
        assert sample(client, "agent_quality_scored_total", agent="support-bot") == 2

    async def test_unsupported_content_type_is_415(self, client_for: MakeClient) -> None:
        """Neither protobuf nor JSON: 415 with the JSON error body of docs/api.md."""
        client = await client_for()
        response = await client.post(
            "/v1/traces", data=b"x", headers={"Content-Type": "text/plain"}
        )
        assert response.status == 415
        assert (await response.json())["error"] == "unsupported content type"

    @pytest.mark.parametrize("encoding", ["protobuf", "json"])
    async def test_spans_with_bad_ids_are_a_partial_success(
        self, client_for: MakeClient, encoding: str
    ) -> None:
        """Spans without proper ids are refused and counted; the rest of the request is kept."""
        client = await client_for()
        good = make_span({"gen_ai.operation.name": "chat"}, parent=3)
        bad = make_span({"gen_ai.operation.name": "chat"}, span=2)
        bad.trace_id = b"\x01\x02\x03"
        request = export_request(good, bad)
        if encoding == "protobuf":
            response = await client.post(
                "/v1/traces", data=request.SerializeToString(), headers=PROTOBUF
            )
            assert response.status == 200
            answer = ExportTraceServiceResponse.FromString(await response.read())
            assert answer.partial_success.rejected_spans == 1
            assert "trace_id" in answer.partial_success.error_message
        else:
            document = json_format.MessageToDict(request)
            for span in document["resourceSpans"][0]["scopeSpans"][0]["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()  # OTLP/JSON ids
            response = await client.post("/v1/traces", data=json.dumps(document), headers=JSON)
            assert response.status == 200
            assert (await response.json())["partialSuccess"]["rejectedSpans"] == "1"
        assert sample(client, "agent_quality_otlp_spans_total", outcome="rejected") == 1
        assert sample(client, "agent_quality_otlp_spans_total", outcome="accepted") == 1

    async def test_draining_answers_503_with_retry_after(self, client_for: MakeClient) -> None:
        """While draining, exporters are told to retry elsewhere."""
        client = await client_for()
        client.app[STATE].begin_drain(5)
        body = export_request(make_span({"gen_ai.operation.name": "chat"})).SerializeToString()
        response = await client.post("/v1/traces", data=body, headers=PROTOBUF)
        assert response.status == 503
        assert response.headers["Retry-After"]
        assert Status.FromString(await response.read()).code == 14


def turn(trace: int, *, conversation: str | None = None, root: bool = True, span: int = 1) -> bytes:
    """Return an export request for one hand-built LLM call (optionally the trace's root)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.agent.name": "support-bot",
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": f"question {trace}"}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": f"answer {trace}"}]}]
        ),
    }
    if conversation is not None:
        attributes["gen_ai.conversation.id"] = conversation
    parent = None if root else 999
    return export_request(
        make_span(attributes, trace=trace, span=span, parent=parent)
    ).SerializeToString()


class TestCompletion:
    async def test_idle_conversations_complete(self, client_for: MakeClient) -> None:
        """Without root-span completion, a conversation goes to scoring once idle."""
        client = await client_for(
            otlp={"complete_on_root_span": False, "idle_timeout": "200ms"}, **ALL
        )
        assert await export(client, scripts(1, failing=None)) == [SUCCESS]
        assert sample(client, "agent_quality_otlp_conversations_total", trigger="root_span") == 0
        await eventually(
            lambda: sample(client, "agent_quality_otlp_conversations_total", trigger="idle") == 1
        )
        await settle(client)
        assert sample(client, "agent_quality_scored_total", agent="support-bot") == 1
        assert sample(client, "agent_quality_otlp_buffer_conversations") == 0

    async def test_root_span_first_in_a_large_request(self, client_for: MakeClient) -> None:
        """A root ahead of its children, across the handler's yields, completes after them."""
        client = await client_for(**ALL)
        chat = {
            "gen_ai.operation.name": "chat",
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": "done"}]}]
            ),
        }
        root = make_span({"gen_ai.operation.name": "invoke_agent"}, trace=5, span=1)
        children = [make_span(chat, trace=5, span=n, parent=1) for n in range(2, 1300)]
        body = export_request(root, *children).SerializeToString()
        assert (await client.post("/v1/traces", data=body, headers=PROTOBUF)).status == 200
        assert sample(client, "agent_quality_otlp_conversations_total", trigger="root_span") == 1
        assert sample(client, "agent_quality_otlp_spans_total", outcome="accepted") == 1299
        assert sample(client, "agent_quality_otlp_spans_total", outcome="late") == 0

    async def test_late_spans_are_counted_not_rescored(self, client_for: MakeClient) -> None:
        """A span arriving after its conversation was completed is late."""
        client = await client_for(**ALL)
        assert (await client.post("/v1/traces", data=turn(7), headers=PROTOBUF)).status == 200
        late = turn(7, root=False, span=2)
        assert (await client.post("/v1/traces", data=late, headers=PROTOBUF)).status == 200
        await settle(client)
        assert sample(client, "agent_quality_otlp_spans_total", outcome="late") == 1
        assert sample(client, "agent_quality_conversations_total", agent="support-bot") == 1

    async def test_draining_completes_what_is_buffered(self, client_for: MakeClient) -> None:
        """When the drain begins, partial conversations go to scoring with its grace period."""
        client = await client_for(**ALL)
        body = turn(8, conversation="c-8", root=False)
        assert (await client.post("/v1/traces", data=body, headers=PROTOBUF)).status == 200
        assert sample(client, "agent_quality_otlp_buffer_conversations") == 1
        client.app[STATE].begin_drain(5)
        await eventually(
            lambda: (
                sample(client, "agent_quality_otlp_conversations_total", trigger="shutdown") == 1
            )
        )
        await settle(client)
        assert sample(client, "agent_quality_scored_total", agent="support-bot") == 1

    async def test_shutdown_flushes_the_buffer(self, client_for: MakeClient) -> None:
        """Closing the app hands what is left to the intake before the pipeline stops."""
        client = await client_for(**ALL)
        body = turn(9, conversation="c-9", root=False)
        assert (await client.post("/v1/traces", data=body, headers=PROTOBUF)).status == 200
        await client.close()
        assert sample(client, "agent_quality_otlp_conversations_total", trigger="shutdown") == 1
        assert sample(client, "agent_quality_conversations_total", agent="support-bot") == 1
        handled = sample(client, "agent_quality_scored_total", agent="support-bot")
        handled += sample(client, "agent_quality_dropped_total", reason="shutdown")
        assert handled == 1


class TestFlood:
    async def test_never_ending_traces_stay_within_the_buffer_bounds(
        self, client_for: MakeClient
    ) -> None:
        """Traces whose root never arrives: the buffer holds its bounds and drops the oldest."""
        bounds = {"max_conversations": 50, "max_bytes": 8192}
        client = await client_for(otlp={"buffer": bounds}, **ALL)
        batches, per_batch = 20, 100
        for batch in range(batches):
            spans = [
                make_span(
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.input.messages": json.dumps(
                            [{"role": "user", "parts": [{"type": "text", "content": "x" * 100}]}]
                        ),
                    },
                    trace=batch * per_batch + n + 1,
                    parent=999,
                )
                for n in range(per_batch)
            ]
            body = export_request(*spans).SerializeToString()
            assert (await client.post("/v1/traces", data=body, headers=PROTOBUF)).status == 200
            held = sample(client, "agent_quality_otlp_buffer_conversations")
            assert 0 < held <= bounds["max_conversations"]
            assert sample(client, "agent_quality_otlp_buffer_bytes") <= bounds["max_bytes"]
        dropped = sample(client, "agent_quality_dropped_total", reason="otlp_buffer_full")
        assert dropped + held == batches * per_batch
        # Still serving: a complete conversation goes through despite the flood.
        assert await export(client, scripts(1, failing=None)) == [SUCCESS]
        await settle(client)
        assert sample(client, "agent_quality_scored_total", agent="support-bot") == 1
        # Every conversation dropped from the buffer was received: the books balance.
        received = sample(client, "agent_quality_conversations_total", agent="other")
        assert received == dropped  # no agent name on these spans, and no listed service
        await client.close()  # flushes what the buffer still holds
        assert_books_balance(client)


def assert_books_balance(client: Client) -> None:
    """received = not sampled + late buffer + scored + dropped (docs/metrics.md#accounting)."""
    registry: CollectorRegistry = client.app[REGISTRY]
    totals = {
        family.name: sum(s.value for s in family.samples if s.name.endswith("_total"))
        for family in registry.collect()
    }
    dropped = sum(
        s.value
        for family in registry.collect()
        if family.name == "agent_quality_dropped"
        for s in family.samples
        if s.name.endswith("_total") and s.labels["reason"] != "judge_budget"
    )
    late = registry.get_sample_value("agent_quality_late_buffer_conversations") or 0.0
    received = totals["agent_quality_conversations"]
    assert received > 0
    fates = totals["agent_quality_not_sampled"] + late + totals["agent_quality_scored"] + dropped
    assert received == fates
