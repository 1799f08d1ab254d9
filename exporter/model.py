"""The conversation document: typed structs that decode and validate JSON in one pass.

The structs are the single source of truth for the wire format; the JSON Schema shipped in
``exporter/schemas/conversation.schema.json`` and served in the OpenAPI document is generated
from them (``python -m exporter.model``), and a test keeps the two in step.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "Conversation",
    "Feedback",
    "Message",
    "Role",
    "ToolCall",
    "Usage",
    "conversation_json_schema",
    "decode_conversation",
    "decode_feedback",
]

#: A message's role, as OpenAI names them.
Role = Literal["system", "developer", "user", "assistant", "tool"]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=512, description="Stable id.")]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0)]
# JSON has one number type: 850.0 is a count as much as 850 is (Python's json.dumps writes a
# float that way), and JSON Schema's "integer" accepts it too.
_Count = Annotated[int, msgspec.Meta(ge=0)] | Annotated[float, msgspec.Meta(ge=0, multiple_of=1)]
# msgspec documents `format: date-time` only for tz-aware datetimes, and naive ones stay accepted
# here; without the format the schema (and the OpenAPI document) would allow any string.
_Timestamp = Annotated[dt.datetime, msgspec.Meta(extra_json_schema={"format": "date-time"})]
# Signal and score values are scalars; nested structures there are almost always a bug upstream.
_Scalar = bool | int | float | str | None
#: The roles whose text is the conversation itself (system prompts and tool output frame it).
_SPEAKERS = frozenset({"user", "assistant"})


class ToolCall(msgspec.Struct, gc=False):
    """A tool call made by the assistant (flat, or OpenAI's nested ``function`` form)."""

    id: str | None = None
    name: str | None = None
    arguments: str | dict[str, Any] | None = None
    type: str | None = None
    function: dict[str, Any] | None = None


class Message(msgspec.Struct, gc=False):
    """One chat message with an OpenAI-style role."""

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    error: bool | str | None = None

    def text(self) -> str:
        """Return the message's text, joining the text parts of multi-part content."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part.get("text", "")) for part in self.content if isinstance(part, dict))


class Usage(msgspec.Struct, gc=False):
    """What the observed agent spent on this conversation."""

    input_tokens: _Count | None = None
    output_tokens: _Count | None = None
    cost_usd: _NonNegative | None = None

    @property
    def total_tokens(self) -> int:
        """Return input plus output tokens, counting missing ones as zero."""
        return int((self.input_tokens or 0) + (self.output_tokens or 0))


class Conversation(msgspec.Struct, gc=False):
    """A finished conversation as sent by an agent or assembled from OTLP spans."""

    id: _Id
    agent: _Name
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    model: str | None = None
    signals: dict[str, _Scalar] = {}
    scores: dict[str, float] = {}
    usage: Usage | None = None
    started_at: _Timestamp | None = None
    ended_at: _Timestamp | None = None
    metadata: dict[str, Any] = {}

    def final_answer(self) -> str:
        """Return the text of the last assistant message that has text, or ``""``."""
        for message in reversed(self.messages):
            if message.role == "assistant" and message.content:
                return message.text()
        return ""

    def has_text(self) -> bool:
        """Say whether any user or assistant message has text (not only tool calls, results).

        Without it the content was not sent (instrumentation that records no message content,
        docs/otlp.md): only scorers that need no text can say anything about the conversation.
        """
        for message in self.messages:
            if message.role in _SPEAKERS and message.content and message.text().strip():
                return True
        return False


class Feedback(msgspec.Struct, gc=False):
    """A late signal for a conversation already sent."""

    id: _Id
    signals: dict[str, _Scalar]


_conversation_decoder = msgspec.json.Decoder(Conversation)
_feedback_decoder = msgspec.json.Decoder(Feedback)


def decode_conversation(data: bytes | memoryview) -> Conversation:
    """Decode and validate one conversation; raise msgspec ``ValidationError``/``DecodeError``."""
    return _conversation_decoder.decode(data)


def decode_feedback(data: bytes) -> Feedback:
    """Decode and validate one feedback document."""
    return _feedback_decoder.decode(data)


def conversation_json_schema() -> dict[str, Any]:
    """Return the JSON Schema (2020-12) of a conversation, generated from the structs."""
    schema: dict[str, Any] = msgspec.json.schema(Conversation)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://agent-quality-exporter.dev/schemas/conversation.schema.json"
    return schema


if __name__ == "__main__":  # pragma: no cover - regenerates the shipped schema file
    target = pathlib.Path(__file__).parent / "schemas" / "conversation.schema.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(conversation_json_schema(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {target}")
