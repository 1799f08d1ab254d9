"""Spans and GenAI events of one conversation -> one ``Conversation``.

LLM calls usually resend the whole history, so the same message turns up in many spans. The
transcript is the ordered multiset union of every span's messages: a message already present
(as many times as this span has it) is not added again. Messages are placed by time (inputs at
the span's start, outputs at its end) with system messages first; tool spans add the calls and
results instrumentation left out of the LLM spans, and mark failed calls as errors. A tool's
result is what the model saw (the next call's input) when that was recorded: a span's status
message says that the tool failed, not what the model was told.

Events (log records) carry the messages of the span they name: they are placed at that span's
times, or at their own when the span never came.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Hashable, Sequence
from typing import Any

import msgspec

from exporter.ingest.otlp.record import EVENT, SpanRecord, ToolRun
from exporter.model import Conversation, Message, ToolCall, Usage

__all__ = ["UNKNOWN_AGENT", "assemble", "encode"]

#: The agent name of a conversation whose spans name none (no gen_ai.agent.name, no service).
UNKNOWN_AGENT = "unknown"
#: Trace ids listed in a conversation's metadata, to find its traces in a tracing backend.
MAX_TRACE_IDS = 16
_MAX_ID, _MAX_NAME = 512, 256


def _key(message: Message) -> Hashable:
    """Say which messages are "the same" across spans."""
    if message.role == "tool" and message.tool_call_id:
        return ("tool", message.tool_call_id)
    if message.tool_calls and all(call.id for call in message.tool_calls):
        return (message.role, tuple(call.id for call in message.tool_calls))
    return (message.role, message.text())


class _Transcript:
    def __init__(self) -> None:
        self.entries: list[tuple[int, Message]] = []
        self.by_key: dict[Hashable, list[int]] = collections.defaultdict(list)
        self.call_ids: set[str] = set()
        self.from_runs: set[int] = set()  # tool results taken from a tool span

    def merge(self, messages: Sequence[Message], time: int) -> None:
        seen: collections.Counter[Hashable] = collections.Counter()
        for message in messages:
            key = _key(message)
            seen[key] += 1
            present = self.by_key.get(key, ())
            if seen[key] <= len(present):
                index = present[seen[key] - 1]
                existing = self.entries[index][1]
                if message.error and not existing.error:
                    existing.error = message.error
                if index in self.from_runs and message.content is not None:
                    existing.content = message.content  # what the model saw
                    self.from_runs.discard(index)
                continue
            self.add(message, time, key)

    def add(self, message: Message, time: int, key: Hashable | None = None) -> None:
        self.by_key[_key(message) if key is None else key].append(len(self.entries))
        self.entries.append((time, message))
        for call in message.tool_calls or ():
            if call.id:
                self.call_ids.add(call.id)

    def add_tool_run(self, run: ToolRun, start: int, end: int) -> None:
        if run.call_id is None or run.call_id not in self.call_ids:
            call = ToolCall(id=run.call_id, name=run.name, arguments=run.arguments)
            self.add(Message(role="assistant", tool_calls=[call]), start)
        content = run.result if run.result is not None else run.error_message
        error: bool | str | None = (run.error_message or True) if run.error else False
        if run.call_id is not None and self.by_key.get(("tool", run.call_id)):
            existing = self.entries[self.by_key[("tool", run.call_id)][0]][1]
            if run.error:
                existing.error = error
            if existing.content is None:
                existing.content = content
            return
        self.from_runs.add(len(self.entries))
        self.add(
            Message(role="tool", tool_call_id=run.call_id, content=content, error=error),
            end,
        )

    def messages(self) -> list[Message]:
        # Stable: messages of one span keep their order; system instructions lead.
        ordered = sorted(self.entries, key=lambda entry: (entry[1].role != "system", entry[0]))
        return [message for _, message in ordered]


def _time(nanos: int) -> dt.datetime | None:
    if nanos <= 0:
        return None
    return dt.datetime.fromtimestamp(nanos / 1e9, tz=dt.UTC)


def _usage(records: Sequence[SpanRecord]) -> Usage | None:
    """Sum the LLM calls; agent spans often repeat the same totals, so use them only alone."""
    for kinds in (("llm",), ("other",), ("agent",)):
        chosen = [
            r
            for r in records
            if r.kind in kinds and (r.input_tokens, r.output_tokens, r.cost_usd) != (None,) * 3
        ]
        if chosen:
            if kinds == ("agent",):
                chosen = chosen[:1]  # the outermost agent's totals include the inner ones
            return Usage(
                input_tokens=_sum([r.input_tokens for r in chosen]),
                output_tokens=_sum([r.output_tokens for r in chosen]),
                cost_usd=_sum([r.cost_usd for r in chosen]),
            )
    return None


def _sum(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _joined(records: Sequence[SpanRecord]) -> list[SpanRecord]:
    """Return the spans, and the events gathered per span and placed at that span's times."""
    joined: list[SpanRecord] = []
    spans: dict[tuple[bytes, bytes], SpanRecord] = {}
    events: dict[tuple[bytes, bytes], SpanRecord] = {}
    for record in records:
        ids = (record.trace_id, record.span_id)
        if record.kind != EVENT:
            joined.append(record)
            spans[ids] = record
            continue
        group = events.get(ids)
        if group is None:  # a copy: the messages of several events of one span add up
            events[ids] = msgspec.structs.replace(
                record,
                inputs=list(record.inputs),
                outputs=list(record.outputs),
                scores=dict(record.scores),
            )
            continue
        group.inputs += record.inputs
        group.outputs += record.outputs
        group.scores.update(record.scores)
        group.start, group.end = min(group.start, record.start), max(group.end, record.end)
    for ids, group in events.items():
        del group.outputs[1:]  # one choice: the one the conversation went on with
        span = spans.get(ids)
        if span is not None:
            group.start, group.end = span.start, span.end
        joined.append(group)
    return joined


