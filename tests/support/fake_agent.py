"""An agent instrumented with the real OpenTelemetry SDK, exporting over OTLP/HTTP.

It plays scripted conversations (a user question, tool calls that succeed or fail, a final
answer) as the spans a real instrumented agent emits: an agent span around LLM and tool spans,
with either the OpenTelemetry GenAI attributes or OpenInference's. ``Script.conversation()``
is the same conversation as a JSON-sink client would send it, to compare the two paths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status, StatusCode, Tracer

Convention = Literal["genai", "openinference"]


@dataclass(frozen=True)
class ToolStep:
    """One tool call: its result, or the error it failed with."""

    name: str
    arguments: Mapping[str, Any]
    result: str | None = None
    error: str | None = None

    @property
    def response(self) -> str | None:
        """Return what the agent saw come back: the result, or the error."""
        return self.result if self.error is None else self.error


@dataclass(frozen=True)
class Script:
    """One conversation to play."""

    conversation_id: str
    user: str
    answer: str
    tools: tuple[ToolStep, ...] = ()
    system: str = "You are the support agent of an online shop."
    model: str = "gpt-4.1-mini"
    tokens: tuple[int, int] = (120, 30)  # per LLM call: input, output

    def call_id(self, index: int) -> str:
        return f"call_{self.conversation_id}_{index}"

    def tool_call(self, index: int) -> dict[str, Any]:
        """Return tool step ``index`` as the assistant's call: id, name, JSON arguments."""
        step = self.tools[index]
        return {
            "id": self.call_id(index),
            "name": step.name,
            "arguments": json.dumps(dict(step.arguments)),
        }

    def conversation(self, *, agent: str) -> dict[str, Any]:
        """Return the conversation as a client of ``POST /v1/conversations`` would send it."""
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user},
        ]
        for index, step in enumerate(self.tools):
            call = self.tool_call(index)
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": self.call_id(index),
                    "content": step.response,
                    "error": step.error if step.error is not None else False,
                }
            )
        messages.append({"role": "assistant", "content": self.answer})
        calls = len(self.tools) + 1
        return {
            "id": self.conversation_id,
            "agent": agent,
            "model": self.model,
            "messages": messages,
            "usage": {
                "input_tokens": self.tokens[0] * calls,
                "output_tokens": self.tokens[1] * calls,
            },
        }


