"""POST /v1/logs: GenAI events as OTLP log records, joined to the conversations of their spans.

The real SDK exports (``OTLPLogExporter`` in protobuf and JSON, ``OTLPSpanExporter``) to the
real app on loopback; hand-built log records cover what an SDK would not send.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry import trace
from opentelemetry._logs import LogRecord as ApiLogRecord
from opentelemetry.exporter.otlp.json.http._log_exporter import (
    OTLPLogExporter as JsonLogExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as ProtobufLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode

from exporter.ingest.otlp.buffer import RECENT_BYTES
from exporter.web.keys import PIPELINE, STATE
from tests.support.app import Client, MakeClient, sample
from tests.support.fake_agent import export_request, logs_request, make_log, make_span

ALL = {"sampling": {"base_rate": 1.0}}
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
DETAILS = "gen_ai.client.inference.operation.details"
QUESTION, ANSWER = "Where is my order A-7?", "It ships tomorrow."
TOOL_SAW = "lookup_order failed: the order service is down"


def parts(role: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "parts": list(items)}


def text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


#: The two LLM calls of a conversation with one failing tool, as util-genai's events carry them.
FIRST_CALL = {
    "gen_ai.operation.name": "chat",
    "gen_ai.input.messages": [parts("user", text(QUESTION))],
    "gen_ai.output.messages": [
        parts("assistant", {"type": "tool_call", "id": "c1", "name": "lookup_order"})
    ],
}
SECOND_CALL = {
    "gen_ai.operation.name": "chat",
    "gen_ai.input.messages": [
        parts("user", text(QUESTION)),
        parts("assistant", {"type": "tool_call", "id": "c1", "name": "lookup_order"}),
        parts("tool", {"type": "tool_call_response", "id": "c1", "response": TOOL_SAW}),
    ],
    "gen_ai.output.messages": [parts("assistant", text(ANSWER))],
}


async def settle(client: Client) -> None:
    await client.app[PIPELINE].drain(60)


async def eventually(check: Any, *, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def conversation_spans(trace: int, *, content: bool = False) -> list[Any]:
    """Return an agent's spans: root agent span, two chat calls, a failing tool in between."""
    chat: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 10}
    tool = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "lookup_order",
        "gen_ai.tool.call.id": "c1",
    }
    first, second = dict(chat), dict(chat)
    if content:
        first |= {k: json.dumps(v) for k, v in FIRST_CALL.items() if k.endswith("messages")}
        second |= {k: json.dumps(v) for k, v in SECOND_CALL.items() if k.endswith("messages")}
    base = 1_800_000_000_000_000_000
    return [
        make_span(
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support-bot"},
            trace=trace,
            span=1,
            start=base,
            duration=100,
        ),
        make_span(first, trace=trace, span=2, parent=1, start=base + 10, duration=10),
        make_span(
            tool, trace=trace, span=3, parent=1, start=base + 30, duration=10, error="HTTP 503"
        ),
        make_span(second, trace=trace, span=4, parent=1, start=base + 50, duration=10),
    ]


def events(trace: int) -> list[Any]:
    """Return the operation.details events of the two chat calls of ``conversation_spans``."""
    return [
        make_log(DETAILS, FIRST_CALL, trace=trace, span=2),
        make_log(DETAILS, SECOND_CALL, trace=trace, span=4),
    ]


async def post(client: Client, path: str, request: Any) -> Any:
    response = await client.post(path, data=request.SerializeToString(), headers=PROTOBUF)
    assert response.status == 200, await response.text()
    return response


