"""A circuit breaker: stop calling an endpoint that keeps failing, then try it again."""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    """Closed calls through, open refuses, half-open lets one trial request decide."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``failures`` consecutive failed requests, for ``cooldown`` seconds.

    After the cooldown one trial request goes through (half-open): its success closes the
    circuit, its failure opens it for another cooldown. Every request that was allowed must
    end in exactly one of ``success``, ``failure`` or ``release`` (neither: a 400, a cancel).
    """

    def __init__(
        self,
        *,
        failures: int,
        cooldown: float,
        clock: Callable[[], float],
        on_change: Callable[[BreakerState], None] = lambda state: None,
    ) -> None:
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        self.state = BreakerState.CLOSED

    def allows(self) -> bool:
        """Say whether a request may go out now; in half-open, only the first one may."""
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self._cooldown:
                return False
            self._set(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self._trial_running:
                return False
            self._trial_running = True
        return True

    def success(self) -> None:
        """Record a healthy answer: the circuit closes."""
        self._failures = 0
        self._trial_running = False
        if self.state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        """Record a failed request; open the circuit at the threshold or after a failed trial."""
        self._failures += 1
        self._trial_running = False
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self._failures >= self._threshold
        ):
            self._opened_at = self._clock()
            self._set(BreakerState.OPEN)

    def release(self) -> None:
        """End a request that says nothing about the endpoint's health."""
        self._trial_running = False

    def _set(self, state: BreakerState) -> None:
        self.state = state
        self._on_change(state)