class RecordingExporter(SpanExporter):
    """Wraps an exporter and keeps each export's result, which span processors swallow."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def provider(
    exporter: SpanExporter, *, service: str = "support-service", batch: bool = True
) -> TracerProvider:
    """Return a tracer provider exporting with ``exporter`` (batched, as deployed agents do)."""
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if batch:
        # One export per flush: the tests flush explicitly, so the timer never fires first.
        processor: Any = BatchSpanProcessor(
            exporter, max_export_batch_size=512, schedule_delay_millis=60_000
        )
    else:
        processor = SimpleSpanProcessor(exporter)
    tracer_provider.add_span_processor(processor)
    return tracer_provider


@dataclass
class FakeAgent:
    """Plays scripts as spans on ``tracer``."""

    tracer: Tracer
    name: str = "support-bot"
    convention: Convention = "genai"
    _history: list[dict[str, Any]] = field(default_factory=list)

    def run(self, script: Script) -> None:
        """Emit the spans of one conversation."""
        play = self._genai if self.convention == "genai" else self._openinference
        play(script)

    # --- OpenTelemetry GenAI semantic conventions -------------------------------------------

    def _genai(self, script: Script) -> None:
        common = {
            "gen_ai.conversation.id": script.conversation_id,
            "gen_ai.provider.name": "openai",
        }
        with self.tracer.start_as_current_span(
            f"invoke_agent {self.name}",
            attributes={
                **common,
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": self.name,
            },
        ):
            history: list[dict[str, Any]] = [
                {"role": "user", "parts": [{"type": "text", "content": script.user}]}
            ]
            for index, step in enumerate(script.tools):
                call = {
                    "type": "tool_call",
                    "id": script.call_id(index),
                    "name": step.name,
                    "arguments": dict(step.arguments),
                }
                output = {"role": "assistant", "parts": [call], "finish_reason": "tool_call"}
                self._genai_chat(script, common, history, output)
                history.append(output)
                self._genai_tool(script, index, step, common)
                history.append(
                    {
                        "role": "tool",
                        "parts": [
                            {
                                "type": "tool_call_response",
                                "id": script.call_id(index),
                                "response": step.response,
                            }
                        ],
                    }
                )
            answer = {
                "role": "assistant",
                "parts": [{"type": "text", "content": script.answer}],
                "finish_reason": "stop",
            }
            self._genai_chat(script, common, history, answer)

    def _genai_chat(
        self,
        script: Script,
        common: dict[str, Any],
        history: list[dict[str, Any]],
        output: dict[str, Any],
    ) -> None:
        with self.tracer.start_as_current_span(
            f"chat {script.model}",
            attributes={
                **common,
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": script.model,
                "gen_ai.response.model": script.model,
                "gen_ai.usage.input_tokens": script.tokens[0],
                "gen_ai.usage.output_tokens": script.tokens[1],
                # The Python SDK has no map-valued attributes: JSON strings, as the
                # conventions allow.
                "gen_ai.system_instructions": json.dumps(
                    [{"type": "text", "content": script.system}]
                ),
                "gen_ai.input.messages": json.dumps(history),
                "gen_ai.output.messages": json.dumps([output]),
            },
        ):
            pass

    def _genai_tool(
        self, script: Script, index: int, step: ToolStep, common: dict[str, Any]
    ) -> None:
        attributes = {
            **common,
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": step.name,
            "gen_ai.tool.call.id": script.call_id(index),
            "gen_ai.tool.call.arguments": json.dumps(dict(step.arguments)),
        }
        if step.result is not None:
            attributes["gen_ai.tool.call.result"] = step.result
        with self.tracer.start_as_current_span(
            f"execute_tool {step.name}", attributes=attributes, record_exception=False
        ) as span:
            if step.error is not None:
                span.set_attribute("error.type", "ToolError")
                span.set_status(Status(StatusCode.ERROR, step.error))

    # --- OpenInference semantic conventions -------------------------------------------------

    def _openinference(self, script: Script) -> None:
        session = {"session.id": script.conversation_id}
        with self.tracer.start_as_current_span(
            self.name,
            attributes={
                **session,
                "openinference.span.kind": "AGENT",
                "agent.name": self.name,
                "input.value": script.user,
                "output.value": script.answer,
            },
        ):
            history: list[dict[str, Any]] = [
                {"role": "system", "content": script.system},
                {"role": "user", "content": script.user},
            ]
            for index, step in enumerate(script.tools):
                output = {"role": "assistant", "tool_calls": [script.tool_call(index)]}
                self._oi_llm(script, session, history, output)
                history.append(output)
                with self.tracer.start_as_current_span(
                    step.name,
                    attributes={
                        **session,
                        "openinference.span.kind": "TOOL",
                        "tool.name": step.name,
                        "tool_call.id": script.call_id(index),
                        "input.value": json.dumps(dict(step.arguments)),
                        "input.mime_type": "application/json",
                        **({"output.value": step.result} if step.result is not None else {}),
                    },
                    record_exception=False,
                ) as span:
                    if step.error is not None:
                        span.set_status(Status(StatusCode.ERROR, step.error))
                history.append(
                    {
                        "role": "tool",
                        "tool_call_id": script.call_id(index),
                        "content": step.response,
                    }
                )
            self._oi_llm(script, session, history, {"role": "assistant", "content": script.answer})

    def _oi_llm(
        self,
        script: Script,
        session: dict[str, Any],
        history: list[dict[str, Any]],
        output: dict[str, Any],
    ) -> None:
        attributes: dict[str, Any] = {
            **session,
            "openinference.span.kind": "LLM",
            "llm.model_name": script.model,
            "llm.token_count.prompt": script.tokens[0],
            "llm.token_count.completion": script.tokens[1],
        }
        for prefix, messages in (
            ("llm.input_messages", history),
            ("llm.output_messages", [output]),
        ):
            for i, message in enumerate(messages):
                base = f"{prefix}.{i}.message"
                attributes[f"{base}.role"] = message["role"]
                if message.get("content") is not None:
                    attributes[f"{base}.content"] = message["content"]
                if "tool_call_id" in message:
                    attributes[f"{base}.tool_call_id"] = message["tool_call_id"]
                for j, call in enumerate(message.get("tool_calls", ())):
                    tool_call = f"{base}.tool_calls.{j}.tool_call"
                    attributes[f"{tool_call}.id"] = call["id"]
                    attributes[f"{tool_call}.function.name"] = call["name"]
                    attributes[f"{tool_call}.function.arguments"] = call["arguments"]
        with self.tracer.start_as_current_span("ChatCompletion", attributes=attributes):
            pass


def scripts(count: int, *, failing: int | None = 1, prefix: str = "conv") -> list[Script]:
    """Return ``count`` support conversations; the ``failing``-th one has a failing tool."""
    result = []
    for n in range(count):
        tools: tuple[ToolStep, ...] = (
            ToolStep("lookup_order", {"order": f"A-{n}"}, result=json.dumps({"status": "shipped"})),
        )
        answer = f"Order A-{n} has shipped and arrives tomorrow."
        if n == failing:
            tools += (ToolStep("refund", {"order": f"A-{n}"}, error="refund service unavailable"),)
            answer = f"Order A-{n} has shipped; I could not start the refund, please retry later."
        result.append(
            Script(
                conversation_id=f"{prefix}-{n}",
                user=f"Where is my order A-{n}? I also want a refund.",
                answer=answer,
                tools=tools,
            )
        )
    return result


# --- Hand-built OTLP spans and log records, for what the SDK cannot emit (structured
# attributes, bad ids) and for tests that need no instrumentation ---


def any_value(value: Any) -> AnyValue:
    """Return ``value`` as an OTLP AnyValue (maps and lists become kvlist/array values)."""
    result = AnyValue()
    if isinstance(value, bool):
        result.bool_value = value
    elif isinstance(value, int):
        result.int_value = value
    elif isinstance(value, float):
        result.double_value = value
    elif isinstance(value, str):
        result.string_value = value
    elif isinstance(value, bytes):
        result.bytes_value = value
    elif isinstance(value, Mapping):
        result.kvlist_value.values.extend(
            KeyValue(key=k, value=any_value(v)) for k, v in value.items()
        )
    elif isinstance(value, list | tuple):
        result.array_value.values.extend(any_value(v) for v in value)
    return result


def key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    """Return ``attributes`` as an OTLP attribute list."""
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def make_span(
    attributes: Mapping[str, Any],
    *,
    trace: int = 1,
    span: int = 1,
    parent: int | None = None,
    flags: int = 0,
    start: int = 1_800_000_000_000_000_000,
    duration: int = 1_000_000,
    events: tuple[tuple[str, Mapping[str, Any]], ...] = (),
    error: str | None = None,
) -> Span:
    """Return one OTLP span; ids are small integers made into 16- and 8-byte ids."""
    result = Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span.to_bytes(8, "big"),
        parent_span_id=b"" if parent is None else parent.to_bytes(8, "big"),
        flags=flags,
        name="span",
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        attributes=key_values(attributes),
    )
    for name, event_attributes in events:
        result.events.append(
            Span.Event(name=name, time_unix_nano=start, attributes=key_values(event_attributes))
        )
    if error is not None:
        result.status.code = ProtoStatus.STATUS_CODE_ERROR
        result.status.message = error
    return result


def export_request(
    *spans: Span, service: str | None = "support-service"
) -> ExportTraceServiceRequest:
    """Return an export request holding ``spans`` under one resource and scope."""
    resource = {"service.name": service} if service else {}
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=ProtoResource(attributes=key_values(resource)),
                scope_spans=[ScopeSpans(spans=list(spans))],
            )
        ]
    )


def make_log(
    event: str | None,
    attributes: Mapping[str, Any] | None = None,
    *,
    body: Any = None,
    trace: int | None = 1,
    span: int | None = 1,
    time: int = 1_800_000_000_000_000_000,
) -> LogRecord:
    """Return one OTLP log record: a GenAI event named ``event`` (None: a plain log line).

    Ids are small integers as in ``make_span``; None leaves an id out.
    """
    record = LogRecord(
        observed_time_unix_nano=time,
        event_name=event or "",
        attributes=key_values(attributes or {}),
        trace_id=b"" if trace is None else trace.to_bytes(16, "big"),
        span_id=b"" if span is None else span.to_bytes(8, "big"),
    )
    if body is not None:
        record.body.CopyFrom(any_value(body))
    return record


def logs_request(
    *records: LogRecord, service: str | None = "support-service"
) -> ExportLogsServiceRequest:
    """Return a logs export request holding ``records`` under one resource and scope."""
    resource = {"service.name": service} if service else {}
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=ProtoResource(attributes=key_values(resource)),
                scope_logs=[ScopeLogs(log_records=list(records))],
            )
        ]
    )
