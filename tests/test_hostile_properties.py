"""Property-based hostile input: arbitrary bodies and content types against one running app.

Every example is sent to the same app (the daemon must survive all of them in a row). After
each: no 5xx was seen, every 4xx of ours had the error body of docs/api.md, a valid conversation is
still accepted, and the accounting adds up.
"""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from exporter.config import Config
from exporter.web import create_app
from exporter.web.keys import PIPELINE, REGISTRY
from tests.conftest import EXAMPLE_CONVERSATION
from tests.support.fake_agent import export_request, logs_request, make_log, make_span

Client = TestClient[web.Request, web.Application]

MAX_BODY = 32 << 10
MAX_ITEMS = 8
#: Small queue, late buffer and budget, so every path of the accounting is taken.
CONFIG = {
    "server": {"limits": {"max_body_bytes": MAX_BODY, "max_batch_items": MAX_ITEMS}},
    "sampling": {
        "base_rate": 0.5,
        "boost_rate": 1.0,
        "daily_budget": {"min_samples": 0, "max_samples": 60},
        "late_signals": {"max_conversations": 4},
    },
    "pipeline": {"queue_size": 3, "workers": 1},
}
AGENTS = ("support-bot", "other")
OTLP_DROPS = ("otlp_buffer_full", "otlp_no_messages", "otlp_invalid")
DROP_REASONS = ("queue_full", "daily_budget", "shutdown", "no_content", *OTLP_DROPS)
PATHS = ("/v1/conversations", "/v1/feedback", "/v1/traces", "/v1/logs")
OTLP_PATHS = ("/v1/traces", "/v1/logs")
CONTENT_TYPES = (
    "application/json",
    "application/x-ndjson",
    "application/json; charset=utf-8",
    "application/vnd.example+json",
    "application/x-protobuf",
    "text/plain",
    "",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
)
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- strategies -----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and Infinity too: json.dumps writes them as bare literals
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
#: What an OTLP AnyValue can hold: integers are 64-bit there.
any_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
ids = st.sampled_from(["dup-1", "dup-2", "c-7f3a"]) | st.text(min_size=1, max_size=10)
#: Where a wrong value can go in the example conversation.
FIELD_PATHS: tuple[tuple[Any, ...], ...] = (
    ("id",),
    ("agent",),
    ("model",),
    ("messages",),
    ("messages", 0),
    ("messages", 0, "role"),
    ("messages", 0, "content"),
    ("messages", 1, "tool_calls"),
    ("messages", 1, "tool_calls", 0, "arguments"),
    ("messages", 2, "error"),
    ("signals",),
    ("signals", "user_thumbs_down"),
    ("scores",),
    ("scores", "csat"),
    ("usage",),
    ("usage", "cost_usd"),
    ("usage", "input_tokens"),
    ("started_at",),
    ("metadata",),
)


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    """Return a valid conversation with a drawn id, agent, signals and scores."""
    document = copy.deepcopy(EXAMPLE_CONVERSATION)
    document["id"] = draw(ids)
    document["agent"] = draw(st.sampled_from(["support-bot", "support-bot", "intruder"]))
    document["signals"] = {"user_thumbs_down": draw(st.booleans())}
    document["scores"] = {"csat": draw(st.floats(-10, 10)), "coherence": draw(st.floats(0, 6))}
    return document


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """Return a conversation with one field replaced by an arbitrary value, or removed."""
    document = draw(conversations())
    keys = draw(st.sampled_from(FIELD_PATHS))
    target: Any = document
    for key in keys[:-1]:
        target = target[key]
    if draw(st.booleans()):
        target[keys[-1]] = draw(json_values)
    elif isinstance(target, dict):
        target.pop(keys[-1], None)
    return document


items = conversations() | mutated() | json_values


def encode(value: object) -> bytes:
    return json.dumps(value).encode()


