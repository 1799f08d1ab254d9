"""Chat messages in the shapes instrumentations record them, as the exporter's ``Message``.

Two shapes cover the conventions: GenAI's current ``{"role", "parts": [...]}`` (used by
``gen_ai.input.messages``/``gen_ai.output.messages``) and the OpenAI-style
``{"role", "content", "tool_calls"}`` of the older ``gen_ai.*.message`` events, of
``gen_ai.prompt`` and, after unflattening, of OpenInference and OpenLLMetry attributes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from exporter.model import Message, Role, ToolCall

__all__ = [
    "REDACTED",
    "from_any",
    "from_genai",
    "from_openai",
    "normalise_role",
    "stringify",
    "system",
]

#: What OpenInference records instead of content it was told to hide: no content at all.
REDACTED = "__REDACTED__"

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "developer",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",  # Gemini
    "bot": "assistant",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",  # Llama
}


#: Parts whose `content` is not conversation text (base64 data, hidden reasoning).
_NOT_TEXT = frozenset(
    {
        "reasoning",
        "blob",
        "file",
        "file_data",
        "uri",
        "server_tool_call",
        "server_tool_call_response",
    }
)


def normalise_role(role: Any) -> Role | None:
    """Return the OpenAI-style role for ``role``, or None for one we cannot place."""
    if not isinstance(role, str):
        return None
    return _ROLES.get(role.strip().lower())


def stringify(value: Any) -> str | None:
    """Return text as is and anything structured as compact JSON; None stays None."""
    if value is None or isinstance(value, str):
        return value
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)


def _arguments(value: Any) -> str | dict[str, Any] | None:
    if value is None or isinstance(value, str | dict):
        return value
    return stringify(value)


def _message(
    role: Role,
    text: list[str],
    tool_calls: list[ToolCall],
    *,
    name: Any = None,
) -> Message | None:
    text = [part for part in text if part != REDACTED]
    content = "\n".join(text) if text else None
    if content is None and not tool_calls:
        return None  # an image-only or empty message says nothing a scorer can read
    return Message(
        role=role,
        content=content,
        tool_calls=tool_calls or None,
        name=name if isinstance(name, str) and name else None,
    )


def _tool_result(call_id: Any, response: Any, *, error: Any = None) -> Message:
    return Message(
        role="tool",
        tool_call_id=call_id if isinstance(call_id, str) and call_id else None,
        content=stringify(None if response == REDACTED else response),
        error=bool(error) or None,
    )


def from_genai(message: dict[str, Any]) -> list[Message]:
    """Return the messages in one GenAI ``{"role", "parts"}`` message.

    Tool results become ``tool`` messages of their own, whatever role carried them (Anthropic
    sends them in ``user`` messages).
    """
    role = normalise_role(message.get("role"))
    parts = message.get("parts")
    if role is None or not isinstance(parts, list):
        return []
    text: list[str] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "tool_call":
            calls.append(_call(part.get("id"), part.get("name"), part.get("arguments")))
        elif kind == "tool_call_response":
            # The schema names the field `response`; some emitters write `result`.
            response = part["response"] if "response" in part else part.get("result")
            results.append(_tool_result(part.get("id"), response))
        elif kind not in _NOT_TEXT and isinstance(part.get("content"), str):
            text.append(part["content"])  # `text`, and custom parts that carry text
    if role == "tool" and text and not results:
        results.append(_tool_result(None, "\n".join(text)))
        text = []
    own = _message(role, text, calls, name=message.get("name")) if role != "tool" else None
    return ([own] if own is not None else []) + results


def _call(call_id: Any, name: Any, arguments: Any) -> ToolCall:
    return ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else None,
        name=name if isinstance(name, str) and name else None,
        arguments=_arguments(arguments),
    )


def from_openai(message: dict[str, Any], *, default_role: str | None = None) -> list[Message]:
    """Return the message in one OpenAI-style ``{"role", "content", "tool_calls"}`` dict."""
    role = normalise_role(message.get("role", default_role))
    if role is None:
        return []
    content = message.get("content")
    text: list[str] = []
    if isinstance(content, str):
        text.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                text.append(part["text"])
            elif isinstance(part, str):
                text.append(part)
    elif content is not None:
        text.append(stringify(content) or "")
    if role == "tool":
        call_id = message.get("tool_call_id", message.get("id"))
        return [_tool_result(call_id, "\n".join(text) if text else None)]
    calls = []
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            function = call.get("function")
            fields = function if isinstance(function, dict) else call
            calls.append(_call(call.get("id"), fields.get("name"), fields.get("arguments")))
    own = _message(role, text, calls, name=message.get("name"))
    return [own] if own is not None else []


def from_any(value: Any, *, default_role: str | None = None) -> list[Message]:
    """Return the messages of a list (or one) of messages in either shape."""
    items = value if isinstance(value, list) else [value]
    messages: list[Message] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "parts" in item:
            messages += from_genai(item)
        else:
            messages += from_openai(item, default_role=default_role)
    return messages


def system(instructions: Any) -> Message | None:
    """Return ``gen_ai.system_instructions`` (a list of parts, or text) as one system message."""
    if isinstance(instructions, str):
        return Message(role="system", content=instructions) if instructions else None
    if not isinstance(instructions, list):
        return None
    text = [
        part["content"]
        for part in instructions
        if isinstance(part, dict) and isinstance(part.get("content"), str)
    ]
    return Message(role="system", content="\n".join(text)) if text else None
