"""Partial conversations: spans waiting for the rest of their conversation.

Bounded by count, bytes (serialized span sizes) and age. A conversation leaves when complete
(its root span ended, it went idle, it reached the maximum age), when evicted to stay within
the bounds (oldest first), or at shutdown. Keys and traces of conversations that left are
remembered for a while, so spans arriving after them are counted as late instead of starting
a new fragment that would be scored as a conversation of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.config.model import OtlpConfig
from exporter.ingest.otlp.spans import SpanRecord

__all__ = ["Partial", "PartialBuffer"]


@dataclass(slots=True)
class Partial:
    """The spans of one conversation received so far."""

    key: str
    first_seen: float
    last_seen: float
    conversation_id: str | None = None
    service: str | None = None
    records: list[SpanRecord] = field(default_factory=list)
    traces: set[bytes] = field(default_factory=set)
    nbytes: int = 0
    ended: bool = False


class _Recent:
    """Keys that left the buffer, remembered up to a count and an age."""

    def __init__(self, *, max_items: int, max_age: float) -> None:
        self._items: dict[object, float] = {}
        self._max_items, self._max_age = max_items, max_age

    def __contains__(self, key: object) -> bool:
        return key in self._items

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
    """Group span records by conversation until each conversation is complete."""

    def __init__(self, config: OtlpConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._entries: dict[str, Partial] = {}  # in order of arrival: the oldest go first
        self._by_trace: dict[bytes, str] = {}
        self._ended: set[str] = set()
        self._done_keys = _Recent(max_items=config.max_conversations, max_age=config.max_age)
        self._done_traces = _Recent(max_items=config.max_conversations, max_age=config.max_age)
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, record: SpanRecord, *, service: str | None) -> bool:
        """Keep ``record``; return False when its conversation already left (a late span).

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
        entry.records.append(record)
        entry.nbytes += record.size
        self.nbytes += record.size
        entry.last_seen = now
        entry.service = entry.service or service
        if trace not in entry.traces:
            entry.traces.add(trace)
            self._by_trace.setdefault(trace, key)
        return True

    def _merge(self, *, source: str, target: str, now: float) -> None:
        """Fold a conversation known by its trace into the conversation id it turned out to have."""
        moved = self._entries.pop(source)
        entry = self._entries.get(target)
        if entry is None:
            entry = self._entries[target] = Partial(
                key=target, first_seen=moved.first_seen, last_seen=now, conversation_id=target
            )
        entry.records += moved.records
        entry.nbytes += moved.nbytes
        entry.service = entry.service or moved.service
        entry.ended = entry.ended or moved.ended
        for trace in moved.traces:
            entry.traces.add(trace)
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
        """Remove and return the conversations whose root span ended (if that completes them)."""
        if not self._config.complete_on_root_span or not self._ended:
            self._ended.clear()
            return []
        keys, self._ended = self._ended, set()
        return [self._remove(key) for key in keys if key in self._entries]

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
            len(self._entries) > config.max_conversations or self.nbytes > config.max_bytes
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
