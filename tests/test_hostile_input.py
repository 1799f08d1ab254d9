"""Hostile bodies against the real app, case by case: each is a clear 4xx and nothing breaks.

Every test ends by sending a valid conversation, which must still be accepted.
"""

from __future__ import annotations

import copy
import gzip
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from google.rpc.status_pb2 import Status

from exporter.config import Config
from exporter.ingest.decode import MAX_ERROR_CHARS
from exporter.web import create_app
from exporter.web.ingest import MAX_LISTED_REJECTIONS
from exporter.web.keys import PIPELINE
from tests.conftest import conversation
from tests.support.app import Client, sample
from tests.support.fake_agent import export_request, make_span

MAX_BODY = 64 << 10
MAX_ITEMS = 8
HOSTILE = {
    "server": {"limits": {"max_body_bytes": MAX_BODY, "max_batch_items": MAX_ITEMS}},
    "sampling": {"base_rate": 1.0},
}
JSON = "application/json"
NDJSON = "application/x-ndjson"
#: Ten times what the interpreter's recursion limit lets msgspec decode, within MAX_BODY.
DEEP = 10_000


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[Client]], make_config: Callable[..., Config]
) -> Client:
    """Start the real app with small limits."""
    return await aiohttp_client(create_app(make_config(**HOSTILE)))


async def post(
    client: Client, path: str, body: bytes, content_type: str = JSON, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    """POST raw bytes; return the status, headers and body."""
    response = await client.post(path, data=body, headers={"Content-Type": content_type, **headers})
    return response.status, dict(response.headers), await response.read()


def error_of(status: int, body: bytes) -> dict[str, Any]:
    """Assert a 4xx with the error body of docs/api.md and return it."""
    assert 400 <= status < 500, (status, body[:300])
    document: dict[str, Any] = json.loads(body)
    assert set(document) == {"error", "detail"}
    assert isinstance(document["error"], str)
    assert document["error"]
    return document


def dumps(document: object) -> bytes:
    return json.dumps(document).encode()


_serial = iter(range(1 << 30))


async def assert_serving(client: Client) -> None:
    """A valid conversation is still accepted."""
    response = await client.post("/v1/conversations", json=conversation(id=f"ok-{next(_serial)}"))
    assert response.status == 202
    assert (await response.json())["accepted"] == 1


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def genai_export(messages: str) -> dict[str, Any]:
    """Return an OTLP/JSON export of one GenAI chat span carrying ``messages``."""
    attributes = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.agent.name", "value": {"stringValue": "support-bot"}},
        {"key": "gen_ai.input.messages", "value": {"stringValue": messages}},
    ]
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "chat", "attributes": attributes}
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


