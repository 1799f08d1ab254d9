"""The sampling decision: base rate, boost on triggers, and a daily budget paced over the day.

Time is cut into pacing steps (a minute). At the start of each step the sampler looks at how
many conversations each agent brought in the last steps that the configured rates would
sample, and sets the rates in effect for the step:

* **max_samples**: what is left of the day's budget, spread evenly over the steps left, is
  shared between agents (a quiet agent keeps its full rate; the busy ones share the rest) and
  each agent's rates are halved until its expected samples fit. The sample thins on a busy
  day instead of stopping in the afternoon, and the quality alerts keep seeing every agent.
* **min_samples**: while the day is behind the minimum's pace, a fill band above the base
  rate samples enough more (reason ``min_fill``) to catch up within the step.

Within a step the decision is a pure function of the id: a stable hash against thresholds
that only change at step boundaries. Rates are powers of two of the configured ones, so
replicas seeing similar traffic pick the same rates, and an id sampled at a lower rate is
sampled at every higher one. Running past ``max_samples`` anyway (a burst late in the day)
is still a counted ``daily_budget`` drop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from exporter.config.model import SamplingConfig
from exporter.model import Conversation
from exporter.sampling._hashing import HASH_SPACE, rate_threshold, stable_hash

__all__ = ["PACING_STEP", "SAMPLED_REASONS", "Sampler", "Verdict"]

#: The ``reason`` label values of ``agent_quality_sampled_total``.
SAMPLED_REASONS = frozenset({"base", "boost", "min_fill"})

_DAY = 86400.0
#: Seconds between two pacing decisions; rates hold still in between.
PACING_STEP = 60.0
#: Rates are never halved more often than this (2**-30: a billion times thinner).
_MAX_HALVINGS = 30


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


class _Pace:
    """One agent's thresholds in effect and the demand it brought in the current step."""

    __slots__ = ("base", "boost", "demand", "estimate", "halvings")

    def __init__(self, base: int, boost: int) -> None:
        self.base, self.boost = base, boost
        self.demand = 0  # conversations the configured rates would sample, this step
        self.estimate = 0.0  # smoothed demand per step
        self.halvings = 0


