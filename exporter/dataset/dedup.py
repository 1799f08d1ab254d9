"""Remember which conversation ids are already in the dataset, in bounded memory."""

from __future__ import annotations

import hashlib

__all__ = ["IdFilter"]


class IdFilter:
    """The last ``max_ids`` (at least half of them) ids seen, as 64-bit hashes in two sets.

    New ids go into the young set; when it holds ``max_ids // 2`` the old set is dropped and
    the young one takes its place. Memory never exceeds ``max_ids`` entries (about 80 bytes
    each: a small int plus its set slot), and an id is forgotten only after at least
    ``max_ids // 2`` newer ones, with no per-entry bookkeeping. A 64-bit hash makes a false
    "already seen" among 100,000 ids a one-in-a-billion event.
    """

    def __init__(self, max_ids: int) -> None:
        self._half = max(1, max_ids // 2)
        self._young: set[int] = set()
        self._old: set[int] = set()

    @staticmethod
    def _key(conversation_id: str) -> int:
        digest = hashlib.blake2b(conversation_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little")

    def __contains__(self, conversation_id: str) -> bool:
        key = self._key(conversation_id)
        return key in self._young or key in self._old

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def add(self, conversation_id: str) -> bool:
        """Remember ``conversation_id``; return False if it was already remembered."""
        key = self._key(conversation_id)
        if key in self._young or key in self._old:
            return False
        if len(self._young) >= self._half:
            self._old, self._young = self._young, set()
        self._young.add(key)
        return True
