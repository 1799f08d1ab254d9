"""What one span or GenAI event contributes to its conversation, and its compact encoding.

Partial conversations keep their records encoded (msgpack, a few hundred bytes for a tool span)
rather than as Python objects: a record as objects costs three to four times its encoded size
in the process (object headers, lists, dict entries), and the buffer's byte bound has to be
about what the process holds (docs/otlp.md).
"""

from __future__ import annotations

import msgspec

from exporter.model import Message

__all__ = ["EVENT", "SpanRecord", "ToolRun", "decode_record", "encode_record"]

#: The kind of a record read from a log record (a GenAI event) rather than a span.
EVENT = "event"


class ToolRun(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    """One ``execute_tool`` (or OpenInference TOOL) span."""

    name: str | None = None
    call_id: str | None = None
    arguments: str | None = None
    result: str | None = None
    error: bool = False
    error_message: str | None = None


class SpanRecord(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    """What one GenAI span, or one GenAI event about a span, contributes to its conversation.

    ``kind`` is agent, llm, tool or other for spans, ``EVENT`` for log records; an event's
    ``span_id`` names the span it is about, and ``start``/``end`` are its own timestamp.
    """

    trace_id: bytes
    span_id: bytes
    start: int  # Unix nanoseconds, as in OTLP
    end: int
    kind: str
    ends_conversation: bool = False
    conversation_id: str | None = None
    agent: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    inputs: list[Message] = msgspec.field(default_factory=list)
    outputs: list[Message] = msgspec.field(default_factory=list)
    tool: ToolRun | None = None
    scores: dict[str, float] = msgspec.field(default_factory=dict)

    @property
    def has_messages(self) -> bool:
        """Say whether the record carries any message (content, or tool calls and results)."""
        return bool(self.inputs or self.outputs)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SpanRecord)
# Encoded into one reused buffer, then copied out at its exact size: ``Encoder.encode``
# returns bytes with the encoder's spare capacity still allocated (about half again as much),
# which the buffer would hold for as long as the record waits.
_buffer = bytearray()


def encode_record(record: SpanRecord) -> bytes:
    """Return ``record`` as compact msgpack, in a bytes object of exactly its size."""
    _encoder.encode_into(record, _buffer)
    return bytes(_buffer)


def decode_record(blob: bytes) -> SpanRecord:
    """Return the record ``encode_record`` made ``blob`` of."""
    return _decoder.decode(blob)
