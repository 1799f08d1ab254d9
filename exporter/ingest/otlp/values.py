"""OTLP ``AnyValue``s and attribute lists as plain Python values."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import msgspec
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["as_int", "as_text", "attributes", "from_json", "to_python"]

#: Nesting beyond this is almost certainly hostile; OTLP itself sets no limit.
MAX_DEPTH = 32


def to_python(value: AnyValue, depth: int = 0) -> Any:
    """Return ``value`` as str, bool, int, float, bytes-as-base64, list, dict or None."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if depth >= MAX_DEPTH:
        return None
    if kind == "array_value":
        return [to_python(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: to_python(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def attributes(items: Iterable[KeyValue]) -> dict[str, Any]:
    """Return an attribute list as a dict (the last of repeated keys wins, as in the SDKs)."""
    # Strings inline: most attributes are strings and this runs for every attribute of a span.
    return {
        kv.key: (v.string_value if v.WhichOneof("value") == "string_value" else to_python(v))
        for kv in items
        for v in (kv.value,)  # bound once: each access builds a new wrapper object
    }


def from_json(value: Any) -> Any:
    """Return a structured attribute as is, or parse one recorded as a JSON string.

    GenAI conventions allow both: structured where the SDK supports it, else a JSON string.
    A string that is not JSON is returned unchanged.
    """
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return msgspec.json.decode(value)
        # Too deep to decode is as unreadable as not JSON: a 500 would make the Collector retry.
        except (msgspec.DecodeError, RecursionError):
            return value
    return value


def as_text(value: Any) -> str | None:
    """Return a non-empty string value, or None."""
    if isinstance(value, str) and value:
        return value
    return None


def as_int(value: Any) -> int | None:
    """Return a non-negative integer count (ints, or numbers sent as strings/doubles), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
