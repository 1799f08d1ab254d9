"""Why a judge gave no verdict; each is a ``ScorerError``, so the pipeline counts an error."""

from __future__ import annotations

from exporter.exceptions import ScorerError

__all__ = ["BreakerOpen", "InvalidVerdict", "JudgeError", "JudgeFailed", "OverBudget"]


class JudgeError(ScorerError):
    """A judge call that produced no verdict; ``judge`` names the configured judge."""

    #: The ``outcome`` label of ``agent_quality_judge_calls_total`` for this error.
    outcome = "failed"

    def __init__(self, message: str, *, judge: str, kind: str | None = None) -> None:
        self.judge = judge
        super().__init__(f"judge {judge}: {message}", kind=kind or self.outcome)


class JudgeFailed(JudgeError):
    """The endpoint failed (after retries), refused the request, or answered garbage."""


class BreakerOpen(JudgeError):
    """The circuit breaker is open: the endpoint is failing and is not being called."""

    outcome = "breaker_open"


class OverBudget(JudgeError):
    """Today's budget for this judge is spent: a drop, counted as such, not a failure."""

    outcome = "over_budget"


class InvalidVerdict(JudgeError):
    """The judge answered, but not with a usable score (prose, bad JSON, off the scale)."""

    outcome = "invalid_output"