def assemble(
    *,
    key: str,
    conversation_id: str | None,
    records: Sequence[SpanRecord],
    service: str | None,
) -> Conversation | None:
    """Return the conversation in ``records``, or None when they hold no message at all.

    The result is not validated yet: the caller round-trips it through the decoder.
    """
    records = sorted(_joined(records), key=lambda r: (r.start, r.end))
    transcript = _Transcript()
    for record in records:
        transcript.merge(record.inputs, record.start)
        if record.tool is not None:
            transcript.add_tool_run(record.tool, record.start, record.end)
        transcript.merge(record.outputs, record.end)
    messages = transcript.messages()
    if not messages:
        return None
    agents = [r.agent for r in records if r.agent and r.kind == "agent"]
    agent = (agents or [r.agent for r in records if r.agent] or [service or UNKNOWN_AGENT])[0]
    models = [r.model for r in records if r.model and r.kind == "llm"]
    models = models or [r.model for r in records if r.model]
    scores: dict[str, float] = {}
    for record in records:
        scores.update(record.scores)
    failed = any(r.tool is not None and r.tool.error for r in records)
    trace_ids = list(dict.fromkeys(r.trace_id.hex() for r in records))
    metadata: dict[str, Any] = {"source": "otlp", "trace_ids": trace_ids[:MAX_TRACE_IDS]}
    if service:
        metadata["service.name"] = service
    return Conversation(
        id=(conversation_id or key)[:_MAX_ID],
        agent=agent[:_MAX_NAME],
        messages=messages,
        model=models[-1] if models else None,
        signals={"tool_error": True} if failed else {},
        scores=scores,
        usage=_usage(records),
        started_at=_time(min(r.start for r in records)),
        ended_at=_time(max(r.end for r in records)),
        metadata=metadata,
    )


def encode(conversation: Conversation) -> bytes:
    """Return the conversation's JSON, as the intake keeps it."""
    return msgspec.json.encode(conversation)
