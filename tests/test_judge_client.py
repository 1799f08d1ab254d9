"""The tier-1 judge against a real OpenAI-compatible server process on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from exporter.config import Config, parse_config, resolve_secrets
from exporter.metrics import Metrics
from exporter.model import Conversation
from exporter.scoring import build_scorers
from exporter.scoring.judge import (
    BreakerOpen,
    Grader,
    InvalidVerdict,
    JudgeClient,
    JudgeFailed,
    JudgeScorer,
    make_judge_scorer,
    shipped_rubrics,
)
from exporter.types import ScoreResult
from tests.conftest import conversation
from tests.support.fake_openai import FakeOpenAI, running_fake_openai

API_KEY = "sk-fake-test-key-4242"
MODEL = "judge-a"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    with running_fake_openai(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    fake_server.reset()
    monkeypatch.setenv("FAKE_OPENAI_KEY", API_KEY)
    return fake_server


def judge_config(fake: FakeOpenAI, **judge: Any) -> Config:
    """Return a config with judge `primary` on the fake server scoring coherence, key read."""
    settings = {
        "base_url": fake.base_url,
        "model": MODEL,
        "api_key_env": "FAKE_OPENAI_KEY",
        "backoff": "10ms",
        "max_backoff": "50ms",
        **judge,
    }
    return resolve_secrets(
        parse_config(
            {
                "judges": {"primary": settings},
                "scorers": [{"type": "llm_judge", "judge": "primary", "dimension": "coherence"}],
            }
        )
    )


def decode(document: dict[str, Any]) -> Conversation:
    return msgspec.json.decode(json.dumps(document).encode(), type=Conversation)


def talk(text: str = "Where is my order? judge-score=4") -> Conversation:
    """Return a conversation whose user message carries ``text`` (and the fake's score marker)."""
    document = conversation()
    document["messages"][0]["content"] = text
    return decode(document)


class Judge:
    """A scorer on the fake server plus its metrics, for one test."""

    def __init__(self, scorer: JudgeScorer, metrics: Metrics) -> None:
        self.scorer = scorer
        self.metrics = metrics
        self.client = scorer.grader.client

    async def score(self, text: str = "Where is my order? judge-score=4") -> ScoreResult:
        return await self.scorer.score(talk(text))

    def value(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"judge": "primary", **labels})
        assert value is not None, f"{name}{labels} is not exported"
        return value


@pytest.fixture
async def make_judge(fake: FakeOpenAI) -> AsyncIterator[Callable[..., Judge]]:
    """Build judges on the fake server; close their pools after the test."""
    made: list[Judge] = []

    def make(*, client_options: dict[str, Any] | None = None, **judge: Any) -> Judge:
        config = judge_config(fake, **judge)
        metrics = Metrics(config, CollectorRegistry())
        if client_options is None:
            scorer = make_judge_scorer(config.scorers[0], config, metrics=metrics)
        else:
            client = JudgeClient(config=config.judges["primary"], metrics=metrics, **client_options)
            grader = Grader(
                client=client,
                rubrics={"coherence": shipped_rubrics()["coherence"]},
                metrics=metrics,
            )
            scorer = JudgeScorer(
                name="llm_judge", grader=grader, dimensions=["coherence"], metrics=metrics
            )
        made.append(Judge(scorer, metrics))
        return made[-1]

    yield make
    for judge in made:
        await judge.scorer.aclose()


