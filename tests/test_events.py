"""Evaluation results as OpenTelemetry events: the SDK's logs pipeline to a local receiver."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from exporter.config import parse_config
from exporter.config.secrets import resolve_secrets
from exporter.events import EVENT_NAME, event_attributes
from exporter.exceptions import ConfigError
from exporter.model import decode_conversation
from exporter.redaction import Redactor
from exporter.types import Evaluation
from exporter.web import create_app
from exporter.web.keys import PIPELINE
from tests.conftest import conversation
from tests.support.app import Client, MakeClient, sample
from tests.support.daemon import free_port
from tests.support.otlp_receiver import Receiver, receiver_app

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
MakeServer = Callable[..., Awaitable[TestServer]]


def export(endpoint: str, **changes: Any) -> dict[str, Any]:
    """Return the config sections: everything sampled, events sent to ``endpoint``."""
    section = {"enabled": True, "endpoint": endpoint, "timeout": "2s", "queue": {"delay": "50ms"}}
    return {"sampling": {"base_rate": 1.0}, "otel_export": section | changes}


async def started_receiver(aiohttp_server: MakeServer, **settings: Any) -> tuple[Receiver, str]:
    receiver = Receiver(**settings)
    server = await aiohttp_server(receiver_app(receiver))
    return receiver, f"http://127.0.0.1:{server.port}/v1/logs"


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def events_total(client: Client, outcome: str) -> float:
    return sample(client, "agent_quality_evaluation_events_total", outcome=outcome)


class TestEvents:
    async def test_every_score_is_an_event_of_the_evaluated_span(
        self, client_for: MakeClient, aiohttp_server: MakeServer
    ) -> None:
        """Each scored dimension arrives as gen_ai.evaluation.result, parented to the span."""
        receiver, url = await started_receiver(aiohttp_server)
        client = await client_for(**export(url))
        traced = conversation(id="c-traced", trace_id=TRACE, span_id=SPAN)
        plain = conversation(id="c-plain", signals={"user_thumbs_down": True})
        assert (await client.post("/v1/conversations", json=[traced, plain])).status == 202
        await client.app[PIPELINE].drain(30)
        dimensions = ("tool_success", "final_answer", "user_feedback")
        expected = 2 * len(dimensions)
        await until(lambda: len(receiver.events) >= expected)
        assert len(receiver.events) == expected
        by_conversation: dict[str, list[Any]] = {}
        for event in receiver.events:
            assert event.event_name == EVENT_NAME
            assert event.resource["service.name"] == "agent-quality-exporter"
            by_conversation.setdefault(event.attributes["gen_ai.conversation.id"], []).append(event)
        for event in by_conversation["c-traced"]:
            assert (event.trace_id, event.span_id) == (TRACE, SPAN)
        for event in by_conversation["c-plain"]:
            assert (event.trace_id, event.span_id) == ("", "")
        feedback = next(
            e.attributes
            for e in by_conversation["c-plain"]
            if e.attributes["gen_ai.evaluation.name"] == "user_feedback"
        )
        assert feedback["gen_ai.evaluation.score.value"] == 0.0
        assert feedback["gen_ai.evaluation.score.label"] == "bad"
        assert feedback["gen_ai.agent.name"] == "support-bot"
        assert feedback["agent_quality.agent"] == "support-bot"
        assert feedback["agent_quality.scorer"] == "user_feedback"
        assert {e.attributes["gen_ai.evaluation.name"] for e in receiver.events} == set(dimensions)
        await until(lambda: events_total(client, "sent") == expected)
        assert events_total(client, "failed") == events_total(client, "dropped") == 0

    @pytest.mark.parametrize("trouble", ["refused", "hanging"])
    async def test_dead_endpoint_slows_nothing_and_drops_are_counted(
        self,
        aiohttp_client: Callable[..., Awaitable[Client]],
        aiohttp_server: MakeServer,
        trouble: str,
    ) -> None:
        """Refused or unanswered: every conversation is scored, what cannot wait is dropped."""
        if trouble == "refused":
            url = f"http://127.0.0.1:{free_port()}/v1/logs"
        else:
            _, url = await started_receiver(aiohttp_server, hang=True)
        sections = export(url, queue={"max_records": 8, "batch_size": 4, "delay": "50ms"})
        sections["pipeline"] = {"drain_grace_period": "1s"}
        client = await aiohttp_client(create_app(parse_config(sections, source="test.yml")))
        batch = [conversation(id=f"c-{n}", trace_id=f"{n + 1:032x}") for n in range(50)]
        assert (await client.post("/v1/conversations", json=batch)).status == 202
        await client.app[PIPELINE].drain(30)
        assert sample(client, "agent_quality_scored_total", agent="support-bot") == 50
        assert sample(client, "agent_quality_evaluation_events_waiting") <= 8
        assert events_total(client, "dropped") >= 150 - 8 - 8  # at most two batches' worth left
        started = time.monotonic()
        await client.close()
        assert time.monotonic() - started < 1 + 2 + 1  # grace, one export's timeout, slack
        outcomes = sum(events_total(client, o) for o in ("sent", "failed", "dropped"))
        assert outcomes == 150
        assert events_total(client, "sent") == 0

    def test_explanations_are_redacted_and_labels_come_from_thresholds(self) -> None:
        """A judge's reason leaves the process redacted; the label is the bad threshold's."""
        config = parse_config({}, source="test.yml")
        dimension = config.dimension("final_answer")
        assert dimension is not None
        evaluation = Evaluation(
            decode_conversation(b'{"id": "c", "agent": "a", "messages": [{"role": "user"}]}'),
            "other",
            "base",
            scores={"final_answer": 1.0},
            explanations={"final_answer": "wrote to jane@example.com"},
            sources={"final_answer": "judge-a"},
        )
        attributes = event_attributes(
            evaluation, dimension=dimension, value=1.0, redactor=Redactor(kinds=["email"])
        )
        assert attributes["gen_ai.evaluation.explanation"] == "wrote to [EMAIL]"
        assert attributes["gen_ai.evaluation.score.label"] == "good"
        assert attributes["agent_quality.scorer"] == "judge-a"
        assert "gen_ai.response.id" not in attributes


class TestConfig:
    def test_secret_headers_are_read_like_the_judges_keys(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """{env: VAR} headers are read at start; a missing one is an error naming its key."""
        headers = {"X-Scope-OrgID": "team-a", "Authorization": {"env": "AQE_TEST_OTEL_AUTH"}}
        config = parse_config(export("http://127.0.0.1:1/v1/logs", headers=headers), source="t")
        with pytest.raises(ConfigError, match=r"\$\.otel_export\.headers\.Authorization\.env"):
            resolve_secrets(config)
        monkeypatch.setenv("AQE_TEST_OTEL_AUTH", "Bearer s3cret")
        resolved = resolve_secrets(config).otel_export.headers
        assert dict(resolved) == {"X-Scope-OrgID": "team-a", "Authorization": "Bearer s3cret"}

    def test_off_by_default_and_the_sdk_not_imported(self) -> None:
        """Without the section the daemon's start-up never imports the OpenTelemetry SDK."""
        code = (
            "import sys; from exporter.config import parse_config; "
            "from exporter.web import create_app; "
            "create_app(parse_config({}, source='t')); "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        assert result.stdout.strip() == "[]"
