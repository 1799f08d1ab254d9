"""A daily spending limit in USD that resets when the UTC day turns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

__all__ = ["DailyBudget", "utc_now"]


def utc_now() -> dt.datetime:
    """Return the current time in UTC (the default clock; tests inject their own)."""
    return dt.datetime.now(dt.UTC)


class DailyBudget:
    """Tracks what was spent today (UTC) against ``limit`` USD; no limit allows everything.

    Requests already in flight when the limit is reached still land and are paid for, so the
    day can overshoot by at most ``concurrency`` requests' worth.
    """

    def __init__(self, *, limit: float | None, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.limit = limit
        self._clock = clock
        self._day: dt.date | None = None
        self._spent = 0.0

    def _roll(self) -> None:
        today = self._clock().astimezone(dt.UTC).date()
        if today != self._day:
            self._day, self._spent = today, 0.0

    @property
    def spent(self) -> float:
        """Return what was spent so far today."""
        self._roll()
        return self._spent

    def allows(self) -> bool:
        """Say whether today's spending is still below the limit."""
        return self.limit is None or self.spent < self.limit

    def spend(self, usd: float) -> None:
        """Add the cost of one request to today's total."""
        self._roll()
        self._spent += usd
