"""How a judge is doing right now, for the status page: its last verdicts and its last error.

The counters in ``exporter.metrics`` have everything since start; Prometheus turns them into
rates. A person looking at one daemon during an outage wants "is it failing now, and why":
the share of failures among the last few calls and the endpoint's last answer. Bounded: one
ring of ``window`` booleans and one error per judge.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from exporter.scoring.judge._errors import JudgeError

__all__ = ["ERROR_OUTCOMES", "JudgeHealth", "LastError"]

#: The ``judge_calls_total`` outcomes that are failures (``over_budget`` is a skip).
ERROR_OUTCOMES = frozenset({"invalid_output", "failed", "breaker_open"})
#: Characters of an error message kept: the endpoint's answer may quote the (redacted) prompt.
MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class LastError:
    """The last failed verdict: when (Unix time), its kind and message (with the answer)."""

    at: float
    kind: str
    message: str


class JudgeHealth:
    """Recent verdict outcomes of one judge, and its last error."""

    def __init__(self, *, window: int = 100, clock: Callable[[], float] = time.time) -> None:
        self.window = window
        self._clock = clock
        self._recent: deque[bool] = deque(maxlen=window)  # True: that verdict failed
        self._failed = 0  # failures in _recent
        self.last_error: LastError | None = None
        self.last_ok: float | None = None

    def record(self, outcome: str, error: JudgeError | None = None) -> None:
        """Record one verdict asked: its ``judge_calls_total`` outcome, and its error if any."""
        if outcome == "over_budget":
            return  # not asked: says nothing about the endpoint
        failed = outcome in ERROR_OUTCOMES
        if len(self._recent) == self.window and self._recent[0]:
            self._failed -= 1
        self._recent.append(failed)
        self._failed += failed
        if not failed:
            self.last_ok = self._clock()
        elif error is not None and outcome != "breaker_open":
            # An open breaker refuses without asking: keep what the endpoint last said.
            self.last_error = LastError(self._clock(), error.kind, str(error)[:MAX_ERROR_CHARS])

    @property
    def recent(self) -> int:
        """Return how many verdicts the error rate is over (at most ``window``)."""
        return len(self._recent)

    @property
    def error_rate(self) -> float | None:
        """Return the share of the recent verdicts that failed; None before the first."""
        return self._failed / len(self._recent) if self._recent else None
