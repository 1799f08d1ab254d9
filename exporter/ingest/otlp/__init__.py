"""OTLP traces in, conversations out: what ``POST /v1/traces`` (``exporter.web.traces``) takes.

Spans are decoded with ``opentelemetry-proto``, read by the GenAI and OpenInference
conventions, grouped by conversation id (else by trace) in a bounded buffer, and each
conversation goes to the intake when its root span ends or it goes idle.
"""

from exporter.ingest.otlp.assemble import assemble
from exporter.ingest.otlp.buffer import Partial, PartialBuffer
from exporter.ingest.otlp.receiver import ExportResult, TraceReceiver
from exporter.ingest.otlp.spans import SpanRecord, ToolRun, extract
from exporter.ingest.otlp.wire import (
    DEADLINE_EXCEEDED,
    INVALID_ARGUMENT,
    JSON,
    PROTOBUF,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    decode_request,
    encode_response,
    encode_status,
    media_type,
)

__all__ = [
    "DEADLINE_EXCEEDED",
    "INVALID_ARGUMENT",
    "JSON",
    "PROTOBUF",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "ExportResult",
    "Partial",
    "PartialBuffer",
    "SpanRecord",
    "ToolRun",
    "TraceReceiver",
    "assemble",
    "decode_request",
    "encode_response",
    "encode_status",
    "extract",
    "media_type",
]
