"""Ask one judge for verdicts on a conversation: one request per dimension, concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from exporter.metrics import Metrics
from exporter.model import Conversation
from exporter.scoring.judge._client import JudgeClient
from exporter.scoring.judge._errors import JudgeError, OverBudget
from exporter.scoring.judge._rubrics import Rubric, messages_for
from exporter.scoring.judge._transcript import render_transcript
from exporter.scoring.judge._verdict import Verdict, parse_verdict

__all__ = ["Grader"]


class Grader:
    """Grades conversations with one judge client and the rubrics of its dimensions."""

    def __init__(
        self,
        *,
        client: JudgeClient,
        rubrics: Mapping[str, Rubric],
        metrics: Metrics,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.client = client
        self.rubrics = dict(rubrics)
        self._metrics = metrics
        self._redact = redact if client.config.redact else None

    async def grade(
        self, conversation: Conversation, dimensions: Sequence[str]
    ) -> dict[str, Verdict | JudgeError]:
        """Return a verdict or the error that prevented one, for each of ``dimensions``."""
        if not self.client.budget.allows():
            # Checked here too so an over-budget day skips rendering and redacting.
            limit = self.client.budget.limit or 0.0
            error = OverBudget(f"today's budget of {limit:g} USD is spent", judge=self.client.name)
            for _ in dimensions:
                self._count(error.outcome, error)
            return dict.fromkeys(dimensions, error)
        transcript = render_transcript(
            conversation, max_chars=self.client.config.max_input_chars, redact=self._redact
        )
        asks = (self._one(self.rubrics[d], transcript) for d in dimensions)
        results = await asyncio.gather(*asks)
        return dict(zip(dimensions, results, strict=True))

    async def _one(self, rubric: Rubric, transcript: str) -> Verdict | JudgeError:
        try:
            completion = await self.client.complete(messages_for(rubric, transcript))
            verdict = parse_verdict(completion.content, rubric=rubric, judge=self.client.name)
        except JudgeError as error:
            self._count(error.outcome, error)
            return error
        self._count("ok")
        return verdict

    def _count(self, outcome: str, error: JudgeError | None = None) -> None:
        self._metrics.judge_calls.labels(self.client.name, outcome).inc()
        self.client.health.record(outcome, error)