def strict_json(value: object) -> bool:
    """Say whether ``value`` encodes without NaN or Infinity literals."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


@st.composite
def conversation_bodies(draw: st.DrawFn) -> bytes:
    """Return a body for /v1/conversations: JSON, arrays, NDJSON, padding, garbage."""
    kind = draw(st.sampled_from(["one", "array", "ndjson", "padded", "deep", "raw"]))
    if kind == "one":
        return encode(draw(items))
    if kind == "array":
        return encode(draw(st.lists(items, max_size=MAX_ITEMS + 2)))
    if kind == "ndjson":
        garbage = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))
        lines = draw(st.lists(items.map(encode) | garbage, max_size=MAX_ITEMS + 2))
        return b"\n".join(lines)
    if kind == "padded":  # a huge string around the body limit
        document = draw(conversations())
        document["metadata"] = {"pad": ""}
        room = MAX_BODY - len(encode(document))
        document["metadata"]["pad"] = "x" * draw(st.integers(room - 50, room + 50))
        return encode(document)
    if kind == "deep":
        depth = draw(st.integers(1, 5000))
        return b"[" * depth + b"]" * draw(st.integers(0, depth))
    return draw(st.binary(max_size=200))


@st.composite
def feedback_bodies(draw: st.DrawFn) -> bytes:
    """Return a body for /v1/feedback: valid signals, wrong shapes, garbage."""
    kind = draw(st.sampled_from(["valid", "value", "raw"]))
    if kind == "valid":
        signals = draw(st.dictionaries(st.sampled_from(["user_thumbs_down", "x"]), scalars))
        return encode({"id": draw(ids), "signals": signals})
    if kind == "value":
        return encode(
            draw(json_values | st.fixed_dictionaries({"id": ids, "signals": json_values}))
        )
    return draw(st.binary(max_size=200))


def genai_span(*, trace: int, agent: str, messages: object) -> Any:
    """Return one GenAI chat span, a root that completes its conversation."""
    return make_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.agent.name": agent,
            "gen_ai.conversation.id": f"otlp-{trace}",
            "gen_ai.input.messages": json.dumps(messages),
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": "done"}]}]
            ),
        },
        trace=trace,
    )


@st.composite
def trace_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """Return an OTLP body (protobuf or JSON, valid or damaged) and its content type."""
    user = [{"role": "user", "parts": [{"type": "text", "content": draw(st.text(max_size=20))}]}]
    messages = draw(st.just(user) | json_values)
    span = genai_span(
        trace=draw(st.integers(1, 2**64)),
        agent=draw(st.sampled_from(["support-bot", "intruder"])),
        messages=messages,
    )
    request = export_request(span)
    kind = draw(st.sampled_from(["protobuf", "flipped", "json", "json-value", "raw"]))
    if kind == "protobuf":
        return request.SerializeToString(), "application/x-protobuf"
    if kind == "flipped":
        raw = bytearray(request.SerializeToString())
        for index in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
            raw[index] = draw(st.integers(0, 255))
        return bytes(raw), "application/x-protobuf"
    if kind == "json":
        span_json = {
            "traceId": f"{draw(st.integers(1, 2**64)):032x}",
            "spanId": "0" * 15 + "1",
            "name": "chat",
            "attributes": [
                {"key": "gen_ai.agent.name", "value": {"stringValue": "support-bot"}},
                {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                {"key": "gen_ai.input.messages", "value": {"stringValue": json.dumps(user)}},
            ],
        }
        return encode({"resourceSpans": [{"scopeSpans": [{"spans": [span_json]}]}]}), JSON_TYPE
    if kind == "json-value":
        return encode({"resourceSpans": draw(json_values)}), JSON_TYPE
    return draw(st.binary(max_size=200)), draw(st.sampled_from([JSON_TYPE, PROTOBUF_TYPE]))


@st.composite
def log_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """Return an OTLP logs body: GenAI events and log lines, valid or damaged."""
    trace = draw(st.integers(1, 2**64))
    user = [{"role": "user", "parts": [{"type": "text", "content": draw(st.text(max_size=20))}]}]
    event = draw(
        st.sampled_from(
            [
                "gen_ai.client.inference.operation.details",
                "gen_ai.user.message",
                "gen_ai.choice",
                "gen_ai.evaluation.result",
                "",
            ]
        )
    )
    attributes = {"gen_ai.input.messages": draw(st.just(user) | any_values)}
    record = make_log(event, attributes, body=draw(any_values), trace=trace, span=trace % 999 + 1)
    request = logs_request(record, make_log(None, body="a log line", trace=None, span=None))
    kind = draw(st.sampled_from(["protobuf", "flipped", "json", "json-value", "raw"]))
    if kind == "protobuf":
        return request.SerializeToString(), PROTOBUF_TYPE
    if kind == "flipped":
        raw = bytearray(request.SerializeToString())
        for index in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
            raw[index] = draw(st.integers(0, 255))
        return bytes(raw), PROTOBUF_TYPE
    if kind == "json":
        record_json = {
            "traceId": f"{trace:032x}",
            "spanId": draw(st.sampled_from(["0" * 15 + "1", "zz", ""])),
            "eventName": event,
            "attributes": [
                {"key": "gen_ai.input.messages", "value": {"stringValue": json.dumps(user)}}
            ],
        }
        return encode({"resourceLogs": [{"scopeLogs": [{"logRecords": [record_json]}]}]}), JSON_TYPE
    if kind == "json-value":
        return encode({"resourceLogs": draw(json_values)}), JSON_TYPE
    return draw(st.binary(max_size=200)), draw(st.sampled_from([JSON_TYPE, PROTOBUF_TYPE]))


JSON_TYPE, PROTOBUF_TYPE = "application/json", "application/x-protobuf"


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Return a hostile request: any endpoint, body, content type and compression."""
    path = draw(st.sampled_from(PATHS))
    if path == "/v1/traces":
        body, content_type = draw(trace_bodies())
    elif path == "/v1/logs":
        body, content_type = draw(log_bodies())
    else:
        body = draw(conversation_bodies() if path == "/v1/conversations" else feedback_bodies())
        content_type = JSON_TYPE
    if draw(st.integers(0, 3)) == 0:
        content_type = draw(st.sampled_from(CONTENT_TYPES))
    headers = {"Content-Type": content_type}
    compression = draw(st.sampled_from(["none", "none", "gzip", "truncated"]))
    if compression != "none":
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body)
        if compression == "truncated":
            body = body[: draw(st.integers(0, len(body) - 1))]
    return Request(path, body, headers)


