"""The stable hash of a conversation id that every sampling decision starts from."""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["HASH_SPACE", "rate_threshold", "stable_hash"]

#: Size of the hash space: ``stable_hash`` returns values in ``[0, HASH_SPACE)``.
HASH_SPACE = 2**64


def stable_hash(conversation_id: str) -> int:
    """Return a 64-bit unsigned hash of ``conversation_id``, the same in every process.

    Python's ``hash()`` is salted per process (``PYTHONHASHSEED``), so replicas would disagree
    about which conversations to sample; blake2b is keyless-stable, fast, and its first 8 bytes
    are uniform. The value is part of the on-the-wire behaviour: changing the algorithm or byte
    order changes which conversations every replica samples.
    """
    # surrogatepass: an id with a lone surrogate must hash, not raise, on the hot path.
    digest = blake2b(conversation_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    # Little-endian: either order is uniform; this one puts the example conversation's id
    # (``c-7f3a``, at 0.23) inside the default 25% boost band, so the README's demo shows a boost.
    return int.from_bytes(digest, "little")


def rate_threshold(rate: float) -> int:
    """Return the integer bound ``t`` such that ``stable_hash(id) < t`` holds for ``rate`` of ids.

    Integer arithmetic keeps both edges exact: rate 0 gives 0 (nothing is below it) and rate 1
    gives ``HASH_SPACE`` (everything is), unlike comparing ``hash / 2**64`` as a float, which
    rounds up to 1.0 near the top and can miss or reach the edges.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a sampling rate must be within [0, 1], got {rate!r}")
    # Multiplying by a power of two is exact in binary floating point, so int() only truncates.
    return int(rate * HASH_SPACE)
