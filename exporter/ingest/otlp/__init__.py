"""OTLP/HTTP traces in, conversations out: ``POST /v1/traces``.

Spans are decoded with ``opentelemetry-proto``, read by the GenAI and OpenInference
conventions, grouped by conversation id (else by trace) in a bounded buffer, and each
conversation goes to the intake when its root span ends or it goes idle.
"""

from exporter.ingest.otlp._assemble import assemble
from exporter.ingest.otlp._buffer import Partial, PartialBuffer
from exporter.ingest.otlp._http import RECEIVER, setup
from exporter.ingest.otlp._receiver import ExportResult, TraceReceiver
from exporter.ingest.otlp._spans import SpanRecord, ToolRun, extract
from exporter.ingest.otlp._wire import JSON, PROTOBUF, decode_request, media_type

__all__ = [
    "JSON",
    "PROTOBUF",
    "RECEIVER",
    "ExportResult",
    "Partial",
    "PartialBuffer",
    "SpanRecord",
    "ToolRun",
    "TraceReceiver",
    "assemble",
    "decode_request",
    "extract",
    "media_type",
    "setup",
]
