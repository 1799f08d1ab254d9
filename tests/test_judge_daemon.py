"""The daemon with a misbehaving judge: ingest keeps answering, the judge's trouble is counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from exporter.config import parse_config
from exporter.scoring.judge import JudgeFailed, judge_client
from exporter.web import create_app
from exporter.web.keys import METRICS, PIPELINE, REGISTRY, STATE
from tests.conftest import conversation
from tests.support.fake_openai import FakeOpenAI

Client = TestClient[web.Request, web.Application]
FIRST, SECOND = "judge-a", "judge-b"


@pytest.fixture
def daemon(
    fake: FakeOpenAI, aiohttp_client: Callable[..., Awaitable[Client]]
) -> Callable[..., Awaitable[Client]]:
    """Start the real app, sampling everything, with judge `first` scoring coherence."""

    async def start(**judge: Any) -> Client:
        settings = {"base_url": fake.base_url, "model": FIRST, "backoff": "10ms", **judge}
        second = {"base_url": fake.base_url, "model": SECOND, "retries": 0}
        config = parse_config(
            {
                "sampling": {"base_rate": 1.0},
                "judges": {"first": settings, "second": second},
                "scorers": [
                    {"type": "tool_success"},
                    {
                        "type": "llm_judge",
                        "name": "judge",
                        "judge": "first",
                        "dimension": "coherence",
                    },
                ],
                "confirmation": {"judge": "second"},
            },
            source="test.yml",
        )
        return await aiohttp_client(create_app(config, registry=CollectorRegistry()))

    return start


def value(client: Client, name: str, **labels: str) -> float:
    registry: CollectorRegistry = client.app[REGISTRY]
    return registry.get_sample_value(name, labels) or 0.0


def judged(client: Client) -> float:
    """Return how many judge scorer runs have finished, whatever their outcome."""
    labels = {"agent": "support-bot", "scorer": "judge"}
    return sum(
        value(client, "agent_quality_evaluations_total", outcome=outcome, **labels)
        for outcome in ("ok", "error", "timeout")
    )


async def ingest_meanwhile(client: Client, *, count: int) -> list[float]:
    """Post ``count`` conversations one by one; return ``judged`` as each answer arrived."""
    finished = []
    for index in range(count):
        response = await client.post("/v1/conversations", json=conversation(id=f"c-{index}"))
        assert response.status == 202
        assert (await response.json())["accepted"] == 1
        finished.append(judged(client))
    scrape = await client.get("/metrics")
    assert scrape.status == 200
    return finished


# Each behaviour: the judge's settings, what the fake does, and metrics that must have counted.
BEHAVIOURS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, tuple[str, str]]]] = {
    "slow": (
        {"timeout": "300ms", "retries": 1},
        {"delay": 2},
        {"timeout": ("agent_quality_judge_requests_total", "timeout")},
    ),
    "429_retry_after": (
        {"retries": 1},
        {"status": 429, "retry_after": 1},
        {"rate_limited": ("agent_quality_judge_requests_total", "rate_limited")},
    ),
    "500": (
        {"retries": 1, "breaker": {"failures": 4, "cooldown": "1h"}},
        {"status": 500},
        {
            "server_error": ("agent_quality_judge_requests_total", "server_error"),
            "breaker_open": ("agent_quality_judge_calls_total", "breaker_open"),
        },
    ),
    "malformed_json": (
        {},
        {"body": '{"choices": [ {"message": '},
        {"bad_response": ("agent_quality_judge_requests_total", "bad_response")},
    ),
    "prose": (
        {},
        {"content": "A fine, coherent conversation. Four out of five."},
        {"invalid_output": ("agent_quality_judge_calls_total", "invalid_output")},
    ),
}


class TestIngestWhileJudging:
    @pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
    async def test_ingest_is_served_and_trouble_counted(
        self, fake: FakeOpenAI, daemon: Callable[..., Awaitable[Client]], behaviour: str
    ) -> None:
        """Whatever the judge does, POSTs answer 202 before judging ends; failures are counted."""
        settings, misbehaviour, expected = BEHAVIOURS[behaviour]
        fake.behave(FIRST, misbehaviour)
        client = await daemon(**settings)
        finished = await ingest_meanwhile(client, count=6)
        # Scoring never blocks the sender: each answer came before its own conversation's
        # judge run ended (a sender held until then would see it counted in its answer).
        assert all(done <= index for index, done in enumerate(finished)), finished
        assert await client.app[PIPELINE].drain(60)
        assert judged(client) == 6
        labels = {"agent": "support-bot", "scorer": "judge"}
        assert value(client, "agent_quality_evaluations_total", outcome="error", **labels) == 6
        for name, outcome in expected.values():
            assert value(client, name, judge="first", outcome=outcome) > 0
        # The deterministic scorer scored every conversation regardless.
        series = {"agent": "support-bot", "dimension": "tool_success"}
        assert value(client, "agent_quality_score_count", **series) == 6
        assert fake.requests(SECOND) == []

    async def test_retries_and_breaker_show_in_the_scrape(
        self, fake: FakeOpenAI, daemon: Callable[..., Awaitable[Client]]
    ) -> None:
        """A failing judge's retries and open breaker appear on /metrics; then it is spared."""
        fake.behave(FIRST, {"status": 503})
        client = await daemon(retries=2, breaker={"failures": 3, "cooldown": "1h"})
        await ingest_meanwhile(client, count=1)
        assert await client.app[PIPELINE].drain(60)
        assert judged(client) == 1
        text = await (await client.get("/metrics")).text()
        assert 'agent_quality_judge_retries_total{judge="first"} 2.0' in text
        assert 'agent_quality_judge_breaker_open{judge="first"} 1.0' in text
        assert 'agent_quality_judge_breaker_opened_total{judge="first"} 1.0' in text
        await ingest_meanwhile(client, count=4)
        assert await client.app[PIPELINE].drain(60)
        assert judged(client) == 5
        assert len(fake.requests(FIRST)) == 3
        refused = {"judge": "first", "outcome": "breaker_open"}
        assert value(client, "agent_quality_judge_calls_total", **refused) == 4

    async def test_usage_blocks_become_tokens_and_cost(
        self, fake: FakeOpenAI, daemon: Callable[..., Awaitable[Client]]
    ) -> None:
        """Usage from the judge's answers is exported as tokens and USD on the app's registry."""
        fake.behave(FIRST, {"score": 5, "usage": {"prompt_tokens": 500, "completion_tokens": 50}})
        client = await daemon(price={"input_per_million": 1.0, "output_per_million": 10.0})
        await ingest_meanwhile(client, count=4)
        assert await client.app[PIPELINE].drain(60)
        assert judged(client) == 4
        tokens = {"judge": "first", "direction": "input"}
        assert value(client, "agent_quality_judge_tokens_total", **tokens) == 2000
        cost = value(client, "agent_quality_judge_cost_usd_total", judge="first")
        assert cost == pytest.approx(0.004)

    async def test_bad_scores_are_confirmed_in_the_daemon(
        self, fake: FakeOpenAI, daemon: Callable[..., Awaitable[Client]]
    ) -> None:
        """Through the HTTP sink: a bad first verdict reaches the second judge and is counted."""
        fake.behave(FIRST, {"score": 1})
        fake.behave(SECOND, {"score": 2})
        client = await daemon()
        await ingest_meanwhile(client, count=2)
        await client.app[PIPELINE].drain(60)
        labels = {"agent": "support-bot", "dimension": "coherence", "judge": "second"}
        verdicts = "agent_quality_judge_verdicts_total"
        assert value(client, verdicts, verdict="confirmed", **labels) == 2
        flag = {"agent": "support-bot", "flag": "confirmed_bad"}
        assert value(client, "agent_quality_flags_total", **flag) == 2


class TestShutdown:
    async def test_connection_pools_close_with_the_app(
        self, fake: FakeOpenAI, daemon: Callable[..., Awaitable[Client]]
    ) -> None:
        """The judges' pools live as long as the app and are closed when it stops."""
        fake.behave(FIRST, {"score": 1})
        client = await daemon()
        for _ in range(3):
            await ingest_meanwhile(client, count=1)
            assert await client.app[PIPELINE].drain(60)
        config, metrics = client.app[STATE].config, client.app[METRICS]
        first = judge_client(config, "first", metrics=metrics)
        second = judge_client(config, "second", metrics=metrics)
        sessions = [first._session, second._session]
        assert all(s is not None and not s.closed for s in sessions)
        # One pool for the app's life: consecutive calls reuse one kept-alive connection.
        peers = {tuple(r["peer"]) for r in fake.requests(FIRST)}
        assert (len(fake.requests(FIRST)), len(peers)) == (3, 1)
        await client.close()
        assert all(s is not None and s.closed for s in sessions)
        with pytest.raises(JudgeFailed, match="closed"):
            await first.complete([{"role": "user", "content": "hi"}])
