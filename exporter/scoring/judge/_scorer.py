"""The first-tier judge: a ``Scorer`` of type ``llm_judge``."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.metrics import Metrics
from exporter.model import Conversation
from exporter.scoring.judge._errors import JudgeError, OverBudget
from exporter.scoring.judge._grader import Grader
from exporter.scoring.judge._verdict import Verdict
from exporter.types import ScoreResult

__all__ = ["JudgeScorer"]


class JudgeScorer:
    """Scores ``dimensions`` of each conversation with an LLM judge.

    A failed or unparseable verdict raises (the pipeline counts a scorer error) rather than
    return a partial or guessed score. A spent budget is no error: the conversation goes
    unjudged and is counted as ``dropped{reason="judge_budget"}``.
    """

    def __init__(
        self, *, name: str, grader: Grader, dimensions: Sequence[str], metrics: Metrics
    ) -> None:
        self.name = name
        self.grader = grader
        self.dimensions = tuple(dimensions)
        self._metrics = metrics

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return the judge's scores and reasons; raise ``JudgeError`` when it gave none."""
        results = await self.grader.grade(conversation, self.dimensions)
        scores, reasons, failures = {}, {}, []
        skipped = False
        for dimension, result in results.items():
            if isinstance(result, Verdict):
                scores[dimension] = result.score
                reasons[dimension] = result.reason
            elif isinstance(result, OverBudget):
                skipped = True
            else:
                failures.append(result)
        if skipped:
            self._metrics.dropped.labels("judge_budget").inc()
        if failures:
            raise _first(failures)
        return ScoreResult(scores=scores, explanations=reasons)

    async def aclose(self) -> None:
        """Close the judge's connection pool."""
        await self.grader.client.aclose()


def _first(failures: Sequence[JudgeError]) -> JudgeError:
    """Return the error to raise; its message says how many dimensions failed."""
    error = failures[0]
    if len(failures) > 1:
        error.add_note(f"{len(failures) - 1} more dimension(s) failed too")
    return error
