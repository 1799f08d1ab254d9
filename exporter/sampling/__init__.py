"""Deterministic sampling of conversations and the late-signal buffer.

The decision is a stable hash of the conversation id against integer thresholds that change
only at pacing steps, so replicas agree on it; the daily budget (min-fill, maximum) is paced
over the UTC day, per replica.
"""

from exporter.sampling._hashing import HASH_SPACE, rate_threshold, stable_hash
from exporter.sampling._late_buffer import LateSignalBuffer
from exporter.sampling._sampler import PACING_STEP, SAMPLED_REASONS, Sampler, Verdict

__all__ = [
    "HASH_SPACE",
    "PACING_STEP",
    "SAMPLED_REASONS",
    "LateSignalBuffer",
    "Sampler",
    "Verdict",
    "rate_threshold",
    "stable_hash",
]