class TestNesting:
    @pytest.mark.parametrize(
        ("path", "content_type", "body", "where"),
        [
            ("/v1/conversations", JSON, nested(DEEP), "$"),
            ("/v1/conversations", JSON, "{" + '"a":{' * DEEP, "$"),
            ("/v1/conversations", NDJSON, nested(DEEP), "line 1: $"),
            ("/v1/conversations", JSON, f"[{nested(DEEP)}]", "$"),
        ],
        ids=["array", "object", "ndjson", "array-item"],
    )
    async def test_deep_conversation_bodies(
        self, client: Client, path: str, content_type: str, body: str, where: str
    ) -> None:
        """10k levels of nesting are a 400 saying so, not a RecursionError."""
        status, _, answer = await post(client, path, body.encode(), content_type)
        detail = error_of(status, answer)["detail"]
        assert status == 400
        assert detail["where"] == where
        await assert_serving(client)

    async def test_deep_value_in_one_ndjson_line(self, client: Client) -> None:
        """Deep nesting in one NDJSON line loses only that line.

        In a JSON array it fails the whole body (400 at `$`): like a syntax error, it hides
        where the items end.
        """
        bad = dumps(conversation(id="deep"))[:-1] + f', "extra": {nested(DEEP)}}}'.encode()
        body = b"\n".join([dumps(conversation(id="fine")), bad])
        status, _, answer = await post(client, "/v1/conversations", body, NDJSON)
        assert status == 202
        result = json.loads(answer)
        assert result["accepted"] == 1
        rejected = {"index": 1, "where": "line 2: $", "error": "JSON nested too deeply"}
        assert result["rejected"] == [rejected]

    @pytest.mark.parametrize(
        "body",
        [
            '{"id": "x", "signals": {}, "unknown": ' + nested(DEEP) + "}",
            '{"id": "x", "signals": {"a": ' + nested(DEEP) + "}}",
            nested(DEEP),
        ],
        ids=["ignored-field", "signal", "body"],
    )
    async def test_deep_feedback(self, client: Client, body: str) -> None:
        """Feedback with deep nesting anywhere, even in a field it ignores, is a 400."""
        status, _, answer = await post(client, "/v1/feedback", body.encode())
        assert status == 400
        assert error_of(status, answer)["error"] == "invalid feedback"
        await assert_serving(client)

    async def test_deep_otlp_json(self, client: Client) -> None:
        """A deep OTLP/JSON body is a 400 google.rpc.Status."""
        status, _, answer = await post(client, "/v1/traces", b'{"resourceSpans":' + b"[" * DEEP)
        assert status == 400
        assert "nested too deeply" in json.loads(answer)["message"]
        await assert_serving(client)

    @pytest.mark.parametrize("depth", [990, DEEP])
    async def test_deep_json_inside_a_span_attribute(self, client: Client, depth: int) -> None:
        """Messages recorded as a JSON string too deep to decode are text, not a 500."""
        status, _, answer = await post(client, "/v1/traces", dumps(genai_export(nested(depth))))
        assert status == 200, answer[:300]
        await assert_serving(client)


class TestHugeStrings:
    async def test_body_exactly_at_the_limit_is_accepted(self, client: Client) -> None:
        """A conversation padded to exactly max_body_bytes is accepted; one byte more is 413."""
        template = conversation(id="big", metadata={"pad": ""})
        padding = MAX_BODY - len(dumps(template))
        body = dumps(conversation(id="big", metadata={"pad": "x" * padding}))
        assert len(body) == MAX_BODY
        status, _, answer = await post(client, "/v1/conversations", body)
        assert status == 202, answer[:300]
        over = dumps(conversation(id="big", metadata={"pad": "x" * (padding + 1)}))
        status, _, answer = await post(client, "/v1/conversations", over)
        assert status == 413
        assert str(MAX_BODY) in error_of(status, answer)["detail"]
        await assert_serving(client)

    @pytest.mark.parametrize(
        ("field", "where"),
        [("role", "$.messages[0].role"), ("id", "$.id"), ("agent", "$.agent")],
    )
    async def test_huge_invalid_value_is_not_echoed(
        self, client: Client, field: str, where: str
    ) -> None:
        """A 60 kB bad value gets a short error: messages are cut, never the whole value."""
        document = conversation()
        huge = "r" * (MAX_BODY - 2000)
        if field == "role":
            document["messages"][0]["role"] = huge
        else:
            document[field] = huge
        status, _, answer = await post(client, "/v1/conversations", dumps(document))
        detail = error_of(status, answer)["detail"]
        assert detail["where"] == where
        assert len(detail["rejected"][0]["error"]) <= MAX_ERROR_CHARS
        assert len(answer) < 3 * MAX_ERROR_CHARS + 500
        await assert_serving(client)

    async def test_huge_feedback_value_is_not_echoed(self, client: Client) -> None:
        """Feedback errors are cut the same way."""
        body = dumps({"id": "x" * (MAX_BODY - 100), "signals": {}})
        status, _, answer = await post(client, "/v1/feedback", body)
        assert len(error_of(status, answer)["detail"]) <= MAX_ERROR_CHARS


