"""One OTLP log record as what its conversation needs from it, when it is a GenAI event.

OpenTelemetry has deprecated span events for log-based events, and GenAI instrumentations send
message content that way: util-genai's ``gen_ai.client.inference.operation.details`` (the
messages as attributes, with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=event_only``)
and the older per-message ``gen_ai.user.message``, ``gen_ai.choice``... (the fields in the
body). The event's name is the record's ``event_name`` (or, from older SDKs, its
``event.name`` attribute); its trace and span ids say which span, and so which conversation,
it belongs to.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from exporter.ingest.otlp.content import EVENT_NAMES, read_event
from exporter.ingest.otlp.record import EVENT, SpanRecord
from exporter.ingest.otlp.spans import identifier
from exporter.ingest.otlp.values import as_text, attributes, to_python

__all__ = ["event_name", "extract_event"]


def event_name(record: LogRecord) -> str:
    """Return the record's event name, or ``""`` for a plain log line."""
    if record.event_name:
        return record.event_name
    for kv in record.attributes:
        if kv.key == "event.name":
            return kv.value.string_value
    return ""


def extract_event(record: LogRecord, name: str) -> SpanRecord | None:
    """Return what GenAI event ``name`` in ``record`` contributes, or None for other events.

    The caller checks the trace and span ids first.
    """
    if name not in EVENT_NAMES:
        return None
    fields = attributes(record.attributes)
    if record.HasField("body"):
        body: Any = to_python(record.body)
        if isinstance(body, dict):
            fields.update(body)
    time = record.time_unix_nano or record.observed_time_unix_nano
    event = SpanRecord(
        trace_id=record.trace_id,
        span_id=record.span_id,
        start=time,
        end=time,
        kind=EVENT,
        conversation_id=identifier(fields.get("gen_ai.conversation.id")),
        agent=as_text(fields.get("gen_ai.agent.name")),
        model=as_text(fields.get("gen_ai.response.model") or fields.get("gen_ai.request.model")),
    )
    read_event(event, name, fields)
    del event.outputs[1:]  # each output message is one choice: the first is the one kept
    return event
