"""Label-cardinality attack: 100k distinct names from payloads add no series to /metrics.

Agent names (JSON and OTLP), dimension names in ``scores`` and from a plugin, and flags a
plugin echoes from the payload are all attacker-controlled. The series /metrics exports are
counted after a warm-up that touches every code path once (so lazily created children with
fixed label sets exist), then again after the attack: agents and dimensions add nothing, and
flags stop at ``MAX_FLAG_VALUES`` distinct values (the rest are counted as ``other``).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

from exporter.config import Config
from exporter.metrics import MAX_FLAG_VALUES
from exporter.model import Conversation
from exporter.types import ScoreResult
from exporter.web import create_app
from exporter.web.keys import PIPELINE
from tests.support.app import Client, MakeClient, sample
from tests.support.fake_agent import key_values, make_span

ATTACK = 100_000
BATCH = 10_000
#: Every name an attacker sends starts with this, so any leak into /metrics is easy to find.
MARK = "zz"
CONFIG: dict[str, Any] = {
    "agents": ["support-bot"],
    "sampling": {"base_rate": 0.0, "boost_rate": 1.0, "daily_budget": {"min_samples": 0}},
    "scorers": [{"type": "tool_success"}, {"type": "final_answer"}, {"type": "passthrough"}],
    "pipeline": {"queue_size": 20_000, "workers": 4},
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) \S+$")


async def echo_payload(conversation: Conversation) -> ScoreResult:
    """A plugin that turns payload text into dimension names and flags (what not to do)."""
    flags = (f"{MARK}_{conversation.id}".lower().replace("-", "_"), f"{MARK} {conversation.id}!")
    return ScoreResult(
        scores={f"{MARK}_plugin_{conversation.id}": 0.5, conversation.agent: 0.5},
        flags=flags,
    )


def minimal(conversation_id: str, agent: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    return {"id": conversation_id, "agent": agent, "messages": messages, **extra}


async def series(client: Client) -> set[str]:
    """Return every series (name and labels) in the exposition Prometheus would scrape."""
    text = await (await client.get("/metrics")).text()
    found = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, line
            found.add(match.group(1))
    return found


async def post_all(client: Client, documents: list[dict[str, Any]]) -> int:
    """Send ``documents`` as NDJSON batches; return how many were accepted."""
    accepted = 0
    for start in range(0, len(documents), BATCH):
        body = "\n".join(json.dumps(d) for d in documents[start : start + BATCH])
        # A BytesIO: aiohttp warns that a multi-megabyte bytes body blocks its loop.
        response = await client.post(
            "/v1/conversations",
            data=io.BytesIO(body.encode()),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert response.status == 202, await response.text()
        accepted += (await response.json())["accepted"]
    return accepted


def _otlp_template() -> bytes:
    """Return one serialized ResourceSpans entry with fixed-width placeholders."""
    user = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    answer = [{"role": "assistant", "parts": [{"type": "text", "content": "hello"}]}]
    span = make_span(
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": f"{MARK}-otlp-agent-AAAAAA",
            "gen_ai.conversation.id": f"{MARK}-otlp-BBBBBB",
            "gen_ai.input.messages": json.dumps(user),
            "gen_ai.output.messages": json.dumps(answer),
        },
        trace=int.from_bytes(_TRACE_MARK, "big"),
    )
    resource = ResourceSpans(
        resource=Resource(attributes=key_values({"service.name": f"{MARK}-service-CCCCCC"})),
        scope_spans=[ScopeSpans(spans=[span])],
    )
    return ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString()


_TRACE_MARK = b"\x7fTRACE"
_TEMPLATE = _otlp_template()


def otlp_export(first: int, count: int) -> bytes:
    """Return one export of ``count`` complete one-span conversations with distinct names.

    A request's repeated field serializes as its entries one after another, so copies of
    one entry with same-width numbers in its placeholders make a valid request, fast.
    """
    entries = []
    for n in range(first, first + count):
        number = f"{n:06d}".encode()
        entry = _TEMPLATE.replace(b"AAAAAA", number).replace(b"BBBBBB", number)
        entry = entry.replace(b"CCCCCC", number).replace(_TRACE_MARK, (n + 1).to_bytes(6, "big"))
        entries.append(entry)
    return b"".join(entries)


ECHO = {"type": "plugin", "name": "hostile", "path": "tests.test_cardinality:echo_payload"}


@pytest.fixture
def client_for(
    aiohttp_client: Callable[..., Awaitable[Client]], make_config: Callable[..., Config]
) -> MakeClient:
    """Start the real app (with extra scorers), then touch every code path once."""

    async def start(*scorers: dict[str, Any]) -> Client:
        config = CONFIG | {"scorers": [*CONFIG["scorers"], *scorers]}
        client = await aiohttp_client(create_app(make_config(**config)))
        await warm_up(client)
        return client

    return start


async def warm_up(client: Client) -> None:
    """Send a little of everything, so every fixed-label child that exists lazily exists."""
    documents = [
        minimal("warm-1", "support-bot", scores={"coherence": 3, "undeclared": 1}),
        minimal("warm-2", "someone-else", signals={"user_thumbs_down": True}),
        minimal("warm-3", "support-bot"),
        {"id": "broken"},
    ]
    body = "\n".join(json.dumps(d) for d in documents) + "\nnot json\n"
    response = await client.post(
        "/v1/conversations", data=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert (await response.json())["accepted"] == 3
    for outcome_id in ("warm-3", "nobody"):
        feedback = {"id": outcome_id, "signals": {"user_thumbs_down": True}}
        assert (await client.post("/v1/feedback", json=feedback)).status == 202
    response = await client.post(
        "/v1/traces", data=otlp_export(0, 1), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status == 200
    assert await client.app[PIPELINE].drain(60)


class TestCardinality:
    async def test_agent_and_dimension_names(self, client_for: MakeClient) -> None:
        """100k agent names and 100k dimension names in `scores`: the same series as before."""
        client = await client_for()
        before = await series(client)
        others = sample(client, "agent_quality_conversations_total", agent="other")
        agents = [minimal(f"a{n}", f"{MARK}-agent-{n}") for n in range(ATTACK)]
        assert await post_all(client, agents) == ATTACK
        # Scored (boosted by the thumbs-down), 100 undeclared dimensions each.
        dimensions = [
            minimal(
                f"d{n}",
                "support-bot",
                signals={"user_thumbs_down": True},
                scores={f"{MARK}_dim_{n}_{k}": 0.5 for k in range(100)},
            )
            for n in range(ATTACK // 100)
        ]
        assert await post_all(client, dimensions) == ATTACK // 100
        assert await client.app[PIPELINE].drain(30)
        after = await series(client)
        assert after == before
        assert not [s for s in after if MARK in s]
        assert sample(client, "agent_quality_conversations_total", agent="other") == others + ATTACK

    async def test_plugin_flags_and_dimensions(self, client_for: MakeClient) -> None:
        """A plugin echoing payload text: flags stop at the cap, its dimensions add nothing."""
        client = await client_for(ECHO)
        before = await series(client)
        # 50k scored conversations, two new flags and two new dimension names each.
        scored = [
            minimal(f"f{n}", f"{MARK}-agent-{n}", signals={"user_thumbs_down": True})
            for n in range(ATTACK // 2)
        ]
        assert await post_all(client, scored) == len(scored)
        assert await client.app[PIPELINE].drain(60)
        runs = sample(
            client, "agent_quality_evaluations_total", agent="other", scorer="hostile", outcome="ok"
        )
        assert runs > len(scored) * 0.9  # a few may be queue_full drops
        after = await series(client)
        new = after - before
        assert all(s.startswith("agent_quality_flags_total{") for s in new), sorted(new)[:5]
        flags = {s for s in after if s.startswith("agent_quality_flags_total{")}
        values = {s.partition('flag="')[2].partition('"')[0] for s in flags}
        # The first MAX_FLAG_VALUES well-formed flags become label values; the rest are "other".
        assert len(values) == MAX_FLAG_VALUES + 1
        assert "other" in values
        overflow = sample(client, "agent_quality_flags_total", agent="other", flag="other")
        assert overflow > 2 * runs - MAX_FLAG_VALUES - 1
        assert not [s for s in after if f"{MARK}_plugin" in s or "-agent-" in s]

    @pytest.mark.slow  # 7-12 s here: the OTLP path assembles ~10k one-span conversations/s
    async def test_otlp_agent_and_service_names(self, client_for: MakeClient) -> None:
        """100k OTLP conversations, each with its own agent and service name: no new series."""
        client = await client_for()
        before = await series(client)
        assembled_before = sample(
            client, "agent_quality_otlp_conversations_total", trigger="root_span"
        )
        for first in range(1, ATTACK + 1, 5_000):
            response = await client.post(
                "/v1/traces",
                data=io.BytesIO(otlp_export(first, 5_000)),
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert response.status == 200
        assert await client.app[PIPELINE].drain(30)
        after = await series(client)
        assert after == before
        assert not [s for s in after if MARK in s]
        assembled = sample(client, "agent_quality_otlp_conversations_total", trigger="root_span")
        assert assembled == assembled_before + ATTACK
