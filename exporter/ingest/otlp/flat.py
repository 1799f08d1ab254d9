"""Flattened message attributes: OpenInference's and OpenLLMetry's indexed keys.

Both record a list of messages as one attribute per leaf, ``<prefix>.<index>.<path>``
(``llm.input_messages.0.message.role``, ``gen_ai.prompt.0.content``); this module rebuilds
the lists and turns each item into the OpenAI-style dict ``_messages.from_openai`` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["openinference_messages", "openllmetry_messages", "unflatten"]

#: An index past this is not a message list anyone sends; it would only cost memory.
MAX_INDEX = 10_000


def unflatten(attributes: Mapping[str, Any], prefix: str) -> list[Any]:
    """Return the items recorded under ``prefix`` (which ends with a dot), in index order."""
    items: dict[int, dict[str, Any]] = {}
    for key in attributes:
        if not key.startswith(prefix):
            continue
        value = attributes[key]
        index, _, rest = key[len(prefix) :].partition(".")
        if not index.isdigit() or int(index) > MAX_INDEX or not rest:
            continue
        node = items.setdefault(int(index), {})
        *parents, leaf = rest.split(".")
        for segment in parents:
            child = node.get(segment)
            if not isinstance(child, dict):
                child = node[segment] = {}
            node = child
        node[leaf] = value
    return [_as_lists(items[i]) for i in sorted(items)]


def _as_lists(node: Any) -> Any:
    """Turn dicts keyed only by digits (``tool_calls.0``, ``tool_calls.1``) into lists."""
    if not isinstance(node, dict):
        return node
    if node and all(key.isdigit() for key in node):
        return [_as_lists(node[key]) for key in sorted(node, key=int)]
    return {key: _as_lists(value) for key, value in node.items()}


def _get(node: Any, *path: str) -> Any:
    for segment in path:
        if not isinstance(node, dict):
            return None
        node = node.get(segment)
    return node


def openinference_messages(attributes: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Return ``llm.input_messages``/``llm.output_messages`` as OpenAI-style dicts."""
    messages = []
    for item in unflatten(attributes, prefix):
        message = _get(item, "message")
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        contents = message.get("contents")
        if content is None and isinstance(contents, list):
            content = [
                {"text": _get(part, "message_content", "text")}
                for part in contents
                if _get(part, "message_content", "type") in (None, "text")
            ]
        calls = [
            {
                "id": _get(call, "tool_call", "id"),
                "function": {
                    "name": _get(call, "tool_call", "function", "name"),
                    "arguments": _get(call, "tool_call", "function", "arguments"),
                },
            }
            for call in message.get("tool_calls") or ()
        ]
        messages.append(
            {
                "role": message.get("role"),
                "content": content,
                "tool_calls": calls,
                "tool_call_id": message.get("tool_call_id"),
                "name": message.get("name"),
            }
        )
    return messages


def openllmetry_messages(attributes: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """Return ``gen_ai.prompt.N.*``/``gen_ai.completion.N.*`` as OpenAI-style dicts."""
    return [item for item in unflatten(attributes, prefix) if isinstance(item, dict)]
