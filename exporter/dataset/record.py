"""One feedback-dataset record: a line of JSON, versioned by its ``format`` field.

```json
{"format": "agent-quality-exporter/feedback/v1", "id": "c-7f3a", "agent": "support-bot",
 "time": "2026-11-26T10:00:12.5Z", "selected_because": ["bad_score:task_completion"],
 "sampling_reason": "base", "scores": {"task_completion": 0.2}, "bad_dimensions":
 ["task_completion"], "flags": ["refusal"], "explanations": {"task_completion": "..."},
 "errors": {}, "conversation": {...the conversation, redacted...},
 "provenance": {"exporter_version": "0.1.0", "config_digest": "9f2c...", "redacted": ["email"]}}
```

``time`` is when the conversation was selected (UTC); ``agent`` is the label it was counted
under (``other`` for unlisted agents), while ``conversation.agent`` keeps the name it was sent
with; ``provenance.redacted`` lists the kinds replaced by placeholders (empty: not redacted).
"""

from __future__ import annotations

import datetime as dt

import msgspec

from exporter.model import Conversation

__all__ = ["FORMAT", "Provenance", "Record", "decode_record", "encode_record"]

FORMAT = "agent-quality-exporter/feedback/v1"


class Provenance(msgspec.Struct, frozen=True, kw_only=True):
    """What wrote a record: the exporter's version, the config's digest, redacted kinds."""

    exporter_version: str
    config_digest: str
    redacted: tuple[str, ...] = ()


class Record(msgspec.Struct, kw_only=True):
    """A scored conversation selected for the dataset, and why."""

    format: str = FORMAT
    id: str
    agent: str
    time: dt.datetime
    selected_because: list[str]
    sampling_reason: str
    scores: dict[str, float]
    bad_dimensions: list[str]
    flags: list[str]
    explanations: dict[str, str]
    errors: dict[str, str]
    conversation: Conversation
    provenance: Provenance


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Record)


def encode_record(record: Record) -> bytes:
    """Return ``record`` as one JSON line, newline included."""
    return _encoder.encode(record) + b"\n"


def decode_record(line: bytes) -> Record:
    """Decode one line; raise ``msgspec.DecodeError`` (or ``ValidationError``) if it is not one."""
    return _decoder.decode(line)
