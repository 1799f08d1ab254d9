"""Two tiers through the real pipeline: bad verdicts reach a second judge, good ones do not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from exporter.config import Config, parse_config
from exporter.metrics import Metrics
from exporter.model import Conversation
from exporter.pipeline import Pipeline
from exporter.scoring import build_scorers
from exporter.scoring.judge import CONFIRMED_FLAG, JudgeConfirmer, build_confirmers
from exporter.types import Evaluation
from tests.conftest import conversation
from tests.support.fake_openai import FakeOpenAI

FIRST, SECOND = "judge-a", "judge-b"


def two_judges_document(fake: FakeOpenAI, **confirmation: Any) -> dict[str, Any]:
    """Return a config document: `first` scores coherence, `second` (another model) confirms."""
    judge = {"base_url": fake.base_url, "backoff": "10ms", "retries": 0}
    return {
        "judges": {
            "first": {**judge, "model": FIRST},
            "second": {**judge, "model": SECOND},
        },
        "scorers": [
            {"type": "refusal"},
            {"type": "llm_judge", "name": "judge", "judge": "first", "dimension": "coherence"},
        ],
        "confirmation": {"judge": "second", **confirmation},
    }


def two_judges(fake: FakeOpenAI, **confirmation: Any) -> Config:
    """Return the config of ``two_judges_document``."""
    return parse_config(two_judges_document(fake, **confirmation))


def talk(text: str, answer: str = "It ships tomorrow.") -> Conversation:
    document = conversation()
    document["messages"][0]["content"] = text
    document["messages"][-1]["content"] = answer
    return msgspec.json.decode(json.dumps(document).encode(), type=Conversation)


class Daemon:
    """The real scoring pipeline with the configured scorers and confirmer."""

    def __init__(self, config: Config) -> None:
        self.metrics = Metrics(config, CollectorRegistry())
        self.evaluations: list[Evaluation] = []
        self.pipeline = Pipeline(
            config=config,
            metrics=self.metrics,
            scorers=build_scorers(config, metrics=self.metrics),
            confirmers=build_confirmers(config, metrics=self.metrics),
            sinks=[self],  # captures every finished evaluation
        )

    async def handle(self, evaluation: Evaluation) -> None:
        self.evaluations.append(evaluation)

    async def score(self, conversation: Conversation) -> Evaluation:
        assert self.pipeline.submit(conversation, agent="support-bot", reason="base")
        assert await self.pipeline.drain(60)
        return self.evaluations[-1]

    def value(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        assert value is not None, f"{name}{labels} is not exported"
        return value

    def verdicts(self, verdict: str) -> float:
        return self.value(
            "agent_quality_judge_verdicts_total",
            agent="support-bot",
            dimension="coherence",
            judge="second",
            verdict=verdict,
        )


@pytest.fixture
async def daemon(fake: FakeOpenAI) -> AsyncIterator[Daemon]:
    running = Daemon(two_judges(fake, flags=["refusal"]))
    await running.pipeline.start()
    yield running
    await running.pipeline.stop()


class TestTwoTiers:
    async def test_good_conversation_stays_with_the_first_judge(
        self, fake: FakeOpenAI, daemon: Daemon
    ) -> None:
        """A coherence of 5 is not bad: the second judge is never asked."""
        evaluation = await daemon.score(talk("Where is my order? judge-score=5"))
        assert evaluation.scores["coherence"] == 5.0
        assert len(fake.requests(FIRST)) == 1
        assert fake.requests(SECOND) == []
        for verdict in ("confirmed", "rejected", "error", "skipped"):
            assert daemon.verdicts(verdict) == 0
        assert CONFIRMED_FLAG not in evaluation.flags

    async def test_bad_score_is_confirmed_by_the_second_judge(
        self, fake: FakeOpenAI, daemon: Daemon
    ) -> None:
        """A coherence of 1 goes to the second judge; its agreement is counted and flagged."""
        evaluation = await daemon.score(talk("Where is my order? judge-score=1"))
        assert len(fake.requests(SECOND)) == 1
        assert daemon.verdicts("confirmed") == 1
        assert CONFIRMED_FLAG in evaluation.flags
        assert evaluation.overturned == set()
        assert evaluation.explanations["coherence:confirmation"] == f"fake verdict from {SECOND}"
        flagged = {"agent": "support-bot", "flag": CONFIRMED_FLAG}
        assert daemon.value("agent_quality_flags_total", **flagged) == 1
        difference = {"dimension": "coherence", "judge": "second"}
        assert daemon.value("agent_quality_judge_score_difference_count", **difference) == 1
        assert daemon.value("agent_quality_judge_score_difference_sum", **difference) == 0
        # One score per conversation in the histogram: the confirmed one, no duplicate.
        series = {"agent": "support-bot", "dimension": "coherence"}
        assert daemon.value("agent_quality_score_count", **series) == 1
        assert daemon.value("agent_quality_score_sum", **series) == 1

    async def test_second_judge_can_reject(self, fake: FakeOpenAI, daemon: Daemon) -> None:
        """When the second judge finds it fine the verdict is rejected, the bad score overturned."""
        evaluation = await daemon.score(
            talk(f"Where is my order? judge-score=1 judge-score[{SECOND}]=4")
        )
        assert daemon.verdicts("rejected") == 1
        assert daemon.verdicts("confirmed") == 0
        assert CONFIRMED_FLAG not in evaluation.flags
        assert evaluation.overturned == {"coherence"}
        difference = {"dimension": "coherence", "judge": "second"}
        assert daemon.value("agent_quality_judge_score_difference_sum", **difference) == 0.75

    async def test_overturned_score_is_what_the_histogram_records(
        self, fake: FakeOpenAI, daemon: Daemon
    ) -> None:
        """A bad first score re-scored as fine is recorded as fine: it cannot page anyone."""
        evaluation = await daemon.score(
            talk(f"Where is my order? judge-score=1 judge-score[{SECOND}]=4")
        )
        assert evaluation.scores["coherence"] == 1.0  # the first tier's, for the dataset
        assert evaluation.final_scores["coherence"] == 4.0
        series = {"agent": "support-bot", "dimension": "coherence"}
        assert daemon.value("agent_quality_score_count", **series) == 1
        assert daemon.value("agent_quality_score_sum", **series) == 4
        assert daemon.value("agent_quality_score_squares_total", **series) == 16
        # Not past coherence's bad threshold (2): the bad-share and burn rules see a good one.
        assert daemon.value("agent_quality_score_bucket", le="2.0", **series) == 0
        assert daemon.verdicts("rejected") == 1  # the disagreement is still counted

    async def test_failed_confirmation_keeps_the_first_score(
        self, fake: FakeOpenAI, daemon: Daemon
    ) -> None:
        """Without a verdict from the second judge, the histogram keeps the first score."""
        fake.behave(SECOND, {"status": 500})
        await daemon.score(talk("Where is my order? judge-score=1"))
        series = {"agent": "support-bot", "dimension": "coherence"}
        assert daemon.value("agent_quality_score_sum", **series) == 1

    async def test_deterministic_flag_calls_for_a_second_opinion(
        self, fake: FakeOpenAI, daemon: Daemon
    ) -> None:
        """A refusal (a chosen deterministic flag) reaches the second judge despite a good score."""
        evaluation = await daemon.score(
            talk(
                f"Where is my order? judge-score=4 judge-score[{SECOND}]=2",
                answer="I'm sorry, but I can't help with that.",
            )
        )
        assert "refusal" in evaluation.flags
        assert len(fake.requests(SECOND)) == 1
        assert daemon.verdicts("confirmed") == 1
        assert CONFIRMED_FLAG in evaluation.flags

    async def test_failing_second_judge_is_a_counted_verdict(
        self, fake: FakeOpenAI, daemon: Daemon
    ) -> None:
        """A second judge answering 500 yields verdict `error`; the evaluation still finishes."""
        fake.behave(SECOND, {"status": 500})
        evaluation = await daemon.score(talk("Where is my order? judge-score=1"))
        assert daemon.verdicts("error") == 1
        assert evaluation.scores["coherence"] == 1.0
        assert CONFIRMED_FLAG not in evaluation.flags
        assert evaluation.overturned == set()  # no verdict is no overturn
        assert "HTTP 500" in evaluation.errors["confirmation:coherence"]

    async def test_failing_first_judge_is_a_counted_scorer_error(
        self, fake: FakeOpenAI, daemon: Daemon
    ) -> None:
        """Prose from the first judge counts `evaluations_total{outcome="error"}`, no score."""
        fake.behave(FIRST, {"content": "Looks fine to me."})
        evaluation = await daemon.score(talk("Where is my order?"))
        assert "coherence" not in evaluation.scores
        labels = {"agent": "support-bot", "scorer": "judge"}
        assert daemon.value("agent_quality_evaluations_total", outcome="error", **labels) == 1
        assert daemon.value("agent_quality_evaluations_total", outcome="ok", **labels) == 0
        assert fake.requests(SECOND) == []


class TestConfirmerAlone:
    async def test_budget_spent_is_skipped_and_dropped(self, fake: FakeOpenAI) -> None:
        """With the second judge's budget spent, the verdict is `skipped` and a drop counted."""
        config = two_judges(fake)
        metrics = Metrics(config, CollectorRegistry())
        (confirmer,) = build_confirmers(config, metrics=metrics)
        assert isinstance(confirmer, JudgeConfirmer)
        confirmer.grader.client.budget.limit = 0.0
        evaluation = Evaluation(talk("judge-score=1"), "support-bot", "base", {"coherence": 1.0})
        try:
            result = await confirmer.confirm(evaluation)
        finally:
            await confirmer.aclose()
        assert result is not None
        assert result.flags == ()
        assert fake.requests(SECOND) == []
        labels = {"agent": "support-bot", "dimension": "coherence", "judge": "second"}
        verdicts = "agent_quality_judge_verdicts_total"
        assert metrics.registry.get_sample_value(verdicts, {**labels, "verdict": "skipped"}) == 1
        dropped = {"reason": "judge_budget"}
        assert metrics.registry.get_sample_value("agent_quality_dropped_total", dropped) == 1

    async def test_slow_second_judge_is_counted_before_the_pipeline_cancels(
        self, fake: FakeOpenAI
    ) -> None:
        """A second judge slower than the scorer timeout yields a counted `error` verdict.

        Proven by what happened, not by the clock: the confirmer's own deadline (0.9 of the
        scorer timeout) fires while the request is still out, so the pipeline, whose timeout
        is the whole of it, never cuts the confirmer short and records no `timeout`.
        """
        fake.behave(SECOND, {"delay": 30})
        document = {**two_judges_document(fake), "pipeline": {"scorer_timeout": "2s"}}
        daemon = Daemon(parse_config(document))
        await daemon.pipeline.start()
        try:
            evaluation = await daemon.score(talk("Where is my order? judge-score=1"))
        finally:
            await daemon.pipeline.stop()
        assert len(fake.requests(SECOND)) == 1  # asked, and it never answered
        assert daemon.verdicts("error") == 1
        assert evaluation.errors["confirmation:coherence"] == (
            f"judge second: no verdict within {0.9 * 2:g}s"
        )
        assert "confirmation" not in evaluation.errors  # the pipeline's own timeout: none
        assert evaluation.scores["coherence"] == 1.0  # the first judge's score stays

    def test_confirmation_dimensions_default_to_the_judged_ones(self, fake: FakeOpenAI) -> None:
        """Without a list, the second judge re-scores what the llm_judge scorers score."""
        config = two_judges(fake)
        assert config.confirmation.dimensions == ("coherence",)

    def test_no_confirmation_judge_builds_nothing(self) -> None:
        """The default config has no second tier."""
        config = parse_config({})
        assert build_confirmers(config, metrics=Metrics(config, CollectorRegistry())) == []