class TestJoining:
    @pytest.mark.parametrize("first", ["spans", "logs"])
    async def test_events_join_their_spans_whichever_comes_first(
        self, client_for: MakeClient, first: str
    ) -> None:
        """Content as events, spans without it: one conversation, completed by its root span."""
        client = await client_for(**ALL)
        spans, logs = export_request(*conversation_spans(1)), logs_request(*events(1))
        for path, request in sorted(
            [("/v1/traces", spans), ("/v1/logs", logs)], key=lambda p: p[0] != f"/v1/{first}"
        ):
            await post(client, path, request)
        await settle(client)
        assert sample(client, "agent_quality_otlp_conversations_total", trigger="root_span") == 1
        assert sample(client, "agent_quality_otlp_log_records_total", outcome="accepted") == 2
        final = {"agent": "support-bot", "dimension": "final_answer"}
        assert sample(client, "agent_quality_score_sum", **final) == 1
        assert sample(client, "agent_quality_flags_total", agent="support-bot", flag="tool_error")
        assert sample(client, "agent_quality_otlp_buffer_conversations") == 0
        # What is left: the conversation's key and trace, remembered to count late records.
        assert sample(client, "agent_quality_otlp_buffer_bytes") == 2 * RECENT_BYTES

    async def test_root_span_waits_for_the_events_of_content_less_calls(
        self, client_for: MakeClient
    ) -> None:
        """Spans first: the conversation stays until the events of its LLM calls are in."""
        client = await client_for(**ALL)
        await post(client, "/v1/traces", export_request(*conversation_spans(1)))
        assert sample(client, "agent_quality_otlp_buffer_conversations") == 1
        await post(client, "/v1/logs", logs_request(events(1)[0]))
        assert sample(client, "agent_quality_otlp_buffer_conversations") == 1  # one call to go
        await post(client, "/v1/logs", logs_request(events(1)[1]))
        assert sample(client, "agent_quality_otlp_buffer_conversations") == 0
        assert sample(client, "agent_quality_otlp_conversations_total", trigger="root_span") == 1

    async def test_without_events_the_idle_timeout_completes(self, client_for: MakeClient) -> None:
        """No content anywhere: the idle timeout completes the tool-only conversation."""
        client = await client_for(otlp={"idle_timeout": "200ms"}, **ALL)
        await post(client, "/v1/traces", export_request(*conversation_spans(1)))
        await eventually(
            lambda: sample(client, "agent_quality_otlp_conversations_total", trigger="idle") == 1
        )
        await settle(client)
        # Scored by what needs no text; not called a conversation without an answer.
        tool = {"agent": "support-bot", "dimension": "tool_success"}
        assert sample(client, "agent_quality_score_count", **tool) == 1
        final = {"agent": "support-bot", "dimension": "final_answer"}
        assert sample(client, "agent_quality_score_count", **final) == 0
        flag = {"agent": "support-bot", "flag": "no_final_answer"}
        assert sample(client, "agent_quality_flags_total", **flag) == 0

    async def test_events_after_spans_with_content_are_late(self, client_for: MakeClient) -> None:
        """span_and_event: the spans had the content, completed it; their events come late."""
        client = await client_for(**ALL)
        await post(client, "/v1/traces", export_request(*conversation_spans(1, content=True)))
        assert sample(client, "agent_quality_otlp_conversations_total", trigger="root_span") == 1
        await post(client, "/v1/logs", logs_request(*events(1)))
        assert sample(client, "agent_quality_otlp_log_records_total", outcome="late") == 2
        assert sample(client, "agent_quality_otlp_buffer_conversations") == 0

    async def test_event_without_a_span_id_joins_its_trace(self, client_for: MakeClient) -> None:
        """An event with only a trace id is kept with that trace's conversation."""
        client = await client_for(otlp={"idle_timeout": "200ms"}, **ALL)
        answer = {"gen_ai.output.messages": [parts("assistant", text(ANSWER))]}
        later = 1_800_000_000_002_000_000  # after the span (make_span's start, 1 ms long)
        event = make_log(DETAILS, answer, span=None, time=later)
        await post(client, "/v1/logs", logs_request(event))
        question = {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps([parts("user", text(QUESTION))]),
        }
        await post(client, "/v1/traces", export_request(make_span(question, parent=9)))
        assert sample(client, "agent_quality_otlp_log_records_total", outcome="accepted") == 1
        assert sample(client, "agent_quality_otlp_buffer_conversations") == 1
        await eventually(
            lambda: sample(client, "agent_quality_otlp_conversations_total", trigger="idle") == 1
        )
        await settle(client)
        final = {"agent": "other", "dimension": "final_answer"}  # support-service: not listed
        assert sample(client, "agent_quality_score_sum", **final) == 1

    async def test_other_log_records_are_counted_and_ignored(self, client_for: MakeClient) -> None:
        """Log lines, other events, GenAI events without trace context: counted, not kept."""
        client = await client_for(**ALL)
        records = [
            make_log(None, {"http.route": "/orders"}, body="GET /orders 200"),
            make_log("browser.page_view", {}, trace=2, span=2),
            make_log(DETAILS, FIRST_CALL, trace=None, span=None),
            make_log("gen_ai.unknown.event", {}, trace=3, span=3),
        ]
        await post(client, "/v1/logs", logs_request(*records))
        assert sample(client, "agent_quality_otlp_log_records_total", outcome="ignored") == 4
        assert sample(client, "agent_quality_otlp_buffer_conversations") == 0


