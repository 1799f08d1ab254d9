"""Turn dataset records into eval cases: a plain JSONL format and Inspect's dataset format.

Each case splits the conversation at its last user message: what came before (that message
included) is the **input** to replay against a new agent version; what the agent did after it
(tool calls, tool results, its answer) is the **observed** bad behaviour, kept with the scores.

``jsonl`` (documented here and in docs/dataset.md), one object per line::

    {"id", "agent", "time", "input": [messages], "observed_output": "final answer text",
     "observed_messages": [messages], "scores", "bad_dimensions", "flags", "explanations",
     "selected_because", "provenance"}

``inspect``: one `Inspect <https://inspect.aisi.org.uk>`_ sample per line, loadable as is with
``json_dataset("cases.jsonl")``: ``{"id", "input": [chat messages], "target": "", "metadata":
{...everything else above...}}``. Inspect because its samples take a chat-message list with
tool calls and tool results as input (agent transcripts, not single prompts), it runs against
any provider from the command line, and it reads JSONL without a conversion script. ``target``
is empty: production never tells us the ideal answer; grade with a model-graded scorer against
the observed failure, or fill targets in while curating.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from exporter.dataset.record import Record
from exporter.model import Message

__all__ = [
    "FORMATS",
    "ExportFilter",
    "ExportStats",
    "export_cases",
    "split_turn",
    "to_case",
    "to_inspect",
]

Format = Literal["jsonl", "inspect"]
FORMATS: tuple[Format, ...] = ("jsonl", "inspect")


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Keep records of these agents, bad in these dimensions, selected in ``[since, until)``.

    Empty sets match everything; an agent matches the record's label or the conversation's own
    ``agent`` name; a record matches a dimension when it scored badly in it.
    """

    agents: frozenset[str] = frozenset()
    dimensions: frozenset[str] = frozenset()
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def matches(self, record: Record) -> bool:
        """Say whether ``record`` passes every filter."""
        if self.agents and not {record.agent, record.conversation.agent} & self.agents:
            return False
        if self.dimensions and self.dimensions.isdisjoint(record.bad_dimensions):
            return False
        if self.since is not None and record.time < self.since:
            return False
        return self.until is None or record.time < self.until


def split_turn(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """Split at the last user message: (input up to and including it, what followed)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return messages[: index + 1], messages[index + 1 :]
    return messages[:1], messages[1:]  # no user turn: the first message is all the input


def _plain(messages: list[Message]) -> list[dict[str, Any]]:
    """Return messages as JSON objects without their unset (null) fields."""
    return [
        {key: value for key, value in msgspec.to_builtins(m).items() if value is not None}
        for m in messages
    ]


def _final_answer(observed: list[Message]) -> str:
    for message in reversed(observed):
        if message.role == "assistant" and message.content:
            return message.text()
    return ""


def _common(record: Record, observed: list[Message]) -> dict[str, Any]:
    return {
        "agent": record.agent,
        "time": record.time.isoformat().replace("+00:00", "Z"),
        "observed_output": _final_answer(observed),
        "observed_messages": _plain(observed),
        "scores": record.scores,
        "bad_dimensions": record.bad_dimensions,
        "flags": record.flags,
        "explanations": record.explanations,
        "selected_because": record.selected_because,
        "provenance": msgspec.to_builtins(record.provenance),
    }


def to_case(record: Record) -> dict[str, Any]:
    """Return the plain ``jsonl`` case for ``record``."""
    given, observed = split_turn(record.conversation.messages)
    common = _common(record, observed)
    return {
        "id": record.id,
        "agent": common.pop("agent"),
        "time": common.pop("time"),
        "input": _plain(given),
        **common,
    }


def _inspect_arguments(arguments: object) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return {"raw": arguments}


def _inspect_message(message: Message) -> dict[str, Any]:
    """Return ``message`` as an Inspect chat message (content never null; no developer role)."""
    role = "system" if message.role == "developer" else message.role
    result: dict[str, Any] = {"role": role, "content": message.text()}
    if message.tool_calls:
        result["tool_calls"] = [
            {
                "id": call.id or f"call_{index}",
                "function": call.name or (call.function or {}).get("name") or "unknown",
                "arguments": _inspect_arguments(
                    call.arguments if call.function is None else call.function.get("arguments")
                ),
                "type": "function",
            }
            for index, call in enumerate(message.tool_calls)
        ]
    if message.role == "tool":
        result["tool_call_id"] = message.tool_call_id
        if message.error:
            detail = message.error if isinstance(message.error, str) else message.text()
            result["tool_error"] = {"type": "unknown", "message": detail or "tool error"}
    return result


def to_inspect(record: Record) -> dict[str, Any]:
    """Return the Inspect sample for ``record``."""
    given, observed = split_turn(record.conversation.messages)
    return {
        "id": record.id,
        "input": [_inspect_message(m) for m in given],
        "target": "",
        "metadata": _common(record, observed),
    }


@dataclass(slots=True)
class ExportStats:
    """What an export did."""

    exported: int = 0
    filtered: int = 0
    duplicates: int = 0
    seen: set[str] = field(default_factory=set, repr=False)


def export_cases(
    records: Iterable[Record], *, fmt: Format, where: ExportFilter, stats: ExportStats
) -> Iterator[str]:
    """Yield one JSON line per matching record.

    Only the first record of each id counts (two replicas may both have kept a conversation),
    whether or not it matches, so a filter never lets a later copy through in its place.
    """
    convert = to_case if fmt == "jsonl" else to_inspect
    for record in records:
        if record.id in stats.seen:
            stats.duplicates += 1
            continue
        stats.seen.add(record.id)
        if not where.matches(record):
            stats.filtered += 1
            continue
        stats.exported += 1
        yield json.dumps(convert(record), ensure_ascii=False) + "\n"
