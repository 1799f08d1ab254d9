"""The scoring pipeline: concurrency, timeouts, errors, score validation, shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.config import Config
from exporter.metrics import Metrics
from exporter.model import Conversation, decode_conversation
from exporter.pipeline import Pipeline
from exporter.types import Evaluation, ScoreResult
from tests.conftest import conversation


def make(document: dict[str, Any] | None = None) -> Conversation:
    return decode_conversation(json.dumps(document or conversation()).encode())


class Fixed:
    """Returns fixed scores after an optional delay, or raises."""

    def __init__(
        self, name: str, scores: dict[str, float], *, delay: float = 0, fail: bool = False
    ) -> None:
        self.name = name
        self.scores = scores
        self.delay = delay
        self.fail = fail
        self.calls = 0

    async def score(self, conversation: Conversation) -> ScoreResult:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("broken scorer")
        return ScoreResult(scores=self.scores, flags=("seen",))


class InlineFixed(Fixed):
    inline = True


class TextFree(Fixed):
    """A scorer that says it needs no user or assistant text (tool outcomes, signals)."""

    needs_text = False


class Silent(TextFree):
    """Needs no text and has nothing to say (tool_success on a conversation without tools)."""

    async def score(self, conversation: Conversation) -> ScoreResult:
        self.calls += 1
        return ScoreResult()


class Confirming:
    """A confirmer that records what it was asked to confirm."""

    name = "confirming"

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def confirm(self, evaluation: Evaluation) -> ScoreResult | None:
        self.seen.append(evaluation.conversation.id)
        return None


#: What an agent traced without message content leaves: a tool call and its failed result.
CONTENT_LESS = conversation(
    id="no-text",
    messages=[
        {"role": "system", "content": "You are the support agent."},
        {"role": "user", "content": "  "},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "name": "lookup"}]},
        {"role": "tool", "tool_call_id": "t1", "content": "HTTP 503", "error": True},
    ],
)


class Meeting:
    """Waits at ``barrier`` until every scorer sharing it has started, then scores."""

    def __init__(self, name: str, barrier: asyncio.Barrier) -> None:
        self.name = name
        self.barrier = barrier

    async def score(self, conversation: Conversation) -> ScoreResult:
        await self.barrier.wait()
        return ScoreResult(scores={})


class Collecting:
    """An EvaluationSink keeping what it is handed."""

    def __init__(self) -> None:
        self.evaluations: list[Evaluation] = []
        self.closed = False

    async def handle(self, evaluation: Evaluation) -> None:
        self.evaluations.append(evaluation)

    async def aclose(self) -> None:
        self.closed = True


def pipeline_for(
    config: Config, scorers: list[Any], sinks: list[Any] | None = None
) -> tuple[Pipeline, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = Metrics(config, registry)
    return Pipeline(config=config, metrics=metrics, scorers=scorers, sinks=sinks or []), registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


class TestScoring:
    async def test_awaiting_scorers_run_concurrently(
        self, make_config: Callable[..., Config]
    ) -> None:
        """Three scorers of one conversation wait for each other: only together can they finish.

        Run one after the other, the first would wait for the others until its timeout.
        """
        config = make_config()
        barrier = asyncio.Barrier(3)
        scorers = [Meeting(f"s{i}", barrier) for i in range(3)]
        pipeline, registry = pipeline_for(config, scorers)
        await pipeline.start()
        assert pipeline.submit(make(), agent="support-bot", reason="base")
        assert await pipeline.drain(60)
        await pipeline.stop()
        for scorer in scorers:
            labels = {"agent": "support-bot", "scorer": scorer.name, "outcome": "ok"}
            assert value(registry, "agent_quality_evaluations_total", **labels) == 1

    async def test_timeout_and_error_are_counted_and_workers_survive(
        self, make_config: Callable[..., Config]
    ) -> None:
        """A slow scorer times out, a broken one errors; both are counted, scoring goes on."""
        config = make_config(pipeline={"scorer_timeout": "50ms", "workers": 1})
        good = Fixed("good", {"task_completion": 0.8})
        scorers = [good, Fixed("slow", {}, delay=5), Fixed("broken", {}, fail=True)]
        pipeline, registry = pipeline_for(config, scorers)
        await pipeline.start()
        for i in range(3):
            pipeline.submit(make(conversation(id=f"c{i}")), agent="support-bot", reason="base")
        assert await pipeline.drain(60)
        evaluations = "agent_quality_evaluations_total"
        agent = {"agent": "support-bot"}
        assert value(registry, evaluations, **agent, scorer="slow", outcome="timeout") == 3
        assert value(registry, evaluations, **agent, scorer="broken", outcome="error") == 3
        assert value(registry, evaluations, **agent, scorer="good", outcome="ok") == 3
        assert value(registry, "agent_quality_scored_total", **agent) == 3
        labels = {**agent, "dimension": "task_completion"}
        assert value(registry, "agent_quality_score_sum", **labels) == pytest.approx(3 * 0.8)
        squares = value(registry, "agent_quality_score_squares_total", **labels)
        assert squares == pytest.approx(3 * 0.8**2)
        # Only the scorer that returned raised the flag: once per conversation.
        assert value(registry, "agent_quality_flags_total", **agent, flag="seen") == 3
        assert value(registry, "agent_quality_scorer_duration_seconds_count", scorer="slow") == 3
        await pipeline.stop()

    async def test_inline_scorer_errors_are_counted(
        self, make_config: Callable[..., Config]
    ) -> None:
        """An inline scorer that raises is an `error` outcome, not a dead worker."""
        pipeline, registry = pipeline_for(
            make_config(pipeline={"workers": 1}), [InlineFixed("inl", {}, fail=True)]
        )
        await pipeline.start()
        for i in range(2):
            pipeline.submit(make(conversation(id=f"i{i}")), agent="other", reason="base")
        assert await pipeline.drain(60)
        labels = {"agent": "other", "scorer": "inl", "outcome": "error"}
        assert value(registry, "agent_quality_evaluations_total", **labels) == 2
        assert pipeline.running
        await pipeline.stop()

    async def test_invalid_scores_are_ignored_and_counted(
        self, make_config: Callable[..., Config]
    ) -> None:
        """Undeclared, off-scale, non-finite and duplicate scores never reach the histogram."""
        first = Fixed("first", {"coherence": 4.0, "nope": 1.0, "task_completion": 7.0})
        second = Fixed("second", {"coherence": 1.0, "tool_success": float("nan")})
        pipeline, registry = pipeline_for(make_config(), [first, second])
        await pipeline.start()
        pipeline.submit(make(), agent="support-bot", reason="base")
        assert await pipeline.drain(60)
        ignored = "agent_quality_ignored_scores_total"
        assert value(registry, ignored, reason="undeclared_dimension") == 1
        assert value(registry, ignored, reason="off_scale") == 1
        assert value(registry, ignored, reason="not_finite") == 1
        assert value(registry, ignored, reason="duplicate") == 1
        labels = {"agent": "support-bot", "dimension": "coherence"}
        assert value(registry, "agent_quality_score_sum", **labels) == 4.0  # the first wins
        await pipeline.stop()

    async def test_sinks_get_the_evaluation_and_are_closed(
        self, make_config: Callable[..., Config]
    ) -> None:
        """Sinks see scores, flags and the sampling reason; stop() closes them."""
        sink = Collecting()
        pipeline, _ = pipeline_for(make_config(), [Fixed("f", {"coherence": 2.0})], [sink])
        await pipeline.start()
        pipeline.submit(make(), agent="support-bot", reason="boost")
        assert await pipeline.drain(60)
        await pipeline.stop()
        (evaluation,) = sink.evaluations
        assert evaluation.scores == {"coherence": 2.0}
        assert evaluation.flags == ["seen"]
        assert evaluation.reason == "boost"
        assert sink.closed


class TestQueue:
    async def test_full_queue_refuses_without_waiting(
        self, make_config: Callable[..., Config]
    ) -> None:
        """submit() returns False at once when the queue is full."""
        pipeline, registry = pipeline_for(make_config(pipeline={"queue_size": 2}), [])
        results = [pipeline.submit(make(), agent="other", reason="base") for _ in range(3)]
        assert results == [True, True, False]
        assert value(registry, "agent_quality_queue_depth") == 2
        assert value(registry, "agent_quality_queue_capacity") == 2

    async def test_stop_counts_unscored_as_shutdown_drops(
        self, make_config: Callable[..., Config]
    ) -> None:
        """Whatever is queued or in flight when the grace ends is dropped{reason=shutdown}."""
        config = make_config(pipeline={"workers": 1, "queue_size": 50})
        pipeline, registry = pipeline_for(config, [Fixed("slow", {}, delay=0.05)])
        await pipeline.start()
        for i in range(20):
            pipeline.submit(make(conversation(id=f"q{i}")), agent="other", reason="base")
        await pipeline.stop(grace=0.12)
        scored = value(registry, "agent_quality_scored_total", agent="other")
        dropped = value(registry, "agent_quality_dropped_total", reason="shutdown")
        assert 0 < scored < 20
        assert scored + dropped == 20
        assert not pipeline.submit(make(), agent="other", reason="base")


class TestWithoutText:
    """Conversations without user or assistant text (content capture off upstream)."""

    async def test_only_scorers_that_need_no_text_run(
        self, make_config: Callable[..., Config]
    ) -> None:
        """Text checks and confirmers skip it; scorers with needs_text = False score it."""
        text_check = InlineFixed("final", {"final_answer": 0.0})
        judge = Fixed("judge", {"coherence": 1.0})
        tools = TextFree("tools", {"tool_success": 0.0})
        registry = CollectorRegistry()
        confirmer = Confirming()
        pipeline = Pipeline(
            config=make_config(),
            metrics=Metrics(make_config(), registry),
            scorers=[text_check, judge, tools],
            confirmers=[confirmer],
        )
        assert pipeline.scores_without_text
        await pipeline.start()
        pipeline.submit(make(CONTENT_LESS), agent="support-bot", reason="base")
        pipeline.submit(make(), agent="support-bot", reason="base")
        assert await pipeline.drain(60)
        await pipeline.stop()
        assert (text_check.calls, judge.calls, tools.calls) == (1, 1, 2)
        assert confirmer.seen == ["c-7f3a"]
        final = {"agent": "support-bot", "dimension": "final_answer"}
        assert value(registry, "agent_quality_score_count", **final) == 1
        assert value(registry, "agent_quality_scored_total", agent="support-bot") == 2

    async def test_nothing_said_is_a_no_content_drop(
        self, make_config: Callable[..., Config]
    ) -> None:
        """When the scorers that need no text say nothing either, it is dropped, not scored."""
        silent = Silent("silent", {})
        pipeline, registry = pipeline_for(make_config(), [silent])
        await pipeline.start()
        pipeline.submit(make(CONTENT_LESS), agent="support-bot", reason="base")
        assert await pipeline.drain(60)
        await pipeline.stop()
        assert silent.calls == 1
        assert value(registry, "agent_quality_dropped_total", reason="no_content") == 1
        assert value(registry, "agent_quality_scored_total", agent="support-bot") == 0
