"""One span as what a conversation needs from it: kind, ids, messages, tool run, usage.

Reads the OpenTelemetry GenAI conventions (``gen_ai.*`` attributes in their current JSON form,
the older per-message span events and ``gen_ai.prompt``/``gen_ai.completion``), OpenInference
(``openinference.span.kind``, ``llm.*``, ``session.id``) and OpenLLMetry's flattened
``gen_ai.prompt.N.*``. Spans with none of these return None: their content is not kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from exporter.ingest.otlp.flat import openinference_messages, openllmetry_messages
from exporter.ingest.otlp.messages import from_any, from_openai, stringify, system
from exporter.ingest.otlp.values import as_int, as_text, attributes, from_json
from exporter.model import Message, Role

__all__ = ["SpanRecord", "ToolRun", "ends_trace", "extract", "is_genai"]

_GENAI_PREFIXES = ("gen_ai.", "llm.", "openinference.")
_LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
# W3C/OTLP span flags: bit 8 says whether bit 9 (parent is remote) is known.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
#: Older GenAI events (semantic conventions up to 1.36) and the role each one carries.
_INPUT_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


@dataclass(slots=True)
class ToolRun:
    """One ``execute_tool`` (or OpenInference TOOL) span."""

    name: str | None
    call_id: str | None
    arguments: str | None
    result: str | None
    error: bool
    error_message: str | None


@dataclass(slots=True)
class SpanRecord:
    """What one GenAI span contributes to its conversation."""

    trace_id: bytes
    span_id: bytes
    start: int  # Unix nanoseconds, as in OTLP
    end: int
    kind: str  # agent, llm, tool or other
    size: int  # serialized bytes, charged against the buffer's byte limit
    ends_conversation: bool
    conversation_id: str | None = None
    agent: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    inputs: list[Message] = field(default_factory=list)
    outputs: list[Message] = field(default_factory=list)
    tool: ToolRun | None = None
    scores: dict[str, float] = field(default_factory=dict)


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
        size=span.ByteSize(),
        ends_conversation=ends_trace(span) or (kind == "agent" and _has_remote_parent(span)),
        conversation_id=_identifier(attrs.get("gen_ai.conversation.id", attrs.get("session.id"))),
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
    _read_messages(record, attrs, span)
    if kind == "tool":
        record.tool = _tool_run(attrs, span)
    return record


def _first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in attrs:
            return attrs[key]
    return None


def _identifier(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _read_messages(record: SpanRecord, attrs: Mapping[str, Any], span: Span) -> None:
    inputs, outputs = record.inputs, record.outputs
    instructions = system(from_json(attrs.get("gen_ai.system_instructions")))
    if instructions is not None:
        inputs.append(instructions)
    # The current GenAI attributes first, then OpenInference, then the older GenAI forms.
    # Flattened lists start at index 0: one lookup says whether a span has one.
    if "gen_ai.input.messages" in attrs:
        inputs += from_any(from_json(attrs["gen_ai.input.messages"]))
    elif "llm.input_messages.0.message.role" in attrs:
        for item in openinference_messages(attrs, "llm.input_messages."):
            inputs += from_openai(item)
    elif "gen_ai.prompt" in attrs:
        inputs += from_any(from_json(attrs["gen_ai.prompt"]), default_role="user")
    elif "gen_ai.prompt.0.role" in attrs or "gen_ai.prompt.0.content" in attrs:
        for item in openllmetry_messages(attrs, "gen_ai.prompt."):
            inputs += from_openai(item)
    if "gen_ai.output.messages" in attrs:
        outputs += from_any(from_json(attrs["gen_ai.output.messages"]))
    elif "llm.output_messages.0.message.role" in attrs:
        for item in openinference_messages(attrs, "llm.output_messages."):
            outputs += from_openai(item, default_role="assistant")
    elif "gen_ai.completion" in attrs:
        outputs += from_any(from_json(attrs["gen_ai.completion"]), default_role="assistant")
    elif "gen_ai.completion.0.role" in attrs or "gen_ai.completion.0.content" in attrs:
        for item in openllmetry_messages(attrs, "gen_ai.completion."):
            outputs += from_openai(item, default_role="assistant")
    if span.events:
        _read_events(record, span)
    if record.kind == "agent" and not inputs and not outputs:
        _read_values(record, attrs)
    # Each output message is one choice; the conversation continued with the first.
    del outputs[1:]


def _read_events(record: SpanRecord, span: Span) -> None:
    for event in span.events:
        name = event.name
        if not name.startswith("gen_ai."):
            continue
        body = attributes(event.attributes)
        # Some SDKs put the event body in one JSON attribute, others one attribute per field.
        content = from_json(body.get("gen_ai.event.content"))
        if isinstance(content, dict):
            body = {**body, **content}
        elif "tool_calls" in body:  # structured fields as JSON strings, where SDKs lack maps
            body["tool_calls"] = from_json(body["tool_calls"])
        if name in _INPUT_EVENTS:
            record.inputs += from_openai(body, default_role=_INPUT_EVENTS[name])
        elif name == "gen_ai.choice":
            message = from_json(body.get("message"))
            record.outputs += from_openai(
                message if isinstance(message, dict) else body, default_role="assistant"
            )
        elif name == "gen_ai.content.prompt" and not record.inputs:
            record.inputs += from_any(from_json(body.get("gen_ai.prompt")), default_role="user")
        elif name == "gen_ai.content.completion" and not record.outputs:
            completion = from_json(body.get("gen_ai.completion"))
            record.outputs += from_any(completion, default_role="assistant")
        elif name == "gen_ai.evaluation.result":
            _read_score(record, body)


def _read_score(record: SpanRecord, body: dict[str, Any]) -> None:
    name, value = body.get("gen_ai.evaluation.name"), body.get("gen_ai.evaluation.score.value")
    if isinstance(name, str) and isinstance(value, int | float) and not isinstance(value, bool):
        record.scores[name] = float(value)


def _read_values(record: SpanRecord, attrs: Mapping[str, Any]) -> None:
    """Use an OpenInference agent span's plain-text ``input.value``/``output.value``."""
    sides: tuple[tuple[str, Role, list[Message]], ...] = (
        ("input", "user", record.inputs),
        ("output", "assistant", record.outputs),
    )
    for key, role, target in sides:
        value = as_text(attrs.get(f"{key}.value"))
        mime = attrs.get(f"{key}.mime_type", "text/plain")
        if value is not None and mime == "text/plain":
            target.append(Message(role=role, content=value))


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
    return ToolRun(
        name=as_text(attrs.get("gen_ai.tool.name", attrs.get("tool.name"))),
        call_id=_identifier(attrs.get("gen_ai.tool.call.id", attrs.get("tool_call.id"))),
        arguments=stringify(attrs.get("gen_ai.tool.call.arguments", attrs.get("input.value"))),
        result=stringify(attrs.get("gen_ai.tool.call.result", attrs.get("output.value"))),
        error=failed,
        error_message=error_message,
    )
