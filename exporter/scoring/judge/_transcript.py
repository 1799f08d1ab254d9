"""Turn a conversation into the plain-text transcript a judge reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from exporter.model import Conversation, Message, ToolCall

__all__ = ["render_transcript"]


def render_transcript(
    conversation: Conversation,
    *,
    max_chars: int,
    redact: Callable[[str], str] | None = None,
) -> str:
    """Return one line block per message, redacted, cut in the middle beyond ``max_chars``.

    The middle goes first because the request sits at the start and the outcome at the end.
    """
    text = "\n".join(_lines(conversation))
    if redact is not None:
        text = redact(text)
    if len(text) <= max_chars:
        return text
    head = max_chars // 3
    tail = max_chars - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[-tail:]}"


def _lines(conversation: Conversation) -> list[str]:
    lines = []
    for message in conversation.messages:
        if message.role == "tool":
            marker = "tool error" if _is_error(message) else "tool result"
            name = f" {message.name}" if message.name else ""
            detail = message.error if isinstance(message.error, str) else ""
            lines.append(f"[{marker}{name}] {message.text() or detail}")
            continue
        if message.text():
            lines.append(f"[{message.role}] {message.text()}")
        for call in message.tool_calls or ():
            name, arguments = _call(call)
            lines.append(f"[{message.role} calls tool {name}] {arguments}")
    return lines


def _is_error(message: Message) -> bool:
    return message.error is not None and message.error is not False and message.error != ""


def _call(call: ToolCall) -> tuple[str, str]:
    function = call.function or {}
    name = call.name or str(function.get("name") or "?")
    arguments: Any = call.arguments if call.arguments is not None else function.get("arguments")
    if arguments is None:
        return name, ""
    if isinstance(arguments, str):
        return name, arguments
    return name, json.dumps(arguments, ensure_ascii=False, sort_keys=True)
