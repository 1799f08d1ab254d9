"""Message content, wherever instrumentation puts it: attributes, span events, log records.

The same conventions reach the daemon three ways. Attributes (``gen_ai.input.messages`` and
friends, OpenInference's ``llm.input_messages.N.*``, OpenLLMetry's ``gen_ai.prompt.N.*``) sit
on spans, and on the ``gen_ai.client.inference.operation.details`` event that util-genai sends
as a log record instead. The older per-message events (``gen_ai.user.message``,
``gen_ai.choice``, ...) come as span events or as log records with the fields in the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.ingest.otlp.flat import openinference_messages, openllmetry_messages
from exporter.ingest.otlp.messages import REDACTED, from_any, from_openai, system
from exporter.ingest.otlp.record import SpanRecord
from exporter.ingest.otlp.values import as_text, from_json
from exporter.model import Message, Role

__all__ = [
    "EVALUATION",
    "EVENT_NAMES",
    "OPERATION_DETAILS",
    "read_attributes",
    "read_event",
    "read_values",
]

#: Older GenAI events (semantic conventions up to 1.36) and the role each one carries.
_INPUT_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_CHOICE = "gen_ai.choice"
#: The current event with a whole inference call's messages, as attributes.
OPERATION_DETAILS = "gen_ai.client.inference.operation.details"
#: An evaluation of the conversation made upstream: a score.
EVALUATION = "gen_ai.evaluation.result"
_PROMPT, _COMPLETION = "gen_ai.content.prompt", "gen_ai.content.completion"
#: The GenAI events a conversation is made of; other events are not read.
EVENT_NAMES = frozenset(
    {*_INPUT_EVENTS, _CHOICE, OPERATION_DETAILS, EVALUATION, _PROMPT, _COMPLETION}
)


def read_attributes(record: SpanRecord, attrs: Mapping[str, Any]) -> None:
    """Add the messages recorded in ``attrs`` to ``record``'s inputs and outputs."""
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


def read_event(record: SpanRecord, name: str, body: dict[str, Any]) -> None:
    """Add what GenAI event ``name``, with its fields in ``body``, says to ``record``.

    ``body`` holds the event's attributes and, for log records, the fields of its body.
    """
    # Some SDKs put the event body in one JSON attribute, others one attribute per field.
    content = from_json(body.get("gen_ai.event.content"))
    if isinstance(content, dict):
        body = {**body, **content}
    elif "tool_calls" in body:  # structured fields as JSON strings, where SDKs lack maps
        body["tool_calls"] = from_json(body["tool_calls"])
    if name in _INPUT_EVENTS:
        record.inputs += from_openai(body, default_role=_INPUT_EVENTS[name])
    elif name == _CHOICE:
        if body.get("index", 0) not in (0, "0", None):
            return  # one choice per event: the conversation went on with the first
        message = from_json(body.get("message"))
        record.outputs += from_openai(
            message if isinstance(message, dict) else body, default_role="assistant"
        )
    elif name == OPERATION_DETAILS:
        read_attributes(record, body)
    elif name == _PROMPT and not record.inputs:
        record.inputs += from_any(from_json(body.get("gen_ai.prompt")), default_role="user")
    elif name == _COMPLETION and not record.outputs:
        completion = from_json(body.get("gen_ai.completion"))
        record.outputs += from_any(completion, default_role="assistant")
    elif name == EVALUATION:
        _read_score(record, body)


def _read_score(record: SpanRecord, body: dict[str, Any]) -> None:
    name, value = body.get("gen_ai.evaluation.name"), body.get("gen_ai.evaluation.score.value")
    if isinstance(name, str) and isinstance(value, int | float) and not isinstance(value, bool):
        record.scores[name] = float(value)


def read_values(record: SpanRecord, attrs: Mapping[str, Any]) -> None:
    """Use an OpenInference agent span's plain-text ``input.value``/``output.value``."""
    sides: tuple[tuple[str, Role, list[Message]], ...] = (
        ("input", "user", record.inputs),
        ("output", "assistant", record.outputs),
    )
    for key, role, target in sides:
        value = as_text(attrs.get(f"{key}.value"))
        mime = attrs.get(f"{key}.mime_type", "text/plain")
        if value is not None and value != REDACTED and mime == "text/plain":
            target.append(Message(role=role, content=value))