class TestInvalidUtf8:
    @pytest.mark.parametrize(
        "body",
        [
            b'{"id": "c\xff", "agent": "a", "messages": [{"role": "user"}]}',
            b'{"id": "c", "agent": "a", "messages": [{"role": "user", "content": "\xc3\x28"}]}',
            b'{"id": "c", "agent": "a", "messages": [{"role": "user"}], '
            b'"metadata": {"\xed\xa0\x80": 1}}',
            b'[{"id": "c", "agent": "\xfe", "messages": [{"role": "user"}]}]',
        ],
    )
    async def test_conversations(self, client: Client, body: bytes) -> None:
        """A string that is not UTF-8 is a 400 naming UTF-8, not a UnicodeDecodeError."""
        status, _, answer = await post(client, "/v1/conversations", body)
        assert status == 400
        assert "UTF-8" in error_of(status, answer)["error"]
        await assert_serving(client)

    async def test_ndjson_line_in_the_middle(self, client: Client) -> None:
        """An NDJSON line that is not UTF-8 loses only itself."""
        lines = [dumps(conversation(id="u1")), b'{"id": "\xff\xfe"}', dumps(conversation(id="u2"))]
        status, _, answer = await post(client, "/v1/conversations", b"\n".join(lines), NDJSON)
        assert status == 202
        result = json.loads(answer)
        assert result["accepted"] == 2
        assert result["rejected"][0]["where"] == "line 2: $"
        assert "UTF-8" in result["rejected"][0]["error"]

    async def test_feedback(self, client: Client) -> None:
        """Feedback that is not UTF-8 is a 400."""
        status, _, answer = await post(client, "/v1/feedback", b'{"id": "\xff", "signals": {}}')
        assert "UTF-8" in error_of(status, answer)["detail"]
        await assert_serving(client)

    async def test_otlp_json(self, client: Client) -> None:
        """OTLP/JSON that is not UTF-8 is a 400 google.rpc.Status."""
        body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xff"}]}]}]}'
        status, _, answer = await post(client, "/v1/traces", body)
        assert status == 400
        assert "UTF-8" in json.loads(answer)["message"]

    async def test_otlp_protobuf(self, client: Client) -> None:
        """A protobuf string field that is not UTF-8 is a 400 google.rpc.Status."""
        raw = export_request(make_span({"gen_ai.agent.name": "PLACEHOLDER"})).SerializeToString()
        status, _, answer = await post(
            client,
            "/v1/traces",
            raw.replace(b"PLACEHOLDER", b"\xff" * 11),
            "application/x-protobuf",
        )
        assert status == 400
        assert "UTF-8" in Status.FromString(answer).message
        await assert_serving(client)


class TestNumbers:
    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "nan", "inf"])
    @pytest.mark.parametrize("field", ["scores", "signals", "usage"])
    async def test_non_finite_literals(self, client: Client, literal: str, field: str) -> None:
        """NaN and Infinity are not JSON: a 400, never a NaN in a histogram."""
        key = "cost_usd" if field == "usage" else "x"
        template = dumps(conversation(**{field: {key: 12345.5}}))
        body = template.replace(b"12345.5", literal.encode())
        status, _, answer = await post(client, "/v1/conversations", body)
        assert status == 400
        assert "malformed JSON" in error_of(status, answer)["error"]
        await assert_serving(client)

    @pytest.mark.parametrize(
        ("field", "where"),
        [("scores", "$.scores[...]"), ("signals", "$.signals[...]"), ("usage", "$.usage.cost_usd")],
    )
    async def test_overflowing_numbers(self, client: Client, field: str, where: str) -> None:
        """1e999 overflows to a 400 naming the field."""
        key = "cost_usd" if field == "usage" else "x"
        body = dumps(conversation(**{field: {key: 12345.5}})).replace(b"12345.5", b"1e999")
        status, _, answer = await post(client, "/v1/conversations", body)
        assert error_of(status, answer)["detail"]["where"] == where

    async def test_feedback_nan(self, client: Client) -> None:
        """NaN in feedback signals is a 400."""
        status, _, answer = await post(
            client, "/v1/feedback", b'{"id": "x", "signals": {"a": NaN}}'
        )
        error_of(status, answer)


