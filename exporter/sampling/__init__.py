"""Deterministic sampling of conversations and the late-signal buffer.

The decision is a stable hash of the conversation id against integer thresholds, so every
replica agrees on it; daily counters (min-fill pace, maximum) are per replica and UTC day.
"""

from exporter.sampling._hashing import HASH_SPACE, rate_threshold, stable_hash
from exporter.sampling._late_buffer import LateSignalBuffer
from exporter.sampling._sampler import SAMPLED_REASONS, Sampler, Verdict

__all__ = [
    "HASH_SPACE",
    "SAMPLED_REASONS",
    "LateSignalBuffer",
    "Sampler",
    "Verdict",
    "rate_threshold",
    "stable_hash",
]
