"""Split a request body into conversations, keeping the good items of a partly bad batch.

Each item is decoded and validated on its own (msgspec, one pass), so one bad conversation in
a batch of thousands costs only itself. Errors say where: ``$[3].messages[0].role`` for a JSON
array, ``line 7: $.id`` for NDJSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from exporter.exceptions import InvalidPayload, PayloadTooLarge
from exporter.model import Conversation, decode_conversation

__all__ = ["Batch", "Rejection", "invalid_utf8", "shorten", "split_json", "split_ndjson"]

_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
# msgspec recurses per nesting level; a hostile body can exhaust the interpreter's stack.
_TOO_DEEP = "JSON nested too deeply"
#: Characters of an error message sent back: msgspec quotes the offending value, which can be
#: a string as long as the body.
MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class Rejection:
    """One item that was not accepted, and why."""

    index: int
    where: str
    error: str

    def as_dict(self) -> dict[str, object]:
        """Return the JSON shape sent back to the client."""
        return {"index": self.index, "where": self.where, "error": self.error}


@dataclass(slots=True)
class Batch:
    """The decoded conversations of one body (with their raw JSON) and the rejected items."""

    items: list[tuple[Conversation, bytes]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items) + len(self.rejected)


def split_json(body: bytes, *, max_items: int) -> Batch:
    """Decode a JSON object or array of objects; raise ``InvalidPayload`` if it is neither."""
    head = body.lstrip()[:1]
    if head == b"{":
        batch = Batch()
        try:
            batch.items.append((decode_conversation(body), body))
        except _ITEM_ERRORS as error:
            batch.rejected.append(_rejection(0, "$", error))
        return batch
    if head != b"[":
        raise InvalidPayload("expected a JSON object or an array of objects", where="$")
    try:
        raws = _raw_list.decode(body)
    except msgspec.DecodeError as error:
        raise InvalidPayload(f"malformed JSON: {error}", where="$") from error
    except UnicodeDecodeError as error:
        raise InvalidPayload(invalid_utf8(error), where="$") from error
    except RecursionError as error:
        raise InvalidPayload(_TOO_DEEP, where="$") from error
    except msgspec.ValidationError as error:
        raise InvalidPayload(shorten(str(error)), where="$") from error
    _check_size(len(raws), max_items)
    batch = Batch()
    append = batch.items.append
    for index, raw in enumerate(raws):
        item = bytes(raw)  # a Raw would keep the whole body alive in the late-signal buffer
        try:
            append((decode_conversation(item), item))
        except _ITEM_ERRORS as error:
            batch.rejected.append(_rejection(index, f"$[{index}]", error))
    return batch


def split_ndjson(body: bytes, *, max_items: int) -> Batch:
    """Decode newline-delimited JSON, one conversation per non-blank line."""
    lines = [
        (number, line)
        for number, line in enumerate(body.split(b"\n"), start=1)
        if line and not line.isspace()  # no copy per line
    ]
    _check_size(len(lines), max_items)
    batch = Batch()
    append = batch.items.append
    for index, (number, line) in enumerate(lines):
        try:
            append((decode_conversation(line), line))
        except _ITEM_ERRORS as error:
            batch.rejected.append(_rejection(index, f"line {number}: $", error))
    return batch


def _check_size(count: int, max_items: int) -> None:
    if count > max_items:
        raise PayloadTooLarge(f"batch of {count} items exceeds the limit of {max_items}")


# What one item can fail with. The location string is only built for these: formatting it for
# every item that decodes fine cost more than a tenth of the per-item budget.
_ITEM_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _rejection(index: int, prefix: str, error: Exception) -> Rejection:
    if isinstance(error, msgspec.ValidationError):
        message, where = _locate(str(error), prefix)
        return Rejection(index, where, shorten(message))
    if isinstance(error, msgspec.DecodeError):
        return Rejection(index, prefix, shorten(f"malformed JSON: {error}"))
    # msgspec checks UTF-8 only when it decodes a string, and raises the builtin error then.
    if isinstance(error, UnicodeDecodeError):
        return Rejection(index, prefix, invalid_utf8(error))
    return Rejection(index, prefix, _TOO_DEEP)


def shorten(message: str) -> str:
    """Cut an error message to ``MAX_ERROR_CHARS``."""
    if len(message) <= MAX_ERROR_CHARS:
        return message
    return message[: MAX_ERROR_CHARS - 3] + "..."


def invalid_utf8(error: UnicodeDecodeError) -> str:
    """Describe a string that is not UTF-8 (msgspec's error has no JSON path to offer)."""
    bad = bytes(error.object[error.start : error.end]).hex(" ")
    return f"a string is not valid UTF-8 (bytes {bad}): JSON text must be UTF-8"


def _locate(message: str, prefix: str) -> tuple[str, str]:
    """Split msgspec's "... - at `$.a.b`" into the message and a path under ``prefix``."""
    text, marker, path = message.rpartition(" - at `")
    if not marker:
        return message, prefix
    return text, prefix + path.rstrip("`").removeprefix("$")
