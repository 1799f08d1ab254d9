"""One span as what a conversation needs from it: kind, ids, messages, tool run, usage.

Reads the OpenTelemetry GenAI conventions (``gen_ai.*`` attributes in their current JSON form,
the older per-message span events and ``gen_ai.prompt``/``gen_ai.completion``), OpenInference
(``openinference.span.kind``, ``llm.*``, ``session.id``) and OpenLLMetry's flattened
``gen_ai.prompt.N.*`` (``content.py`` reads the messages). Spans with none of these return
None: their content is not kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from exporter.ingest.otlp.content import read_attributes, read_event, read_values
from exporter.ingest.otlp.messages import REDACTED, stringify
from exporter.ingest.otlp.record import SpanRecord, ToolRun
from exporter.ingest.otlp.values import as_int, as_text, attributes

__all__ = ["ends_trace", "extract", "identifier", "is_genai"]

_GENAI_PREFIXES = ("gen_ai.", "llm.", "openinference.")
_LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
# W3C/OTLP span flags: bit 8 says whether bit 9 (parent is remote) is known.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200


def is_genai(span: Span) -> bool:
    """Say whether ``span`` carries any GenAI or OpenInference attribute or event."""
    for kv in span.attributes:
        if kv.key.startswith(_GENAI_PREFIXES):
            return True
    return any(event.name.startswith("gen_ai.") for event in span.events)


def ends_trace(span: Span) -> bool:
    """Say whether ``span`` is the root of its trace (it has no parent)."""
    return not span.parent_span_id


def _has_remote_parent(span: Span) -> bool:
    flags = span.flags
    return bool(span.parent_span_id) and (flags & _HAS_IS_REMOTE) != 0 and (flags & _IS_REMOTE) != 0


def _kind(attrs: Mapping[str, Any]) -> str:
    operation = attrs.get("gen_ai.operation.name")
    openinference = str(attrs.get("openinference.span.kind", "")).upper()
    if operation == "invoke_agent" or openinference == "AGENT":
        return "agent"
    if operation == "execute_tool" or openinference == "TOOL":
        return "tool"
    if operation in _LLM_OPERATIONS or openinference == "LLM":
        return "llm"
    return "other"


def extract(span: Span) -> SpanRecord | None:
    """Return what ``span`` contributes, or None when it is not a GenAI span."""
    if not is_genai(span):
        return None
    attrs = attributes(span.attributes)
    kind = _kind(attrs)
    record = SpanRecord(
        trace_id=span.trace_id,
        span_id=span.span_id,
        start=span.start_time_unix_nano,
        end=max(span.end_time_unix_nano, span.start_time_unix_nano),
        kind=kind,
        ends_conversation=ends_trace(span) or (kind == "agent" and _has_remote_parent(span)),
        conversation_id=identifier(attrs.get("gen_ai.conversation.id", attrs.get("session.id"))),
        agent=as_text(attrs.get("gen_ai.agent.name", attrs.get("agent.name"))),
        model=as_text(
            attrs.get("gen_ai.response.model")
            or attrs.get("gen_ai.request.model")
            or attrs.get("llm.model_name")
        ),
        input_tokens=as_int(
            _first(
                attrs,
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.prompt_tokens",
                "llm.token_count.prompt",
            )
        ),
        output_tokens=as_int(
            _first(
                attrs,
                "gen_ai.usage.output_tokens",
                "gen_ai.usage.completion_tokens",
                "llm.token_count.completion",
            )
        ),
    )
    cost = attrs.get("llm.cost.total")
    if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
        record.cost_usd = float(cost)
    read_attributes(record, attrs)
    for event in span.events:
        if event.name.startswith("gen_ai."):
            read_event(record, event.name, attributes(event.attributes))
    if kind == "agent" and not record.has_messages:
        read_values(record, attrs)
    # Each output message is one choice; the conversation continued with the first.
    del record.outputs[1:]
    if kind == "tool":
        record.tool = _tool_run(attrs, span)
    return record


def _first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in attrs:
            return attrs[key]
    return None


def identifier(value: Any) -> str | None:
    """Return a conversation or call id given as text or a number, or None."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _content(value: Any) -> str | None:
    text = stringify(value)
    return None if text == REDACTED else text


def _tool_run(attrs: Mapping[str, Any], span: Span) -> ToolRun:
    error_message = span.status.message or None
    for event in span.events:
        if event.name == "exception":
            error_message = error_message or as_text(
                attributes(event.attributes).get("exception.message")
            )
    failed = span.status.code == Status.STATUS_CODE_ERROR or "error.type" in attrs
    if failed and error_message is None:
        error_message = as_text(attrs.get("error.type"))
    call_id = attrs.get("gen_ai.tool.call.id", attrs.get("tool.id", attrs.get("tool_call.id")))
    return ToolRun(
        name=as_text(attrs.get("gen_ai.tool.name", attrs.get("tool.name"))),
        call_id=identifier(call_id),
        arguments=_content(attrs.get("gen_ai.tool.call.arguments", attrs.get("input.value"))),
        result=_content(attrs.get("gen_ai.tool.call.result", attrs.get("output.value"))),
        error=failed,
        error_message=error_message,
    )