def _wrong_types() -> list[tuple[str, tuple[Any, ...], object]]:
    """Return (where, key path, wrong value) for every field of the example conversation."""
    text, number, listed, mapping = 42, "forty-two", {"a": 1}, [1]
    cases: list[tuple[str, tuple[Any, ...], object]] = [
        ("$.id", ("id",), text),
        ("$.agent", ("agent",), listed),
        ("$.model", ("model",), mapping),
        ("$.messages", ("messages",), "hello"),
        ("$.messages[0]", ("messages", 0), "hello"),
        ("$.signals", ("signals",), mapping),
        ("$.signals[...]", ("signals", "user_thumbs_down"), listed),
        ("$.scores", ("scores",), "high"),
        ("$.scores[...]", ("scores", "csat"), number),
        ("$.usage", ("usage",), mapping),
        ("$.usage.input_tokens", ("usage", "input_tokens"), number),
        ("$.usage.input_tokens", ("usage", "input_tokens"), -1),
        ("$.usage.output_tokens", ("usage", "output_tokens"), 1.5),
        ("$.usage.cost_usd", ("usage", "cost_usd"), number),
        ("$.started_at", ("started_at",), "yesterday"),
        ("$.ended_at", ("ended_at",), 1700000000),
        ("$.metadata", ("metadata",), mapping),
        ("$.messages[0].role", ("messages", 0, "role"), "robot"),
        ("$.messages[0].content", ("messages", 0, "content"), 7),
        ("$.messages[0].content[0]", ("messages", 0, "content"), ["text"]),
        ("$.messages[1].tool_calls", ("messages", 1, "tool_calls"), listed),
        ("$.messages[1].tool_calls[0].id", ("messages", 1, "tool_calls", 0, "id"), 1),
        ("$.messages[1].tool_calls[0].name", ("messages", 1, "tool_calls", 0, "name"), [1]),
        ("$.messages[1].tool_calls[0].arguments", ("messages", 1, "tool_calls", 0, "arguments"), 3),
        ("$.messages[2].tool_call_id", ("messages", 2, "tool_call_id"), True),
        ("$.messages[2].error", ("messages", 2, "error"), 5),
    ]
    return cases


class TestWrongTypes:
    @pytest.mark.parametrize(
        ("where", "keys", "value"), _wrong_types(), ids=[c[0] + repr(c[2]) for c in _wrong_types()]
    )
    async def test_every_field(
        self, client: Client, where: str, keys: tuple[Any, ...], value: object
    ) -> None:
        """A wrong type in any field is a 400 whose `where` is that field."""
        document = conversation()
        target: Any = document
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        status, _, answer = await post(client, "/v1/conversations", dumps(document))
        detail = error_of(status, answer)["detail"]
        assert status == 400
        assert detail["where"] == where

    @pytest.mark.parametrize("item", [1, "x", None, True, [], 1.5])
    async def test_non_objects_in_a_batch(self, client: Client, item: object) -> None:
        """Array items that are not objects are rejected one by one."""
        body = dumps([conversation(id="w1"), item])
        status, _, answer = await post(client, "/v1/conversations", body)
        assert status == 202
        assert json.loads(answer)["rejected"][0]["where"] == "$[1]"

    @pytest.mark.parametrize(
        "document",
        [{"id": 1, "signals": {}}, {"id": "x", "signals": []}, {"id": "", "signals": {}}, []],
    )
    async def test_feedback(self, client: Client, document: object) -> None:
        """Feedback of the wrong shape is a 400."""
        status, _, answer = await post(client, "/v1/feedback", dumps(document))
        assert status == 400
        error_of(status, answer)
        await assert_serving(client)


def gzip_bomb(inflated_mib: int) -> bytes:
    """Return gzip members, ``[`` then MiBs of zeros, inflating to ``inflated_mib`` MiB.

    Concatenated members are valid gzip (aiohttp inflates them all) and cheap to build.
    """
    zeros = gzip.compress(b"\0" * (1 << 20), compresslevel=9)
    return gzip.compress(b"[") + zeros * inflated_mib


