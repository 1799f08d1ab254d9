"""The OTLP/HTTP wire format: requests and responses in binary protobuf or JSON.

OTLP/JSON is the protobuf JSON mapping with two exceptions handled here: trace and span ids are
hex, not base64, and receivers must ignore unknown fields. Responses use the request's encoding.
Traces (``/v1/traces``) and logs (``/v1/logs``) differ only in their messages.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from exporter.exceptions import InvalidPayload

__all__ = [
    "DEADLINE_EXCEEDED",
    "INVALID_ARGUMENT",
    "JSON",
    "LOGS",
    "PROTOBUF",
    "RESOURCE_EXHAUSTED",
    "TRACES",
    "UNAVAILABLE",
    "decode_logs_request",
    "decode_request",
    "encode_response",
    "encode_status",
    "media_type",
]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
#: The two signals taken, as named in their paths (``/v1/traces``, ``/v1/logs``).
TRACES, LOGS = "traces", "logs"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
#: Characters of a decoder's error message passed on to the client.
MAX_MESSAGE = 300
# google.rpc.Code values used in error bodies.
INVALID_ARGUMENT, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE = 3, 4, 8, 14


def media_type(content_type: str) -> str | None:
    """Return ``PROTOBUF`` or ``JSON`` for a Content-Type header, or None if unsupported."""
    kind = content_type.partition(";")[0].strip().lower()
    if kind in (PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if kind == JSON:
        return JSON
    return None


def decode_request(body: bytes, *, encoding: str) -> ExportTraceServiceRequest:
    """Return the traces request in ``body``; raise ``InvalidPayload`` saying where it is broken."""
    request = ExportTraceServiceRequest()
    _decode(body, request, encoding=encoding, ids=_trace_ids_to_base64)
    return request


def decode_logs_request(body: bytes, *, encoding: str) -> ExportLogsServiceRequest:
    """Return the logs request in ``body``; raise ``InvalidPayload`` saying where it is broken."""
    request = ExportLogsServiceRequest()
    _decode(body, request, encoding=encoding, ids=_log_ids_to_base64)
    return request


def _decode(
    body: bytes, request: Message, *, encoding: str, ids: Callable[[dict[str, Any]], None]
) -> None:
    kind = type(request).__name__
    if encoding == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as error:
            raise InvalidPayload(f"not an {kind} in protobuf: {_short(error)}") from error
        return
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        raise InvalidPayload(f"not JSON: {error}") from error
    except UnicodeDecodeError as error:  # msgspec's own error for a string that is not UTF-8
        raise InvalidPayload(f"not JSON: a string is not valid UTF-8 ({error.reason})") from None
    except RecursionError:
        raise InvalidPayload("JSON nested too deeply") from None
    if not isinstance(document, dict):
        raise InvalidPayload(f"expected a JSON object, got {type(document).__name__}")
    ids(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise InvalidPayload(f"not an {kind} in OTLP/JSON: {_short(error)}") from error
    except RecursionError:  # json_format recurses per nested AnyValue
        raise InvalidPayload("attribute values nested too deeply") from None


def _short(error: Exception) -> str:
    """Return an error's text, cut: json_format repeats a line per level of a deep value."""
    text = str(error)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _trace_ids_to_base64(document: dict[str, Any]) -> None:
    """Rewrite OTLP/JSON's hex ids in place as the base64 that ``json_format`` expects."""
    for i, resource in enumerate(_items(document, "resourceSpans", "resource_spans")):
        for j, scope in enumerate(_items(resource, "scopeSpans", "scope_spans")):
            for k, span in enumerate(_items(scope, "spans")):
                where = f"$.resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                _convert(span, where)
                for n, link in enumerate(_items(span, "links")):
                    _convert(link, f"{where}.links[{n}]")


def _log_ids_to_base64(document: dict[str, Any]) -> None:
    """Rewrite a logs request's hex ids in place, as ``_trace_ids_to_base64`` does."""
    for i, resource in enumerate(_items(document, "resourceLogs", "resource_logs")):
        for j, scope in enumerate(_items(resource, "scopeLogs", "scope_logs")):
            for k, record in enumerate(_items(scope, "logRecords", "log_records")):
                _convert(record, f"$.resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]")


def _items(node: Any, *names: str) -> list[Any]:
    if not isinstance(node, dict):
        return []
    for name in names:
        value = node.get(name)
        if isinstance(value, list):
            return value
    return []


def _convert(node: Any, where: str) -> None:
    if not isinstance(node, dict):
        return
    for name in _ID_FIELDS:
        value = node.get(name)
        if isinstance(value, str) and value:
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise InvalidPayload(
                    f"{value!r} is not a hex id", where=f"{where}.{name}"
                ) from None
            node[name] = base64.b64encode(raw).decode("ascii")


def _encode(message: Message, encoding: str) -> bytes:
    if encoding == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def encode_response(
    *, rejected: int, error_message: str, encoding: str, signal: str = TRACES
) -> bytes:
    """Return the signal's export response, with partial success when items were rejected."""
    if signal == LOGS:
        logs = ExportLogsServiceResponse()
        if rejected or error_message:
            logs.partial_success.rejected_log_records = rejected
            logs.partial_success.error_message = error_message
        return _encode(logs, encoding)
    traces = ExportTraceServiceResponse()
    if rejected or error_message:
        traces.partial_success.rejected_spans = rejected
        traces.partial_success.error_message = error_message
    return _encode(traces, encoding)


def encode_status(*, code: int, message: str, encoding: str) -> bytes:
    """Return a google.rpc.Status, the body of OTLP/HTTP error responses."""
    return _encode(Status(code=code, message=message), encoding)