# --- the app and its ledger -----------------------------------------------------------------


@dataclass
class Ledger:
    """What the responses said was accepted, to compare with the counters."""

    accepted: int = 0
    requests: int = 0


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[Client]], make_config: Callable[..., Config]
) -> Client:
    """Start one app that every example of a test is sent to."""
    return await aiohttp_client(create_app(make_config(**CONFIG)))


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


def total(client: Client, name: str, label: str, values: tuple[str, ...]) -> float:
    registry: CollectorRegistry = client.app[REGISTRY]
    return sum(registry.get_sample_value(name, {label: v}) or 0.0 for v in values)


def check_answer(request: Request, status: int, content_type: str, body: bytes) -> None:
    """Assert the answer is no 5xx and a 4xx has the body its endpoint promises."""
    assert status < 500, (status, body[:300])
    otlp = request.path in OTLP_PATHS and status in (200, 400, 503)
    if otlp and content_type.startswith(PROTOBUF_TYPE):
        if status == 400:
            assert Status.FromString(body).message
        return
    if otlp:
        document = json.loads(body)
        if status == 400:
            assert document["message"]
        return
    if status >= 400:
        document = json.loads(body)
        assert set(document) == {"error", "detail"}, document
        assert isinstance(document["error"], str)
        assert document["error"]


async def assert_consistent(client: Client, ledger: Ledger) -> None:
    """A valid conversation is accepted; received = not sampled + buffered + scored + dropped."""
    ledger.requests += 1
    document = copy.deepcopy(EXAMPLE_CONVERSATION) | {"id": f"probe-{ledger.requests}"}
    response = await client.post("/v1/conversations", json=document)
    assert response.status == 202
    ledger.accepted += (await response.json())["accepted"]
    assert await client.app[PIPELINE].drain(60)
    received = total(client, "agent_quality_conversations_total", "agent", AGENTS)
    not_sampled = total(client, "agent_quality_not_sampled_total", "agent", AGENTS)
    scored = total(client, "agent_quality_scored_total", "agent", AGENTS)
    dropped = total(client, "agent_quality_dropped_total", "reason", DROP_REASONS)
    registry: CollectorRegistry = client.app[REGISTRY]
    buffered = registry.get_sample_value("agent_quality_late_buffer_conversations") or 0.0
    assembled = sum(
        s.value
        for family in registry.collect()
        if family.name == "agent_quality_otlp_conversations"
        for s in family.samples
        if s.name == "agent_quality_otlp_conversations_total"
    )
    # A conversation from OTLP is received when it leaves the span buffer, assembled or not.
    refused = total(client, "agent_quality_dropped_total", "reason", OTLP_DROPS)
    assert received == ledger.accepted + assembled + refused
    assert received == not_sampled + buffered + scored + dropped


class TestProperties:
    @SETTINGS
    @given(request=requests())
    async def test_any_request(self, client: Client, ledger: Ledger, request: Request) -> None:
        """Any body, type and compression on any endpoint: no 5xx, clear 4xx, books balance."""
        note(f"{request.path} {request.headers} {request.body[:500]!r}")
        response = await client.post(request.path, data=request.body, headers=request.headers)
        body = await response.read()
        check_answer(request, response.status, response.headers.get("Content-Type", ""), body)
        if request.path == "/v1/conversations" and response.status == 202:
            answer = json.loads(body)
            assert answer["sampled"] + answer["dropped"] <= answer["accepted"]
            assert answer.get("rejected_count", 0) <= MAX_ITEMS
            ledger.accepted += answer["accepted"]
        await assert_consistent(client, ledger)

    @settings(SETTINGS, max_examples=60)
    @given(batch=st.lists(conversations() | mutated(), max_size=MAX_ITEMS))
    async def test_batches_count_every_item(
        self, client: Client, ledger: Ledger, batch: list[dict[str, Any]]
    ) -> None:
        """Accepted plus rejected is the batch length, as an array and as NDJSON."""
        for body, content_type in (
            (encode(batch), JSON_TYPE),
            (b"\n".join(encode(item) for item in batch), "application/x-ndjson"),
        ):
            response = await client.post(
                "/v1/conversations", data=body, headers={"Content-Type": content_type}
            )
            answer = await response.json()
            if not batch and content_type != JSON_TYPE:
                assert response.status == 400  # an empty NDJSON body
                continue
            if response.status == 400 and content_type == JSON_TYPE and not strict_json(batch):
                # A NaN or Infinity literal is a syntax error: the array cannot be split.
                assert answer["detail"] == {"where": "$"}
                continue
            if response.status == 400:
                assert answer["detail"]["rejected_count"] == len(batch)
                continue
            assert response.status == 202
            assert answer["accepted"] + answer.get("rejected_count", 0) == len(batch)
            ledger.accepted += answer["accepted"]
        await assert_consistent(client, ledger)