class Sampler:
    """Decide per conversation, deterministically by id within a pacing step, whether to score it.

    The daily counters (samples so far, per replica) and the pacing are local state; days are
    UTC days. ``decide`` takes the agent's label so that each agent is paced on its own.
    """

    def __init__(self, config: SamplingConfig, *, clock: Callable[[], float] | None = None) -> None:
        # None reads time.time() at call time (not bound here, so freezegun takes effect),
        # inline in decide(): a Python-level clock wrapper costs ~30 ns of a ~1 µs budget.
        self._clock = clock
        self._paces: dict[str, _Pace] = {}
        self._count = 0
        self._day_start = 0.0
        self._day_end = 0.0
        self._step_start = 0.0
        self._step_end = 0.0  # forces a roll-over on the first decision
        self._rolls = 0
        self._arrivals = 0
        self._arrival_estimate = 0.0
        self._fill_rate = 0.0
        self._fill_end = 0
        self.reconfigure(config)

    def reconfigure(self, config: SamplingConfig) -> None:
        """Use new rates, triggers and budgets; today's count carries on (a reload is no reset)."""
        self._config = config
        self._base = rate_threshold(config.base_rate)
        self._boost = max(rate_threshold(config.boost_rate), self._base)
        self._signals = tuple(sorted(config.trigger_signals))
        # Late signals only add signals: with no trigger signal, none can promote anything.
        self._missed_in_band = _PROMOTABLE if self._signals else _NOT_SAMPLED
        self._tool_error = config.trigger_tool_error
        self._min_tokens = config.trigger_min_total_tokens
        self._min_daily = config.min_daily_samples
        # None (unlimited) becomes a bound no count reaches, so decide() has one comparison.
        maximum = config.max_daily_samples
        self._max_daily: float = float("inf") if maximum is None else maximum
        for pace in self._paces.values():
            self._apply(pace)
        self._fill_end = self._base

    @property
    def config(self) -> SamplingConfig:
        """Return the sampling configuration in use."""
        return self._config

    @property
    def sampled_today(self) -> int:
        """Return how many conversations were sampled so far this UTC day."""
        self._roll_if_due(self._now())
        return self._count

    def rates(self, agents: tuple[str, ...] = ()) -> Mapping[str, float]:
        """Return the base rate in effect for each agent (and for ``agents`` not seen yet).

        That is ``sampling.base_rate`` halved by the pacing, plus the min-fill band: the share
        of an agent's conversations sampled without any boost trigger, this pacing step.
        """
        self._roll_if_due(self._now())
        fill = self._fill_rate
        found = dict.fromkeys(agents, self._config.base_rate + fill)
        for agent, pace in self._paces.items():
            found[agent] = self._config.base_rate * 2.0**-pace.halvings + fill
        return found

    def decide(self, conversation: Conversation, agent: str = "") -> Verdict:
        """Return the verdict for ``conversation`` of agent label ``agent``; count it if sampled."""
        now = time.time() if self._clock is None else self._clock()
        if not self._step_start <= now < self._step_end:
            self._roll(now)
        pace = self._paces.get(agent)
        if pace is None:
            pace = self._paces[agent] = self._apply(_Pace(self._base, self._boost))
        self._arrivals += 1
        h = stable_hash(conversation.id)
        # Cheapest tests first: most conversations fail the hash tests and are never scanned.
        if h < self._base:
            pace.demand += 1
            if h < pace.base:
                return self._take(_BASE)
            return self._missed_in_band if h < pace.boost else _NOT_SAMPLED
        if h < self._boost:
            if self.has_boost_trigger(conversation):
                pace.demand += 1
                return self._take(_BOOST) if h < pace.boost else _NOT_SAMPLED
            if h < self._fill_end:
                return self._take(_MIN_FILL)
            # Not sampled on its own merits. A late signal can change that only inside the
            # boost band, so only there is the conversation worth keeping for one.
            return self._missed_in_band if h < pace.boost else _NOT_SAMPLED
        if h < self._fill_end:
            return self._take(_MIN_FILL)
        return _NOT_SAMPLED

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

    def _take(self, verdict: Verdict) -> Verdict:
        if self._count >= self._max_daily:
            return _BUDGET
        self._count += 1
        return verdict

    def _now(self) -> float:
        return time.time() if self._clock is None else self._clock()

    def _roll_if_due(self, now: float) -> None:
        if not self._step_start <= now < self._step_end:
            self._roll(now)

    def _apply(self, pace: _Pace) -> _Pace:
        """Set ``pace``'s thresholds from the configured rates and its halvings."""
        pace.base = self._base >> pace.halvings
        pace.boost = self._boost >> pace.halvings
        return pace

    def _roll(self, now: float) -> None:
        """Start the pacing step containing ``now``: estimate demand, then set the rates."""
        start = (now // PACING_STEP) * PACING_STEP
        # A step with no conversation leaves no trace: spread what was counted over the gap.
        elapsed = max(1.0, (start - self._step_start) / PACING_STEP)
        # The first roll has seen nothing yet; the second starts the averages from its data.
        self._rolls += 1
        first = self._rolls <= 2
        for pace in self._paces.values():
            demand = pace.demand / elapsed
            pace.estimate = demand if first else (pace.estimate + demand) / 2
            pace.demand = 0
        arrivals = self._arrivals / elapsed
        self._arrival_estimate = arrivals if first else (self._arrival_estimate + arrivals) / 2
        self._arrivals = 0
        if not self._day_start <= now < self._day_end:
            # Whenever now leaves the current day in either direction: a wall clock stepped
            # back across midnight is a different day too.
            self._day_start = (now // _DAY) * _DAY
            self._day_end = self._day_start + _DAY
            self._count = 0
        self._step_start, self._step_end = start, start + PACING_STEP
        self._pace_maximum()
        self._pace_minimum()

    def _pace_maximum(self) -> None:
        """Share what is left of the day's maximum, per step, between the agents."""
        paces = sorted(self._paces.values(), key=lambda pace: pace.estimate)
        steps_left = max(1.0, (self._day_end - self._step_start) / PACING_STEP)
        left = max(0.0, self._max_daily - self._count) / steps_left
        for index, pace in enumerate(paces):
            share = left / (len(paces) - index)  # quiet agents first: they leave more
            halvings = 0
            if pace.estimate > share:
                ratio = pace.estimate / share if share > 0 else math.inf
                halvings = min(_MAX_HALVINGS, math.ceil(math.log2(ratio)))
            pace.halvings = halvings
            left -= pace.estimate * 2.0**-halvings
            self._apply(pace)

    def _pace_minimum(self) -> None:
        """Open a fill band above the base rate while the day is behind the minimum's pace."""
        self._fill_rate, self._fill_end = 0.0, self._base
        if not self._min_daily or self._arrival_estimate <= 0:
            return
        due = self._min_daily * (self._step_end - self._day_start) / _DAY
        expected = sum(pace.estimate * 2.0**-pace.halvings for pace in self._paces.values())
        short = due - self._count - expected
        if short <= 0:
            return
        room = 1.0 - self._config.base_rate
        if room <= 0:
            return
        wanted = min(short / self._arrival_estimate, room)
        # A power of two, like the pacing, so replicas agree on the band; rounded down, so a
        # catch-up never overshoots (the next step fills what is still missing).
        rate = min(2.0 ** math.floor(math.log2(wanted)), room)
        self._fill_rate = rate
        self._fill_end = min(self._base + rate_threshold(rate), HASH_SPACE)