class TestWireFormat:
    async def test_scores_through_a_chat_completion(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """One OpenAI-format request per dimension; the verdict becomes the score and reason."""
        judge = make_judge(headers={"X-Team": "quality"}, query={"api-version": "2024-10-21"})
        result = await judge.score()
        assert result.scores == {"coherence": 4.0}
        assert result.explanations == {"coherence": f"fake verdict from {MODEL}"}
        (request,) = fake.requests()
        body = request["body"]
        assert body["model"] == MODEL
        assert body["response_format"] == {"type": "json_object"}
        assert (body["temperature"], body["max_tokens"]) == (0, 300)
        system, user = body["messages"]
        assert (system["role"], user["role"]) == ("system", "user")
        assert "COHERENCE" in system["content"]
        assert "[assistant] It ships tomorrow." in user["content"]
        assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
        assert request["headers"]["X-Team"] == "quality"
        assert request["query"] == {"api-version": "2024-10-21"}
        assert judge.value("agent_quality_judge_calls_total", outcome="ok") == 1
        assert judge.value("agent_quality_judge_requests_total", outcome="ok") == 1

    async def test_tokens_and_cost_from_usage(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """Usage blocks become token counters and, with the price table, USD."""
        fake.behave(MODEL, {"usage": {"prompt_tokens": 1000, "completion_tokens": 200}})
        judge = make_judge(price={"input_per_million": 2.0, "output_per_million": 8.0})
        await judge.score()
        await judge.score()
        assert judge.value("agent_quality_judge_tokens_total", direction="input") == 2000
        assert judge.value("agent_quality_judge_tokens_total", direction="output") == 400
        assert judge.value("agent_quality_judge_cost_usd_total") == pytest.approx(0.0072)

    async def test_missing_usage_is_estimated(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """Without a usage block tokens are estimated, so cost and budget still count."""
        fake.behave(MODEL, {"usage": None})
        judge = make_judge(price={"input_per_million": 1.0, "output_per_million": 1.0})
        await judge.score()
        assert judge.value("agent_quality_judge_tokens_total", direction="input") > 100
        assert judge.value("agent_quality_judge_cost_usd_total") > 0

    async def test_json_mode_dropped_where_unsupported(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """An endpoint refusing response_format is asked again, and from then on, without it."""
        fake.behave(MODEL, {"reject_response_format": True})
        judge = make_judge()
        assert (await judge.score()).scores == {"coherence": 4.0}
        assert (await judge.score()).scores == {"coherence": 4.0}
        sent = ["response_format" in r["body"] for r in fake.requests()]
        assert sent == [True, False, False]
        assert judge.value("agent_quality_judge_requests_total", outcome="client_error") == 1

    async def test_personal_data_is_redacted_before_sending(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """E-mail addresses in the conversation never reach the judge."""
        judge = make_judge()
        await judge.score("Mail me at jane.doe@example.com please judge-score=4")
        (request,) = fake.requests()
        text = json.dumps(request["body"])
        assert "jane.doe@example.com" not in text
        assert "[EMAIL]" in text

    async def test_redaction_can_be_turned_off(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """With `redact: false` the transcript goes as it is."""
        judge = make_judge(redact=False)
        await judge.score("Mail me at jane.doe@example.com please judge-score=4")
        assert "jane.doe@example.com" in json.dumps(fake.requests()[0]["body"])

    async def test_wrong_key_fails_without_showing_it(
        self,
        fake: FakeOpenAI,
        make_judge: Callable[..., Judge],
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A 401 is a counted failure; the key is in no message or log line."""
        monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-wrong-key-777")
        judge = make_judge()
        with caplog.at_level(logging.DEBUG), pytest.raises(JudgeFailed) as caught:
            await judge.score()
        assert "HTTP 401" in str(caught.value)
        assert "sk-wrong-key-777" not in str(caught.value) + caplog.text
        assert judge.value("agent_quality_judge_calls_total", outcome="failed") == 1
        assert len(fake.requests()) == 1  # a bad key is not retried

    async def test_built_by_build_scorers(self, fake: FakeOpenAI) -> None:
        """`type: llm_judge` builds the judge scorer, counting on the metrics it is given."""
        config = judge_config(fake)
        metrics = Metrics(config, CollectorRegistry())
        (scorer,) = build_scorers(config, metrics=metrics)
        assert isinstance(scorer, JudgeScorer)
        try:
            assert (await scorer.score(talk())).scores == {"coherence": 4.0}
        finally:
            await scorer.aclose()
        assert Judge(scorer, metrics).value("agent_quality_judge_calls_total", outcome="ok") == 1


class TestAnswers:
    async def test_prose_is_a_counted_error(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """Prose instead of JSON raises (a scorer error), is not retried, and never scores."""
        fake.behave(MODEL, {"content": "This conversation is coherent, I'd say a 4."})
        judge = make_judge()
        with pytest.raises(InvalidVerdict, match="not JSON"):
            await judge.score()
        assert len(fake.requests()) == 1
        assert judge.value("agent_quality_judge_calls_total", outcome="invalid_output") == 1
        assert judge.value("agent_quality_judge_requests_total", outcome="ok") == 1

    async def test_code_fences_are_tolerated(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """A JSON verdict wrapped in a Markdown fence is read."""
        fake.behave(MODEL, {"content": '```json\n{"score": 2, "reason": "drifts"}\n```'})
        judge = make_judge()
        assert (await judge.score()).scores == {"coherence": 2.0}

    async def test_score_off_the_scale_is_an_error(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """A 7 on a 1-5 scale is an error, not a clamped 5."""
        fake.behave(MODEL, {"score": 7})
        judge = make_judge()
        with pytest.raises(InvalidVerdict, match=r"outside 1\.\.5"):
            await judge.score()

    async def test_malformed_response_body(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """A 200 whose body is not a chat completion is a counted bad response."""
        fake.behave(MODEL, {"body": '{"choices": [{"message": '})
        judge = make_judge()
        with pytest.raises(JudgeFailed, match="without a chat completion"):
            await judge.score()
        assert judge.value("agent_quality_judge_requests_total", outcome="bad_response") == 1
        assert judge.value("agent_quality_judge_calls_total", outcome="failed") == 1


class TestRetries:
    async def test_429_honours_retry_after(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """After a 429 with Retry-After: 1 the next request comes a second later, and succeeds."""
        fake.behave(MODEL, script=[{"status": 429, "retry_after": 1}])
        judge = make_judge()
        assert (await judge.score()).scores == {"coherence": 4.0}
        first, second = fake.requests()
        assert 1.0 <= second["time"] - first["time"] < 1.5
        assert judge.value("agent_quality_judge_retries_total") == 1
        assert judge.value("agent_quality_judge_requests_total", outcome="rate_limited") == 1

    async def test_retry_after_too_long_gives_up(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """A Retry-After beyond max_retry_after fails now rather than hold a worker."""
        fake.behave(MODEL, {"status": 429, "retry_after": 120})
        judge = make_judge()
        with pytest.raises(JudgeFailed, match="rate limited"):
            await judge.score()
        assert len(fake.requests()) == 1

    async def test_5xx_backs_off_exponentially_with_jitter(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """500 and 503 are retried after doubling, jittered delays, then the answer counts."""
        fake.behave(MODEL, script=[{"status": 500}, {"status": 503}, {"status": 502}])
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        judge = make_judge(
            backoff="100ms",
            max_backoff="10s",
            client_options={"sleep": sleep, "jitter": lambda: 0.5},
        )
        assert (await judge.score()).scores == {"coherence": 4.0}
        assert waits == pytest.approx([0.075, 0.15, 0.3])
        assert judge.value("agent_quality_judge_requests_total", outcome="server_error") == 3
        assert judge.value("agent_quality_judge_retries_total") == 3

    async def test_retries_run_out(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """An endpoint that keeps failing is asked 1 + retries times, then the call fails."""
        fake.behave(MODEL, {"status": 500})
        judge = make_judge(retries=2)
        with pytest.raises(JudgeFailed, match=r"HTTP 500\) \(3 attempts\)"):
            await judge.score()
        assert len(fake.requests()) == 3

    async def test_slow_answers_time_out_and_retry(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """A request slower than the timeout is abandoned, counted and retried.

        The first answer would come after 30 s, far past the test's own timeout: the score can
        only come from the retry, after the first request was given up.
        """
        fake.behave(MODEL, script=[{"delay": 30}])
        judge = make_judge(timeout="200ms")
        assert (await judge.score()).scores == {"coherence": 4.0}
        assert len(fake.requests()) == 2
        assert judge.value("agent_quality_judge_requests_total", outcome="timeout") == 1
        assert judge.value("agent_quality_judge_requests_total", outcome="ok") == 1
        assert judge.value("agent_quality_judge_retries_total") == 1


class TestCircuitBreaker:
    async def test_opens_and_stops_calling(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """After `failures` failed requests the endpoint is not called until the cooldown."""
        fake.behave(MODEL, {"status": 500})
        judge = make_judge(retries=0, breaker={"failures": 3, "cooldown": "1h"})
        for _ in range(3):
            with pytest.raises(JudgeFailed):
                await judge.score()
        assert judge.value("agent_quality_judge_breaker_open") == 1
        assert judge.value("agent_quality_judge_breaker_opened_total") == 1
        for _ in range(5):
            with pytest.raises(BreakerOpen):
                await judge.score()
        assert len(fake.requests()) == 3
        assert judge.value("agent_quality_judge_calls_total", outcome="breaker_open") == 5

    async def test_open_circuit_cuts_retries_short(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """Retries stop as soon as the circuit opens."""
        fake.behave(MODEL, {"status": 503})
        judge = make_judge(retries=5, breaker={"failures": 2, "cooldown": "1h"})
        with pytest.raises(BreakerOpen):
            await judge.score()
        assert len(fake.requests()) == 2

    async def test_a_4xx_on_every_request_opens_it(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """A wrong model name (HTTP 400 from LiteLLM and others) is a broken endpoint too."""
        fake.behave(MODEL, {"status": 400, "error": "Invalid model name passed in model=judge-a"})
        judge = make_judge(breaker={"failures": 3, "cooldown": "1h"})
        for _ in range(3):
            with pytest.raises(JudgeFailed) as caught:
                await judge.score()
            assert caught.value.kind == "HTTP 400"
            assert "Invalid model name passed in model=judge-a" in str(caught.value)
        with pytest.raises(BreakerOpen):
            await judge.score()
        assert len(fake.requests()) == 3  # a 4xx is not retried
        assert judge.value("agent_quality_judge_breaker_open") == 1

    async def test_a_4xx_now_and_then_does_not(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """A 4xx about one request (a content filter) between good answers opens nothing."""
        refused = {"status": 400, "error": "The response was filtered (content_filter)"}
        fake.behave(MODEL, script=[refused, {}, refused, {}, refused, {}, refused])
        judge = make_judge(breaker={"failures": 2, "cooldown": "1h"})
        for attempt in range(7):
            if attempt % 2:
                assert (await judge.score()).scores == {"coherence": 4.0}
            else:
                with pytest.raises(JudgeFailed):
                    await judge.score()
        assert judge.value("agent_quality_judge_breaker_opened_total") == 0

    async def test_closes_after_a_good_trial(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """After the cooldown one trial request goes out; its success closes the circuit."""
        now = [0.0]
        fake.behave(MODEL, script=[{"status": 500}, {"status": 500}, {"status": 500}])
        judge = make_judge(
            retries=0,
            breaker={"failures": 2, "cooldown": "30s"},
            client_options={"monotonic": lambda: now[0]},
        )
        for _ in range(2):
            with pytest.raises(JudgeFailed):
                await judge.score()
        now[0] = 31.0
        with pytest.raises(JudgeFailed):  # the trial fails: open again
            await judge.score()
        assert judge.value("agent_quality_judge_breaker_opened_total") == 2
        with pytest.raises(BreakerOpen):
            await judge.score()
        now[0] = 62.0
        assert (await judge.score()).scores == {"coherence": 4.0}
        assert judge.value("agent_quality_judge_breaker_open") == 0
        assert len(fake.requests()) == 4


class TestConcurrency:
    async def test_cap_limits_requests_in_flight(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """Twelve conversations at once with a cap of 4: never more than 4 requests in flight.

        The server counts what it holds at once: exactly 4 shows the cap is both used and kept.
        """
        fake.behave(MODEL, {"delay": 1})  # long enough for 4 to be in flight on a busy machine
        judge = make_judge(concurrency=4)
        results = await asyncio.gather(*(judge.score() for _ in range(12)))
        assert all(r.scores == {"coherence": 4.0} for r in results)
        assert fake.stats() == {"requests": 12, "max_in_flight": 4}


class TestDailyBudget:
    async def test_stops_for_the_day_and_resumes_after_midnight_utc(
        self, fake: FakeOpenAI, make_judge: Callable[..., Judge]
    ) -> None:
        """Once the day's USD are spent no request goes out; at 00:00 UTC judging resumes."""
        now = [dt.datetime(2026, 11, 26, 22, 0, tzinfo=dt.UTC)]
        fake.behave(MODEL, {"usage": {"prompt_tokens": 1000, "completion_tokens": 0}})
        judge = make_judge(
            price={"input_per_million": 10.0, "output_per_million": 0.0},  # 0.01 USD a call
            daily_budget_usd=0.025,
            client_options={"clock": lambda: now[0]},
        )
        for _ in range(3):
            assert (await judge.score()).scores == {"coherence": 4.0}
        for _ in range(4):
            assert await judge.score() == ScoreResult(scores={}, explanations={})
        assert len(fake.requests()) == 3
        assert judge.value("agent_quality_judge_cost_usd_total") == pytest.approx(0.03)
        value = judge.metrics.registry.get_sample_value(
            "agent_quality_dropped_total", {"reason": "judge_budget"}
        )
        assert value == 4
        assert judge.value("agent_quality_judge_calls_total", outcome="over_budget") == 4
        now[0] = dt.datetime(2026, 11, 26, 23, 59, 59, tzinfo=dt.UTC)
        assert (await judge.score()).scores == {}
        now[0] = dt.datetime(2026, 11, 27, 0, 0, 1, tzinfo=dt.UTC)
        assert (await judge.score()).scores == {"coherence": 4.0}
        assert len(fake.requests()) == 4
