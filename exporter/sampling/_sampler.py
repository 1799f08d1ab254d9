"""The sampling decision: base rate, boost on triggers, min-fill pace and a daily maximum."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from exporter.config.model import SamplingConfig
from exporter.model import Conversation
from exporter.sampling._hashing import rate_threshold, stable_hash

__all__ = ["SAMPLED_REASONS", "Sampler", "Verdict"]

#: The ``reason`` label values of ``agent_quality_sampled_total``.
SAMPLED_REASONS = frozenset({"base", "boost", "min_fill"})

_DAY = 86400.0


class Verdict(NamedTuple):
    """The outcome of one sampling decision.

    ``reason`` is ``base``, ``boost`` or ``min_fill`` when sampled; ``daily_budget`` when the
    conversation would have been sampled but the UTC day's maximum is spent (a counted drop);
    ``None`` when it is not sampled. ``promotable`` says, for one not sampled, whether a late
    signal could still boost it: only those are worth keeping for ``POST /v1/feedback``.
    """

    reason: str | None
    promotable: bool = False

    @property
    def sampled(self) -> bool:
        """Say whether the conversation is to be scored."""
        return self.reason in SAMPLED_REASONS


# Shared instances: decide() runs per ingested conversation and should not allocate.
_BASE = Verdict("base")
_BOOST = Verdict("boost")
_MIN_FILL = Verdict("min_fill")
_BUDGET = Verdict("daily_budget")
_NOT_SAMPLED = Verdict(None)
_PROMOTABLE = Verdict(None, promotable=True)


class Sampler:
    """Decide per conversation, deterministically by id, whether to score it.

    The same id gets the same base and boost decision in every process and replica; only the
    per-replica daily counters (min-fill, maximum) depend on local state. Days are UTC days.
    """

    def __init__(self, config: SamplingConfig, *, clock: Callable[[], float] | None = None) -> None:
        # None reads time.time() at call time (not bound here, so freezegun takes effect),
        # inline in decide(): a Python-level clock wrapper costs ~30 ns of a ~1 µs budget.
        self._clock = clock
        self.reconfigure(config)
        self._count = 0
        self._day_start = 0.0
        self._day_end = 0.0  # forces a roll-over on the first decision

    def reconfigure(self, config: SamplingConfig) -> None:
        """Use new rates, triggers and budgets; today's count carries on (a reload is no reset)."""
        self._config = config
        self._base = rate_threshold(config.base_rate)
        self._boost = rate_threshold(config.boost_rate)
        self._signals = tuple(sorted(config.trigger_signals))
        # Late signals only add signals: with no trigger signal, none can promote anything.
        self._missed_in_band = _PROMOTABLE if self._signals else _NOT_SAMPLED
        self._tool_error = config.trigger_tool_error
        self._min_tokens = config.trigger_min_total_tokens
        self._min_daily = config.min_daily_samples
        # None (unlimited) becomes a bound no count reaches, so decide() has one comparison.
        maximum = config.max_daily_samples
        self._max_daily: float = float("inf") if maximum is None else maximum

    @property
    def config(self) -> SamplingConfig:
        """Return the sampling configuration in use."""
        return self._config

    @property
    def sampled_today(self) -> int:
        """Return how many conversations were sampled so far this UTC day."""
        now = time.time() if self._clock is None else self._clock()
        if not self._day_start <= now < self._day_end:
            self._new_day(now)
        return self._count

    def decide(self, conversation: Conversation) -> Verdict:
        """Return the verdict for ``conversation`` and count it when sampled."""
        h = stable_hash(conversation.id)
        # Cheapest tests first: most conversations fail the hash tests and are never scanned.
        if h < self._base:
            verdict = _BASE
        elif h < self._boost and self.has_boost_trigger(conversation):
            verdict = _BOOST
        else:
            # Not sampled on its own merits. A late signal can change that only inside the
            # boost band, so only there is the conversation worth keeping for one.
            missed = self._missed_in_band if h < self._boost else _NOT_SAMPLED
            if not self._min_daily:
                return missed
            verdict = _MIN_FILL
        now = time.time() if self._clock is None else self._clock()
        if not self._day_start <= now < self._day_end:
            self._new_day(now)
        # Pace by the elapsed fraction of the day, not whole hours: at 06:00 with a minimum of
        # 200 the target is 50, at 06:59 it is 58 (whole hours would still say 50).
        if verdict is _MIN_FILL and (
            self._count * _DAY >= self._min_daily * (now - self._day_start)
        ):
            return missed
        if self._count >= self._max_daily:
            return _BUDGET
        self._count += 1
        return verdict

    def can_promote(self, conversation_id: str) -> bool:
        """Say whether a late signal could get ``conversation_id`` sampled (if it was not)."""
        return self._missed_in_band is _PROMOTABLE and stable_hash(conversation_id) < self._boost

    def has_boost_trigger(self, conversation: Conversation) -> bool:
        """Say whether any configured boost trigger holds for ``conversation``."""
        signals = conversation.signals
        if signals:
            for name in self._signals:
                if signals.get(name):
                    return True
        minimum = self._min_tokens
        usage = conversation.usage
        if minimum is not None and usage is not None and usage.total_tokens >= minimum:
            return True
        if self._tool_error:
            for message in conversation.messages:
                if message.role == "tool" and message.error:
                    return True
        return False

    def _new_day(self, now: float) -> None:
        """Start the count of the UTC day that contains ``now``."""
        # Called whenever now leaves the current day in either direction: a wall clock stepped
        # back across midnight is a different day too.
        self._day_start = (now // _DAY) * _DAY
        self._day_end = self._day_start + _DAY
        self._count = 0
