"""Recent unsampled conversations, kept briefly so a late signal can still get one scored."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["LateSignalBuffer"]

# (stored_at, agent, raw) as a plain tuple: put() runs for most ingested conversations, and a
# NamedTuple's constructor costs several times more.
_Entry = tuple[float, str, bytes]


class LateSignalBuffer:
    """Recent unsampled conversations by id, so a late thumbs-down can still get one scored.

    Bounded by entry count, by the bytes of the raw JSON kept (exact, since nothing but the
    raw bytes is stored) and by age. Every entry leaves exactly once: through ``pop`` (the
    caller scores it) or as an agent label returned by ``put``, ``expire`` or ``drain`` (the
    caller counts it as finally not sampled), which keeps the exporter's accounting exact.
    """

    def __init__(
        self,
        *,
        max_conversations: int,
        max_bytes: int,
        max_age: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if max_conversations < 0 or max_bytes < 0 or max_age < 0:
            raise ValueError("late-signal buffer bounds must not be negative")
        self._max_conversations = max_conversations
        self._max_bytes = max_bytes
        self._max_age = max_age
        # None reads time.monotonic() at call time (so freezegun takes effect), inline for speed.
        self._clock = clock
        # Insertion order is age order: a re-put moves the id to the end, so the oldest entry
        # is always first and every eviction is O(1).
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._nbytes = 0
        # A lower bound on the oldest entry's time, so put() skips the expiry scan with one
        # comparison. Evictions and pops only make the oldest younger: the bound stays safe.
        self._oldest_at = math.inf

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._entries

    @property
    def nbytes(self) -> int:
        """Return the bytes of raw JSON held."""
        return self._nbytes

    def put(self, conversation_id: str, agent: str, raw: bytes) -> list[str]:
        """Keep ``raw`` under ``conversation_id``; return the agents of every entry that left.

        An entry that can never fit (bigger than ``max_bytes``, or a buffer of size 0) leaves
        at once. Re-putting a present id replaces it, and the replaced entry is returned: the
        id was received twice, and each receipt must be accounted for once.
        """
        now = time.monotonic() if self._clock is None else self._clock()
        left = self._expire(now) if self._oldest_at < now - self._max_age else []
        entries = self._entries
        previous = entries.pop(conversation_id, None)
        if previous is not None:
            self._nbytes -= len(previous[2])
            left.append(previous[1])
        size = len(raw)
        if size > self._max_bytes or self._max_conversations == 0:
            left.append(agent)
            return left
        if not entries:
            self._oldest_at = now
        entries[conversation_id] = (now, agent, raw)
        self._nbytes += size
        # The new entry fits on its own, so it is never evicted here: the loop stops before it.
        while len(entries) > self._max_conversations or self._nbytes > self._max_bytes:
            left.append(self._pop_oldest()[1])
        return left

    def pop(self, conversation_id: str) -> tuple[str, bytes] | None:
        """Remove and return ``(agent, raw)`` for ``conversation_id``, or ``None`` if absent.

        An entry past its age that ``expire`` has not dropped yet is still returned: it is in
        memory anyway, and scoring it is what the late signal asked for.
        """
        entry = self._entries.pop(conversation_id, None)
        if entry is None:
            return None
        self._nbytes -= len(entry[2])
        return entry[1], entry[2]

    def expire(self) -> list[str]:
        """Drop entries older than ``max_age``; return their agents."""
        return self._expire(time.monotonic() if self._clock is None else self._clock())

    def drain(self) -> list[str]:
        """Empty the buffer (on shutdown); return the agents of every entry, oldest first."""
        agents = [entry[1] for entry in self._entries.values()]
        self._entries.clear()
        self._nbytes = 0
        self._oldest_at = math.inf
        return agents

    def _expire(self, now: float) -> list[str]:
        left: list[str] = []
        deadline = now - self._max_age
        entries = self._entries
        # Oldest first, stopping at the first young entry. A wall clock stepping back could
        # leave an old entry behind a younger one; the monotonic default clock cannot.
        while entries:
            oldest_at = next(iter(entries.values()))[0]
            if oldest_at >= deadline:
                self._oldest_at = oldest_at
                return left
            left.append(self._pop_oldest()[1])
        self._oldest_at = math.inf
        return left

    def _pop_oldest(self) -> _Entry:
        _, entry = self._entries.popitem(last=False)
        self._nbytes -= len(entry[2])
        return entry
