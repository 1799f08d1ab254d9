"""The second tier: another judge re-scores bad results before anything pages on them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from exporter.config.model import Dimension
from exporter.logs import FailureLog
from exporter.metrics import Metrics
from exporter.scoring.judge._errors import JudgeFailed, OverBudget
from exporter.scoring.judge._grader import Grader
from exporter.scoring.judge._verdict import Verdict
from exporter.types import Evaluation, ScoreResult

__all__ = ["CONFIRMED_FLAG", "JudgeConfirmer"]

log = logging.getLogger(__name__)

#: Raised when the second judge agrees a conversation is bad (the dataset selects on it).
CONFIRMED_FLAG = "confirmed_bad"
#: Seconds between two log lines about one kind of failure of the judge (the counters get all).
FAILURE_LOG_INTERVAL = 60.0


class JudgeConfirmer:
    """Re-scores an evaluation's bad dimensions (or all, when a chosen flag is raised).

    Each re-scored dimension counts one ``agent_quality_judge_verdicts_total`` verdict:
    ``confirmed`` (the second judge also finds it bad), ``rejected`` (a bad first score of it
    joins ``evaluation.overturned``), ``error`` or ``skipped`` (budget spent). Where both
    judges scored, ``agent_quality_judge_score_difference`` records how far apart they were.
    The second judge's scores are returned: the pipeline records them in the score histogram
    instead of the first judge's, so its false alarms do not page. Nothing here raises: every
    failure is a counted verdict (and keeps the first score), and logged as the first-tier
    scorers' failures are: the first of each kind with the judge's answer, then throttled.
    """

    name = "confirmation"

    def __init__(
        self,
        *,
        grader: Grader,
        dimensions: Mapping[str, Dimension],
        flags: frozenset[str],
        metrics: Metrics,
        deadline: float | None = None,
    ) -> None:
        self.grader = grader
        self._dimensions = dict(dimensions)
        self._flags = flags
        self._metrics = metrics
        self._deadline = deadline
        self._failures = FailureLog(log, interval=FAILURE_LOG_INTERVAL)

    def targets(self, evaluation: Evaluation) -> list[str]:
        """Return the dimensions to re-score: all on a chosen flag, else the bad ones."""
        if not self._flags.isdisjoint(evaluation.flags):
            return list(self._dimensions)
        scores = evaluation.scores
        return [
            name
            for name, dimension in self._dimensions.items()
            if name in scores and dimension.is_bad(scores[name])
        ]

    async def confirm(self, evaluation: Evaluation) -> ScoreResult | None:
        """Return ``confirmed_bad`` and the second judge's reasons, or None if nothing is bad."""
        targets = self.targets(evaluation)
        if not targets:
            return None
        try:
            async with asyncio.timeout(self._deadline):
                results = await self.grader.grade(evaluation.conversation, targets)
        except TimeoutError:
            # Ours fires before the pipeline's, so a slow judge is a counted verdict too.
            late = JudgeFailed(
                f"no verdict within {self._deadline:g}s",
                judge=self.grader.client.name,
                kind="timeout",
            )
            results = dict.fromkeys(targets, late)
        judge = self.grader.client.name
        confirmed, skipped, reasons = False, False, {}
        scores: dict[str, float] = {}
        for name, result in results.items():
            dimension = self._dimensions[name]
            if isinstance(result, Verdict):
                bad = dimension.is_bad(result.score)
                confirmed |= bad
                verdict = "confirmed" if bad else "rejected"
                reasons[f"{name}:confirmation"] = result.reason
                first = evaluation.scores.get(name)
                if first is not None:
                    scores[name] = result.score
                if not bad and first is not None and dimension.is_bad(first):
                    evaluation.overturned.add(name)  # the dataset does not count it as bad
                if first is not None:
                    span = dimension.scale_max - dimension.scale_min
                    self._metrics.judge_score_difference.labels(name, judge).observe(
                        abs(result.score - first) / span
                    )
            elif isinstance(result, OverBudget):
                skipped, verdict = True, "skipped"
            else:
                verdict = "error"
                evaluation.errors[f"{self.name}:{name}"] = str(result)
                where = f" on {evaluation.conversation.id!r} ({name})"
                self._failures.failed(f"confirmation judge {judge}", result, where=where)
            self._metrics.judge_verdicts.labels(evaluation.agent, name, judge, verdict).inc()
        if skipped:
            self._metrics.dropped.labels("judge_budget").inc()
        flags = (CONFIRMED_FLAG,) if confirmed else ()
        return ScoreResult(scores=scores, flags=flags, explanations=reasons)

    async def aclose(self) -> None:
        """Close the judge's connection pool."""
        await self.grader.client.aclose()
