"""OTLP traces and logs in, conversations out: what ``POST /v1/traces`` and ``POST /v1/logs``
(``exporter.web.traces``) take.

Spans and log records are decoded with ``opentelemetry-proto``, read by the GenAI and
OpenInference conventions (log records only when they are GenAI events), grouped by
conversation id (else by trace) in a bounded buffer, and each conversation goes to the intake
when its root span ends or it goes idle.
"""

from exporter.ingest.otlp.assemble import assemble
from exporter.ingest.otlp.buffer import Partial, PartialBuffer
from exporter.ingest.otlp.logs import event_name, extract_event
from exporter.ingest.otlp.receiver import ExportResult, OtlpReceiver
from exporter.ingest.otlp.record import SpanRecord, ToolRun, decode_record, encode_record
from exporter.ingest.otlp.spans import extract
from exporter.ingest.otlp.wire import (
    DEADLINE_EXCEEDED,
    INVALID_ARGUMENT,
    JSON,
    LOGS,
    PROTOBUF,
    RESOURCE_EXHAUSTED,
    TRACES,
    UNAVAILABLE,
    decode_logs_request,
    decode_request,
    encode_response,
    encode_status,
    media_type,
)

__all__ = [
    "DEADLINE_EXCEEDED",
    "INVALID_ARGUMENT",
    "JSON",
    "LOGS",
    "PROTOBUF",
    "RESOURCE_EXHAUSTED",
    "TRACES",
    "UNAVAILABLE",
    "ExportResult",
    "OtlpReceiver",
    "Partial",
    "PartialBuffer",
    "SpanRecord",
    "ToolRun",
    "assemble",
    "decode_logs_request",
    "decode_record",
    "decode_request",
    "encode_record",
    "encode_response",
    "encode_status",
    "event_name",
    "extract",
    "extract_event",
    "media_type",
]
