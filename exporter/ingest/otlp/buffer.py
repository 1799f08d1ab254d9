"""Partial conversations: spans and GenAI events waiting for the rest of their conversation.

Bounded by count, bytes and age. A conversation leaves when complete (its root span ended, it
went idle, it reached the maximum age), when evicted to stay within the bounds (oldest first),
or at shutdown. Keys and traces of conversations that left are remembered for a while, so
spans and events arriving after them are counted as late instead of starting a new fragment
that would be scored as a conversation of its own.

Records are kept encoded (``record.encode_record``) and the bytes counted are what the process
holds for them: the encoded size plus the Python objects around it, and the keys remembered of
conversations that left, so ``max_bytes`` bounds memory (bench/bench_otlp_memory.py measures
it against RSS).

Events (log records) and spans of one conversation come in either order. A root span whose
LLM calls came without message content does not complete its conversation until an event has
arrived for each of those calls: the content may be on its way as log records.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.config.model import OtlpConfig
from exporter.ingest.otlp.record import EVENT, SpanRecord, decode_record, encode_record

__all__ = ["ID_BYTES", "PARTIAL_BYTES", "RECENT_BYTES", "RECORD_BYTES", "Partial", "PartialBuffer"]

# What the process holds beyond the encoded records, measured with tracemalloc on CPython 3.11
# (64-bit): a bytes object's header and its slot in the list (RECORD_BYTES); a Partial with its
# key, its entries in the buffer's dicts, its traces set and list (PARTIAL_BYTES); a span id
# in a set (ID_BYTES); a key or trace remembered after its conversation left (RECENT_BYTES).
RECORD_BYTES = 56
PARTIAL_BYTES = 900
ID_BYTES = 80
RECENT_BYTES = 96
#: The share of ``max_bytes`` each memory of what left (keys, traces) may take at most.
RECENT_SHARE = 8


@dataclass(slots=True)
class Partial:
    """The spans and events of one conversation received so far, encoded."""

    key: str
    first_seen: float
    last_seen: float
    conversation_id: str | None = None
    service: str | None = None
    agent: str | None = None  # for counting it under its agent if it is dropped
    agent_from_span: bool = False  # ``agent`` came from an agent span, which names it best
    blobs: list[bytes] = field(default_factory=list)
    traces: set[bytes] = field(default_factory=set)
    #: LLM spans that came without content, and spans that events arrived for.
    waiting: set[bytes] = field(default_factory=set)
    heard: set[bytes] = field(default_factory=set)
    nbytes: int = PARTIAL_BYTES
    ended: bool = False

    def records(self) -> list[SpanRecord]:
        """Return the records, decoded, in order of arrival."""
        return [decode_record(blob) for blob in self.blobs]

    @property
    def ready(self) -> bool:
        """Say whether every LLM span without content has had an event."""
        return not self.waiting

    def note(self, record: SpanRecord) -> int:
        """Track what ``record`` says about events still to come; return the bytes it adds."""
        added = 0
        span = record.span_id
        if record.kind == EVENT:
            if span in self.waiting:
                self.waiting.discard(span)
            elif span not in self.heard:
                self.heard.add(span)
                added += ID_BYTES
        elif record.kind == "llm" and not record.has_messages and span not in self.heard:
            self.waiting.add(span)
            added += ID_BYTES
        named = record.agent is not None and not self.agent_from_span
        if named and (self.agent is None or record.kind == "agent"):
            self.agent, self.agent_from_span = record.agent, record.kind == "agent"
        return added


class _Recent:
    """Keys that left the buffer, remembered up to a count and an age."""

    def __init__(self, *, max_items: int, max_age: float) -> None:
        self._items: dict[object, float] = {}
        self._max_items, self._max_age = max_items, max_age

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: object, now: float) -> None:
        self._items.pop(key, None)
        self._items[key] = now
        if len(self._items) > self._max_items:
            del self._items[next(iter(self._items))]

    def expire(self, now: float) -> None:
        horizon = now - self._max_age
        while self._items:
            key, when = next(iter(self._items.items()))
            if when > horizon:
                return
            del self._items[key]


class PartialBuffer:
    """Group span and event records by conversation until each conversation is complete."""

    def __init__(self, config: OtlpConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._entries: dict[str, Partial] = {}  # in order of arrival: the oldest go first
        self._by_trace: dict[bytes, str] = {}
        self._ended: set[str] = set()
        # Remembered up to the count of conversations the buffer holds, and never more than
        # a share of its bytes each: a high max_conversations must not make them the bulk.
        remembered = min(
            config.max_conversations, config.max_bytes // (RECENT_SHARE * RECENT_BYTES)
        )
        self._done_keys = _Recent(max_items=remembered, max_age=config.max_age)
        self._done_traces = _Recent(max_items=remembered, max_age=config.max_age)
        self.nbytes = 0  # what the partial conversations hold

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def held(self) -> int:
        """Return the bytes held: partial conversations, and the keys of those that left."""
        return self.nbytes + (len(self._done_keys) + len(self._done_traces)) * RECENT_BYTES

    def add(self, record: SpanRecord, *, service: str | None) -> bool:
        """Keep ``record``; return False when its conversation already left (a late record).

        ``record.ends_conversation`` is for the caller to pass on with ``end_trace`` once the
        request's other spans are in: a root span may come before its children in a batch.
        """
        trace, conversation_id = record.trace_id, record.conversation_id
        if trace in self._done_traces or (conversation_id and conversation_id in self._done_keys):
            return False
        now = self._clock()
        key = self._by_trace.get(trace)
        if conversation_id is not None and key != conversation_id:
            if key is not None and self._entries[key].conversation_id is None:
                self._merge(source=key, target=conversation_id, now=now)
            key = conversation_id
        elif key is None:
            key = trace.hex()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Partial(key=key, first_seen=now, last_seen=now)
            entry.conversation_id = conversation_id
            self.nbytes += entry.nbytes
        blob = encode_record(record)
        entry.blobs.append(blob)
        added = len(blob) + RECORD_BYTES + entry.note(record)
        if trace not in entry.traces:
            entry.traces.add(trace)
            self._by_trace.setdefault(trace, key)
            added += ID_BYTES * 2  # in the traces set and the trace index
        entry.nbytes += added
        self.nbytes += added
        entry.last_seen = now
        entry.service = entry.service or service
        if entry.ended and record.kind == EVENT:
            self._ended.add(key)  # the event it waited for may be this one
        return True

    def _merge(self, *, source: str, target: str, now: float) -> None:
        """Fold a conversation known by its trace into the conversation id it turned out to have."""
        moved = self._entries.pop(source)
        entry = self._entries.get(target)
        if entry is None:
            entry = self._entries[target] = moved
            entry.key, entry.conversation_id, entry.last_seen = target, target, now
        else:
            self.nbytes -= PARTIAL_BYTES  # one Partial less
            entry.blobs += moved.blobs
            entry.nbytes += moved.nbytes - PARTIAL_BYTES
            entry.service = entry.service or moved.service
            if moved.agent_from_span or entry.agent is None:
                entry.agent, entry.agent_from_span = moved.agent, moved.agent_from_span
            entry.ended = entry.ended or moved.ended
            entry.heard |= moved.heard
            entry.waiting = (entry.waiting | moved.waiting) - entry.heard
            entry.traces |= moved.traces
        for trace in moved.traces:
            self._by_trace[trace] = target
        if source in self._ended:
            self._ended.discard(source)
            self._ended.add(target)

    def end_trace(self, trace: bytes) -> None:
        """Note that the root span of ``trace`` ended."""
        key = self._by_trace.get(trace)
        if key is not None:
            self._entries[key].ended = True
            self._ended.add(key)

    def take_ended(self) -> list[Partial]:
        """Remove and return the conversations whose root span ended (if that completes them).

        One still waiting for the events of an LLM span stays; an event arriving for it, or
        the idle timeout, completes it later.
        """
        if not self._config.complete_on_root_span or not self._ended:
            self._ended.clear()
            return []
        keys, self._ended = self._ended, set()
        entries = self._entries
        return [self._remove(key) for key in keys if key in entries and entries[key].ready]

    def take_expired(self) -> tuple[list[Partial], list[Partial]]:
        """Remove and return the conversations gone idle, and those past the maximum age."""
        now = self._clock()
        self._done_keys.expire(now)
        self._done_traces.expire(now)
        idle_before = now - self._config.idle_timeout
        born_before = now - self._config.max_age
        idle, old = [], []
        for key, entry in list(self._entries.items()):
            if entry.last_seen <= idle_before:
                idle.append(self._remove(key))
            elif entry.first_seen <= born_before:
                old.append(self._remove(key))
        return idle, old

    def take_overflow(self) -> list[Partial]:
        """Remove and return the oldest conversations until the buffer is within its bounds."""
        evicted = []
        config = self._config
        while self._entries and (
            len(self._entries) > config.max_conversations or self.held > config.max_bytes
        ):
            evicted.append(self._remove(next(iter(self._entries))))
        return evicted

    def take_all(self) -> list[Partial]:
        """Remove and return every conversation (shutdown)."""
        return [self._remove(key) for key in list(self._entries)]

    def _remove(self, key: str) -> Partial:
        entry = self._entries.pop(key)
        self.nbytes -= entry.nbytes
        self._ended.discard(key)
        now = self._clock()
        self._done_keys.add(key, now)
        for trace in entry.traces:
            self._done_traces.add(trace, now)
            if self._by_trace.get(trace) == key:
                del self._by_trace[trace]
        return entry