class TestLegacyEvents:
    async def test_per_message_events_in_log_bodies(self, client_for: MakeClient) -> None:
        """gen_ai.user.message, gen_ai.choice, gen_ai.tool.message... with fields in the body."""
        client = await client_for(**ALL)
        call = {"id": "c1", "type": "function", "function": {"name": "lookup_order"}}
        records = [
            make_log(
                "gen_ai.user.message", {"gen_ai.system": "openai"}, body={"content": QUESTION}
            ),
            make_log(
                "gen_ai.choice",
                body={"index": 0, "message": {"role": "assistant", "tool_calls": [call]}},
            ),
            make_log("gen_ai.user.message", body={"content": QUESTION}, span=4),
            make_log("gen_ai.assistant.message", body={"tool_calls": [call]}, span=4),
            make_log("gen_ai.tool.message", body={"content": TOOL_SAW, "id": "c1"}, span=4),
            make_log(
                "gen_ai.choice",
                body={"index": 1, "message": {"role": "assistant", "content": "other choice"}},
                span=4,
            ),
            make_log(
                "gen_ai.choice",
                body={"index": 0, "message": {"role": "assistant", "content": ANSWER}},
                span=4,
            ),
        ]
        for record in records[:2]:
            record.span_id = (2).to_bytes(8, "big")
        await post(client, "/v1/logs", logs_request(*records))
        await post(client, "/v1/traces", export_request(*conversation_spans(1)))
        await settle(client)
        final = {"agent": "support-bot", "dimension": "final_answer"}
        assert sample(client, "agent_quality_score_sum", **final) == 1
        tool = {"agent": "support-bot", "dimension": "tool_success"}
        assert sample(client, "agent_quality_score_sum", **tool) == 0

    async def test_evaluation_results_are_upstream_scores(self, client_for: MakeClient) -> None:
        """gen_ai.evaluation.result events become the conversation's upstream scores."""
        client = await client_for(**ALL)
        evaluation = {"gen_ai.evaluation.name": "coherence", "gen_ai.evaluation.score.value": 4.0}
        records = [*events(1), make_log("gen_ai.evaluation.result", evaluation, span=4)]
        await post(client, "/v1/logs", logs_request(*records))
        await post(client, "/v1/traces", export_request(*conversation_spans(1)))
        await settle(client)
        coherence = {"agent": "support-bot", "dimension": "coherence"}
        assert sample(client, "agent_quality_score_sum", **coherence) == 4


class TestSdkExport:
    @pytest.mark.parametrize(
        ("encoding", "gzip"), [("protobuf", False), ("protobuf", True), ("json", False)]
    )
    async def test_sdk_log_exporter(
        self, client_for: MakeClient, encoding: str, gzip: bool
    ) -> None:
        """The SDK's own OTLPLogExporter (protobuf, gzip, JSON) and OTLPSpanExporter."""
        client = await client_for(**ALL)
        logs_url, traces_url = (str(client.make_url(p)) for p in ("/v1/logs", "/v1/traces"))
        exporter: LogRecordExporter
        if encoding == "json":
            exporter = JsonLogExporter(endpoint=logs_url)
        else:
            compression = Compression.Gzip if gzip else Compression.NoCompression
            exporter = ProtobufLogExporter(endpoint=logs_url, compression=compression)
        resource = Resource.create({"service.name": "support-bot"})
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=traces_url))
        )

        def run() -> None:
            logger = logger_provider.get_logger("util-genai")
            tracer = tracer_provider.get_tracer("agent")
            with tracer.start_as_current_span("invoke_agent support-bot") as agent:
                agent.set_attribute("gen_ai.operation.name", "invoke_agent")
                for call in (FIRST_CALL, SECOND_CALL):
                    with tracer.start_as_current_span("chat") as span:
                        span.set_attribute("gen_ai.operation.name", "chat")
                        logger.emit(
                            ApiLogRecord(
                                event_name=DETAILS,
                                attributes=_flat(call),
                                context=trace.set_span_in_context(span),
                            )
                        )
                    if call is FIRST_CALL:
                        with tracer.start_as_current_span("execute_tool lookup_order") as tool:
                            tool.set_attribute("gen_ai.operation.name", "execute_tool")
                            tool.set_attribute("gen_ai.tool.call.id", "c1")
                            tool.set_status(SpanStatus(StatusCode.ERROR, "HTTP 503"))
            logger_provider.shutdown()
            tracer_provider.shutdown()

        await asyncio.to_thread(run)  # the exporters' HTTP clients block
        await settle(client)
        assert sample(client, "agent_quality_otlp_log_records_total", outcome="accepted") == 2
        assert sample(client, "agent_quality_otlp_conversations_total", trigger="root_span") == 1
        final = {"agent": "support-bot", "dimension": "final_answer"}
        assert sample(client, "agent_quality_score_sum", **final) == 1
        assert sample(client, "agent_quality_flags_total", agent="support-bot", flag="tool_error")