class TestCompression:
    @pytest.mark.parametrize(
        "path", ["/v1/conversations", "/v1/feedback", "/v1/traces", "/v1/logs"]
    )
    async def test_gzip_bomb(self, client: Client, path: str) -> None:
        """900 MiB from 1 MB: a 413 at once, the connection closed, no CPU burnt after."""
        bomb = gzip_bomb(900)
        assert len(bomb) < 1_000_000
        cpu = time.process_time()
        status, headers, answer = await post(client, path, bomb, **{"Content-Encoding": "gzip"})
        assert status == 413
        assert headers["Connection"] == "close"
        if path in ("/v1/traces", "/v1/logs"):  # a google.rpc.Status in the request's encoding
            assert json.loads(answer)["code"] == 8  # RESOURCE_EXHAUSTED
        else:
            error_of(status, answer)
        await assert_serving(client)
        # Reading on (aiohttp's "lingering") would inflate the whole GiB: seconds of CPU. CPU
        # time of this process (client and app), not wall time: a busy machine slows both.
        assert time.process_time() - cpu < 0.5

    async def test_compressed_body_over_the_limit_by_length(self, client: Client) -> None:
        """A compressed body whose Content-Length alone is over the limit is refused unread."""
        body = gzip.compress(b" " * 100) + b"\0" * MAX_BODY
        status, headers, answer = await post(
            client, "/v1/conversations", body, **{"Content-Encoding": "gzip"}
        )
        assert status == 413
        assert headers["Connection"] == "close"
        error_of(status, answer)

    @pytest.mark.parametrize("cut", [0.2, 0.5, 0.9, 10])
    async def test_truncated_gzip(
        self, client: Client, caplog: pytest.LogCaptureFixture, cut: float
    ) -> None:
        """A gzip stream cut inside its data is a 400; the server logs no error for it."""
        whole = gzip.compress(dumps([conversation(id=f"t{i}") for i in range(3)]))
        body = whole[: int(len(whole) * cut)] if isinstance(cut, float) else whole[:cut]
        with caplog.at_level(logging.WARNING):
            status, _, answer = await post(
                client, "/v1/conversations", body, **{"Content-Encoding": "gzip"}
            )
            error_of(status, answer)
            await assert_serving(client)
        assert status == 400
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    async def test_gzip_trailer(self, client: Client) -> None:
        """A wrong CRC is a 400, and so is a missing trailer: the stream was cut short."""
        whole = gzip.compress(dumps(conversation(id="crc")))
        corrupt = whole[:-8] + bytes([whole[-8] ^ 1]) + whole[-7:]
        for body in (corrupt, whole[:-8]):
            status, _, answer = await post(
                client, "/v1/conversations", body, **{"Content-Encoding": "gzip"}
            )
            assert status == 400
            assert "cannot read the request body: gzip" in error_of(status, answer)["detail"]
        await assert_serving(client)

    @pytest.mark.parametrize(
        ("encoding", "body"),
        [("deflate", b"\x78\x9c garbage"), ("gzip", b"\x1f\x8b\x08\x00 garbage garbage")],
    )
    async def test_corrupt_stream_closes_the_connection(
        self, client: Client, caplog: pytest.LogCaptureFixture, encoding: str, body: bytes
    ) -> None:
        """A broken stream is a 400 with `Connection: close` and no error in the log."""
        with caplog.at_level(logging.WARNING):
            status, headers, answer = await post(
                client, "/v1/conversations", body, **{"Content-Encoding": encoding}
            )
            assert status == 400
            assert headers["Connection"] == "close"
            assert "cannot read the request body" in error_of(status, answer)["detail"]
            await assert_serving(client)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


class TestBatches:
    async def test_ndjson_broken_line_in_the_middle(self, client: Client) -> None:
        """Broken lines are rejected by line number; the good lines around them are kept."""
        lines = [
            dumps(conversation(id="n1")),
            b"{not json",
            b"",
            dumps(conversation(id="n2")) + b"\r",
            b"[1, 2",
            dumps(conversation(id="n3")),
        ]
        status, _, answer = await post(client, "/v1/conversations", b"\n".join(lines), NDJSON)
        assert status == 202
        result = json.loads(answer)
        assert result["accepted"] == 3
        assert [r["where"] for r in result["rejected"]] == ["line 2: $", "line 5: $"]
        assert sample(client, "agent_quality_conversations_total", agent="support-bot") == 3

    @pytest.mark.parametrize(
        ("path", "content_type", "status"),
        [
            ("/v1/conversations", JSON, 400),
            ("/v1/conversations", NDJSON, 400),
            ("/v1/feedback", JSON, 400),
            ("/v1/traces", JSON, 400),
            ("/v1/logs", JSON, 400),
            # An empty protobuf message is a valid, empty export.
            ("/v1/traces", "application/x-protobuf", 200),
            ("/v1/logs", "application/x-protobuf", 200),
        ],
    )
    @pytest.mark.parametrize("body", [b"", b" \n\r\n\t "])
    async def test_empty_bodies(
        self, client: Client, path: str, content_type: str, status: int, body: bytes
    ) -> None:
        """Empty bodies get a clear answer on every endpoint."""
        if content_type == "application/x-protobuf" and body:
            status = 400
        got, _, answer = await post(client, path, body, content_type)
        assert got == status, answer[:300]
        if got == 400 and path not in ("/v1/traces", "/v1/logs"):
            error_of(got, answer)
        await assert_serving(client)

    async def test_empty_array_is_an_empty_batch(self, client: Client) -> None:
        """`[]` is a batch of nothing: 202 with zero counts."""
        status, _, answer = await post(client, "/v1/conversations", b"[]")
        assert status == 202
        assert json.loads(answer) == {"accepted": 0, "sampled": 0, "dropped": 0}

    async def test_duplicate_ids(
        self, make_config: Callable[..., Config], aiohttp_client: Any
    ) -> None:
        """The same id twice is two receipts, each accounted for once."""
        # Never sampled, always kept for a late signal (every id in the band, no trigger).
        waiting = {"base_rate": 0.0, "boost_rate": 1.0, "daily_budget": {"min_samples": 0}}
        client = await aiohttp_client(create_app(make_config(sampling=waiting)))
        batch = [conversation(id="dup")] * 3
        assert (await client.post("/v1/conversations", json=batch)).status == 202
        assert (await client.post("/v1/conversations", json=conversation(id="dup"))).status == 202
        await client.app[PIPELINE].drain(60)
        received = sample(client, "agent_quality_conversations_total", agent="support-bot")
        not_sampled = sample(client, "agent_quality_not_sampled_total", agent="support-bot")
        buffered = sample(client, "agent_quality_late_buffer_conversations")
        assert (received, buffered) == (4, 1)
        assert received == not_sampled + buffered

    @pytest.mark.parametrize("content_type", [JSON, NDJSON])
    async def test_batch_at_and_over_the_limit(self, client: Client, content_type: str) -> None:
        """max_batch_items items are accepted; one more is a 413 for the whole batch."""

        def encode(count: int) -> bytes:
            items = [conversation(id=f"b{count}-{i}") for i in range(count)]
            if content_type == NDJSON:
                return b"\n".join(dumps(item) for item in items)
            return dumps(items)

        status, _, answer = await post(client, "/v1/conversations", encode(MAX_ITEMS), content_type)
        assert (status, json.loads(answer)["accepted"]) == (202, MAX_ITEMS)
        before = sample(client, "agent_quality_conversations_total", agent="support-bot")
        status, _, answer = await post(
            client, "/v1/conversations", encode(MAX_ITEMS + 1), content_type
        )
        assert status == 413
        assert f"limit of {MAX_ITEMS}" in error_of(status, answer)["error"]
        assert sample(client, "agent_quality_conversations_total", agent="support-bot") == before

    async def test_many_rejections_are_listed_up_to_a_cap(
        self, aiohttp_client: Any, make_config: Callable[..., Config]
    ) -> None:
        """A batch of 1000 bad items lists 100 of them and counts all."""
        app = create_app(make_config(server={"limits": {"max_batch_items": 1000}}))
        client = await aiohttp_client(app)
        bad = copy.deepcopy(conversation())
        bad["messages"] = []
        body = dumps([conversation(id="good"), *[bad] * 999])
        status, _, answer = await post(client, "/v1/conversations", body)
        result = json.loads(answer)
        assert (status, result["accepted"], result["rejected_count"]) == (202, 1, 999)
        assert len(result["rejected"]) == MAX_LISTED_REJECTIONS
        assert (
            sample(
                client, "agent_quality_rejected_total", endpoint="conversations", reason="invalid"
            )
            == 999
        )