def _flat(call: dict[str, Any]) -> dict[str, Any]:
    """Return an event's attributes as the SDK takes them: messages as JSON strings.

    The Python SDK's attribute values are primitives or lists of them; util-genai passes maps
    anyway, which the OTLP encoder sends as structured values. A JSON string is read the same.
    """
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in call.items()}


class TestErrors:
    async def test_malformed_bodies_get_400_in_the_request_encoding(
        self, client_for: MakeClient
    ) -> None:
        """Broken protobuf and JSON: 400 with a google.rpc.Status."""
        client = await client_for()
        good = logs_request(*events(1)).SerializeToString()
        response = await client.post("/v1/logs", data=good[:-4], headers=PROTOBUF)
        assert response.status == 400
        status = Status.FromString(await response.read())
        assert (status.code, "ExportLogsServiceRequest" in status.message) == (3, True)
        response = await client.post("/v1/logs", data=b'{"resourceLogs": [', headers=JSON)
        assert response.status == 400
        assert (await response.json())["code"] == 3
        rejected = {"endpoint": "logs", "reason": "malformed"}
        assert sample(client, "agent_quality_rejected_total", **rejected) == 2

    async def test_unsupported_content_type_is_415(self, client_for: MakeClient) -> None:
        client = await client_for()
        response = await client.post("/v1/logs", data=b"x", headers={"Content-Type": "text/csv"})
        assert response.status == 415
        assert (await response.json())["error"] == "unsupported content type"

    @pytest.mark.parametrize("encoding", ["protobuf", "json"])
    async def test_bad_ids_are_a_partial_success(
        self, client_for: MakeClient, encoding: str
    ) -> None:
        """GenAI events with malformed ids are refused and counted; the rest is kept."""
        client = await client_for()
        good, bad = events(1)
        bad.trace_id = b"\x01\x02\x03"
        request = logs_request(good, bad)
        if encoding == "protobuf":
            response = await client.post(
                "/v1/logs", data=request.SerializeToString(), headers=PROTOBUF
            )
            answer = ExportLogsServiceResponse.FromString(await response.read())
            assert answer.partial_success.rejected_log_records == 1
            assert "trace_id" in answer.partial_success.error_message
        else:
            document = json_format.MessageToDict(request)
            for record in _records(document):
                for key in ("traceId", "spanId"):
                    record[key] = base64.b64decode(record[key]).hex()  # OTLP/JSON ids are hex
            response = await client.post("/v1/logs", data=json.dumps(document), headers=JSON)
            assert (await response.json())["partialSuccess"]["rejectedLogRecords"] == "1"
        assert response.status == 200
        assert sample(client, "agent_quality_otlp_log_records_total", outcome="rejected") == 1
        assert sample(client, "agent_quality_otlp_log_records_total", outcome="accepted") == 1

    async def test_draining_answers_503_with_retry_after(self, client_for: MakeClient) -> None:
        client = await client_for()
        client.app[STATE].begin_drain(5)
        response = await client.post(
            "/v1/logs", data=logs_request(*events(1)).SerializeToString(), headers=PROTOBUF
        )
        assert response.status == 503
        assert response.headers["Retry-After"]
        assert Status.FromString(await response.read()).code == 14

    async def test_bearer_token(
        self, client_for: MakeClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a token configured, /v1/logs needs it like /v1/traces."""
        monkeypatch.setenv("AQE_TEST_TOKEN", "tok-123")
        client = await client_for(server={"auth": {"bearer_token_env": "AQE_TEST_TOKEN"}})
        body = logs_request(*events(1)).SerializeToString()
        response = await client.post("/v1/logs", data=body, headers=PROTOBUF)
        assert response.status == 401
        headers = {**PROTOBUF, "Authorization": "Bearer tok-123"}
        response = await client.post("/v1/logs", data=body, headers=headers)
        assert response.status == 200


def _records(document: dict[str, Any]) -> Sequence[dict[str, Any]]:
    return [
        record
        for resource in document["resourceLogs"]
        for scope in resource["scopeLogs"]
        for record in scope["logRecords"]
    ]
