"""The HTTP sink against the real app factory: answers, errors, limits, auth, draining."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from aiohttp import web

from exporter.sampling import rate_threshold, stable_hash
from exporter.web.guard import json_errors
from exporter.web.keys import PIPELINE, STATE
from tests.conftest import conversation
from tests.support.app import Client, MakeClient, sample

ALL = {"sampling": {"base_rate": 1.0}}
NONE = {"sampling": {"base_rate": 0.0, "boost_rate": 0.0, "daily_budget": {"min_samples": 0}}}


async def settle(client: Client) -> None:
    """Wait until the pipeline has scored everything queued."""
    await client.app[PIPELINE].drain(60)


class TestConversations:
    async def test_single_object_is_accepted_and_scored(self, client_for: MakeClient) -> None:
        """One conversation: 202 with counts at once, then its scores in the histogram."""
        client = await client_for(**ALL)
        response = await client.post("/v1/conversations", json=conversation())
        assert response.status == 202
        assert await response.json() == {"accepted": 1, "sampled": 1, "dropped": 0}
        await settle(client)
        labels = {"agent": "support-bot", "dimension": "tool_success"}
        assert sample(client, "agent_quality_score_count", **labels) == 1
        assert sample(client, "agent_quality_score_sum", **labels) == 1.0
        assert sample(client, "agent_quality_scored_total", agent="support-bot") == 1

    async def test_array_and_ndjson(self, client_for: MakeClient) -> None:
        """A JSON array and NDJSON are batches; every item is counted."""
        client = await client_for(**ALL)
        batch = [conversation(id=f"a{i}") for i in range(3)]
        response = await client.post("/v1/conversations", json=batch)
        assert (await response.json())["accepted"] == 3
        body = "\n".join(json.dumps(conversation(id=f"n{i}")) for i in range(4)) + "\n"
        response = await client.post(
            "/v1/conversations", data=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert response.status == 202
        assert (await response.json())["accepted"] == 4
        assert sample(client, "agent_quality_conversations_total", agent="support-bot") == 7

    async def test_gzip_body(self, client_for: MakeClient) -> None:
        """Content-Encoding: gzip is accepted."""
        client = await client_for(**ALL)
        body = gzip.compress(json.dumps([conversation(id="g1"), conversation(id="g2")]).encode())
        response = await client.post(
            "/v1/conversations",
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.status == 202
        assert (await response.json())["accepted"] == 2

    async def test_bad_item_does_not_lose_good_ones(self, client_for: MakeClient) -> None:
        """A batch with an invalid item keeps the valid ones and says what was rejected."""
        client = await client_for(**ALL)
        bad = conversation(id="b")
        bad["messages"][0]["role"] = "robot"
        response = await client.post(
            "/v1/conversations", json=[conversation(id="a"), bad, conversation(id="c")]
        )
        assert response.status == 202
        answer = await response.json()
        assert answer["accepted"] == 2
        assert answer["rejected_count"] == 1
        assert answer["rejected"][0]["index"] == 1
        assert answer["rejected"][0]["where"] == "$[1].messages[0].role"
        assert "robot" in answer["rejected"][0]["error"]

    async def test_ndjson_broken_line_in_the_middle(self, client_for: MakeClient) -> None:
        """A malformed NDJSON line is rejected by line number; the others are kept."""
        client = await client_for(**ALL)
        lines = [json.dumps(conversation(id="x")), "{not json", json.dumps(conversation(id="y"))]
        response = await client.post(
            "/v1/conversations",
            data="\n".join(lines),
            headers={"Content-Type": "application/x-ndjson"},
        )
        answer = await response.json()
        assert answer["accepted"] == 2
        assert answer["rejected"][0]["where"].startswith("line 2")

    async def test_unlisted_agent_becomes_other(self, client_for: MakeClient) -> None:
        """Agent names not in the allow-list never become label values."""
        client = await client_for(**ALL)
        await client.post("/v1/conversations", json=conversation(agent="evil\nname{x}"))
        assert sample(client, "agent_quality_conversations_total", agent="other") == 1
        text = await (await client.get("/metrics")).text()
        assert "evil" not in text


class TestWithoutText:
    """A conversation with no user or assistant text is not scored as a bad answer."""

    #: Only a tool call and its failed result: the agent's tracing sent no message content.
    TOOLS_ONLY = conversation(
        id="tools-only",
        messages=[
            {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "name": "f"}]},
            {"role": "tool", "tool_call_id": "t1", "content": "HTTP 503", "error": True},
        ],
    )

    async def test_only_scorers_that_need_no_text_score_it(self, client_for: MakeClient) -> None:
        """Default scorers: tool_success and user_feedback score it; final_answer does not."""
        client = await client_for(**ALL)
        response = await client.post("/v1/conversations", json=self.TOOLS_ONLY)
        assert await response.json() == {"accepted": 1, "sampled": 1, "dropped": 0}
        await settle(client)
        agent = {"agent": "support-bot"}
        for dimension, count in (("tool_success", 1), ("user_feedback", 1), ("final_answer", 0)):
            labels = {**agent, "dimension": dimension}
            assert sample(client, "agent_quality_score_count", **labels) == count, dimension
        assert sample(client, "agent_quality_flags_total", **agent, flag="no_final_answer") == 0
        assert sample(client, "agent_quality_flags_total", **agent, flag="tool_error") == 1

    async def test_dropped_as_no_content_without_such_scorers(self, client_for: MakeClient) -> None:
        """Only text checks configured: dropped at once, counted, no sample spent on it."""
        client = await client_for(scorers=[{"type": "final_answer"}], **ALL)
        response = await client.post("/v1/conversations", json=[self.TOOLS_ONLY, conversation()])
        assert await response.json() == {"accepted": 2, "sampled": 1, "dropped": 1}
        await settle(client)
        assert sample(client, "agent_quality_dropped_total", reason="no_content") == 1
        assert sample(client, "agent_quality_conversations_total", agent="support-bot") == 2
        assert sample(client, "agent_quality_scored_total", agent="support-bot") == 1
        assert (
            sample(client, "agent_quality_sampled_total", agent="support-bot", reason="base") == 1
        )


class TestErrors:
    @pytest.mark.parametrize(
        ("body", "where"),
        [
            (b"{not json", "$"),
            (b"42", "$"),
            (b'[{"id": "x"', "$"),
        ],
    )
    async def test_malformed_json_is_400(
        self, client_for: MakeClient, body: bytes, where: str
    ) -> None:
        """Malformed JSON gets 400 with the error body of docs/api.md."""
        client = await client_for()
        response = await client.post(
            "/v1/conversations", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        answer = await response.json()
        assert answer["error"]
        assert answer["detail"]["where"] == where

    async def test_schema_violation_is_400_naming_the_field(self, client_for: MakeClient) -> None:
        """A single invalid conversation is a 400 that says which field."""
        client = await client_for()
        response = await client.post("/v1/conversations", json=conversation(messages=[]))
        assert response.status == 400
        answer = await response.json()
        assert answer["detail"]["rejected"][0]["where"] == "$.messages"

    async def test_unsupported_content_type_is_415(self, client_for: MakeClient) -> None:
        """Only JSON and NDJSON are accepted."""
        client = await client_for()
        response = await client.post(
            "/v1/conversations", data=b"x", headers={"Content-Type": "text/plain"}
        )
        assert response.status == 415
        assert "text/plain" in (await response.json())["detail"]

    async def test_body_over_limit_is_413(self, client_for: MakeClient) -> None:
        """A body over max_body_bytes is refused with a JSON 413."""
        client = await client_for(server={"limits": {"max_body_bytes": 2048}})
        batch = [conversation(id=f"x{i}") for i in range(10)]
        response = await client.post("/v1/conversations", json=batch)
        assert response.status == 413
        assert (await response.json())["error"]

    async def test_gzip_bomb_is_413(self, client_for: MakeClient) -> None:
        """A small gzip body that inflates past the limit is refused, not inflated."""
        client = await client_for(server={"limits": {"max_body_bytes": 1 << 20}})
        bomb = gzip.compress(b"[" + b" " * (64 << 20) + b"]")
        assert len(bomb) < 100_000
        response = await client.post(
            "/v1/conversations",
            data=bomb,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.status == 413

    async def test_corrupt_gzip_is_400(self, client_for: MakeClient) -> None:
        """A body that claims gzip but is not gzip is a client error."""
        client = await client_for()
        response = await client.post(
            "/v1/conversations",
            data=b"definitely not gzip",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.status == 400

    async def test_batch_over_limit_is_413(self, client_for: MakeClient) -> None:
        """More items than max_batch_items is refused as a whole."""
        client = await client_for(server={"limits": {"max_batch_items": 2}})
        batch = [conversation(id=f"x{i}") for i in range(3)]
        response = await client.post("/v1/conversations", json=batch)
        assert response.status == 413
        assert "limit of 2" in (await response.json())["error"]

    async def test_unknown_path_is_json_404(self, client_for: MakeClient) -> None:
        """Even aiohttp's own errors carry the JSON error body."""
        client = await client_for()
        response = await client.get("/nope")
        assert response.status == 404
        assert (await response.json())["error"] == "Not Found"

    async def test_wrong_method_is_json_405_with_allow(self, client_for: MakeClient) -> None:
        """A known path asked with a method it does not take says which methods it does."""
        client = await client_for()
        response = await client.get("/v1/conversations")
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert (await response.json())["error"] == "Method Not Allowed"
        response = await client.delete("/metrics")
        assert response.status == 405
        assert response.headers["Allow"] == "GET,HEAD"
        assert (await client.head("/metrics")).status == 200

    async def test_bug_in_a_handler_is_a_logged_json_500(
        self, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A handler that raises answers 500 with the error shape, and the cause is logged."""

        async def broken(request: web.Request) -> web.Response:
            raise KeyError("bug")

        app = web.Application()
        app.router.add_get("/broken", json_errors(broken))
        client = await aiohttp_client(app)
        response = await client.get("/broken")
        assert response.status == 500
        assert (await response.json())["error"] == "internal error"
        assert "unhandled error on GET /broken" in caplog.text
        assert "KeyError" in caplog.text

    async def test_daemon_keeps_serving_after_bad_input(self, client_for: MakeClient) -> None:
        """After a string of bad requests a good one still goes through."""
        client = await client_for(**ALL)
        for body in (b"\xff\xfe", b"[" * 5000, b'{"id": NaN}', b"[1e999]"):
            response = await client.post(
                "/v1/conversations", data=body, headers={"Content-Type": "application/json"}
            )
            assert response.status == 400
        response = await client.post("/v1/conversations", json=conversation())
        assert response.status == 202


class TestAuth:
    async def test_bearer_token_required_on_ingest(
        self, client_for: MakeClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a token configured, ingest needs it; /metrics stays open by default."""
        monkeypatch.setenv("AQE_TEST_TOKEN", "tok-123")
        client = await client_for(server={"auth": {"bearer_token_env": "AQE_TEST_TOKEN"}})
        response = await client.post("/v1/conversations", json=conversation())
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["error"] == "unauthorized"
        response = await client.post(
            "/v1/conversations",
            json=conversation(),
            headers={"Authorization": "Bearer wrong"},
        )
        assert response.status == 401
        response = await client.post(
            "/v1/conversations",
            json=conversation(),
            headers={"Authorization": "Bearer tok-123"},
        )
        assert response.status == 202
        assert (await client.get("/metrics")).status == 200

    async def test_metrics_can_be_protected(
        self, client_for: MakeClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """protect_metrics puts /metrics behind the same token."""
        monkeypatch.setenv("AQE_TEST_TOKEN", "tok-123")
        client = await client_for(
            server={"auth": {"bearer_token_env": "AQE_TEST_TOKEN", "protect_metrics": True}}
        )
        assert (await client.get("/metrics")).status == 401
        response = await client.get("/metrics", headers={"Authorization": "Bearer tok-123"})
        assert response.status == 200


class TestFeedback:
    async def test_late_thumbs_down_gets_conversation_scored(self, client_for: MakeClient) -> None:
        """An unsampled conversation is scored when a late signal would have boosted it."""
        client = await client_for(
            sampling={"base_rate": 0.0, "boost_rate": 1.0, "daily_budget": {"min_samples": 0}}
        )
        answer = await (await client.post("/v1/conversations", json=conversation())).json()
        assert answer["sampled"] == 0
        response = await client.post(
            "/v1/feedback", json={"id": "c-7f3a", "signals": {"user_thumbs_down": True}}
        )
        assert response.status == 202
        assert (await response.json())["outcome"] == "sampled"
        await settle(client)
        labels = {"agent": "support-bot", "dimension": "user_feedback"}
        assert sample(client, "agent_quality_score_count", **labels) == 1
        assert sample(client, "agent_quality_score_sum", **labels) == 0.0
        assert sample(client, "agent_quality_sampled_total", agent="support-bot", reason="boost")

    async def test_unknown_id(self, client_for: MakeClient) -> None:
        """Feedback for an id the daemon does not hold (one a signal could boost) is unknown."""
        client = await client_for()
        response = await client.post("/v1/feedback", json={"id": "c-7f3a", "signals": {}})
        assert (await response.json())["outcome"] == "unknown"
        assert sample(client, "agent_quality_feedback_total", outcome="unknown") == 1

    async def test_outside_the_boost_band_nothing_is_kept(self, client_for: MakeClient) -> None:
        """An id no signal could boost is not sampled at once, and its feedback says so."""
        client = await client_for(sampling={"daily_budget": {"min_samples": 0}})
        above = next(f"o{i}" for i in range(100) if stable_hash(f"o{i}") >= rate_threshold(0.25))
        response = await client.post("/v1/conversations", json=conversation(id=above))
        assert await response.json() == {"accepted": 1, "sampled": 0, "dropped": 0}
        assert sample(client, "agent_quality_late_buffer_conversations") == 0
        assert sample(client, "agent_quality_not_sampled_total", agent="support-bot") == 1
        response = await client.post(
            "/v1/feedback", json={"id": above, "signals": {"user_thumbs_down": True}}
        )
        assert (await response.json())["outcome"] == "not_sampled"
        assert sample(client, "agent_quality_not_sampled_total", agent="support-bot") == 1

    async def test_signal_that_does_not_boost_keeps_it_waiting(
        self, client_for: MakeClient
    ) -> None:
        """A non-trigger signal leaves an in-band conversation in the buffer for another."""
        client = await client_for(sampling={"daily_budget": {"min_samples": 0}})
        await client.post("/v1/conversations", json=conversation())  # c-7f3a, in the band
        assert sample(client, "agent_quality_late_buffer_conversations") == 1
        response = await client.post(
            "/v1/feedback", json={"id": "c-7f3a", "signals": {"user_thumbs_up": True}}
        )
        assert (await response.json())["outcome"] == "not_sampled"
        assert sample(client, "agent_quality_late_buffer_conversations") == 1
        response = await client.post(
            "/v1/feedback", json={"id": "c-7f3a", "signals": {"escalation_requested": True}}
        )
        assert (await response.json())["outcome"] == "sampled"
        assert sample(client, "agent_quality_late_buffer_conversations") == 0

    async def test_invalid_feedback_is_400(self, client_for: MakeClient) -> None:
        """Feedback without signals is refused with the reason."""
        client = await client_for()
        response = await client.post("/v1/feedback", json={"id": "x"})
        assert response.status == 400
        assert "signals" in (await response.json())["detail"]


class TestOperations:
    async def test_health_ready_landing_openapi(self, client_for: MakeClient) -> None:
        """The operational endpoints answer as an operator expects."""
        client = await client_for()
        assert (await client.get("/-/healthy")).status == 200
        assert (await client.get("/-/ready")).status == 200
        landing = await client.get("/")
        assert "text/html" in landing.headers["Content-Type"]
        text = await landing.text()
        assert "/metrics" in text
        assert "support-bot" in text
        document = await (await client.get("/openapi.json")).json()
        assert "/v1/conversations" in document["paths"]
        assert "Conversation" in document["components"]["schemas"]

    async def test_metrics_openmetrics_negotiation(self, client_for: MakeClient) -> None:
        """/metrics speaks OpenMetrics when the scraper asks for it."""
        client = await client_for()
        response = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).rstrip().endswith("# EOF")

    async def test_draining_refuses_ingest_and_readiness(self, client_for: MakeClient) -> None:
        """While draining, /-/ready and ingest answer 503 and /metrics still works."""
        client = await client_for()
        client.app[STATE].begin_drain(5)
        assert (await client.get("/-/ready")).status == 503
        response = await client.post("/v1/conversations", json=conversation())
        assert response.status == 503
        assert response.headers["Retry-After"]
        assert (await client.get("/metrics")).status == 200


class TestAccounting:
    async def test_received_equals_not_sampled_buffered_scored_dropped(
        self, client_for: MakeClient
    ) -> None:
        """The invariant holds over a mixed load with drops and a tiny late buffer."""
        client = await client_for(
            sampling={
                "base_rate": 0.3,
                "daily_budget": {"min_samples": 0, "max_samples": 40},
                "late_signals": {"max_conversations": 25},
            },
            pipeline={"queue_size": 5, "workers": 1},
        )
        for start in range(0, 400, 50):
            batch = [conversation(id=f"acc-{i}") for i in range(start, start + 50)]
            assert (await client.post("/v1/conversations", json=batch)).status == 202
        await settle(client)
        agent = {"agent": "support-bot"}
        received = sample(client, "agent_quality_conversations_total", **agent)
        not_sampled = sample(client, "agent_quality_not_sampled_total", **agent)
        scored = sample(client, "agent_quality_scored_total", **agent)
        buffered = sample(client, "agent_quality_late_buffer_conversations")
        dropped = sum(
            sample(client, "agent_quality_dropped_total", reason=r)
            for r in ("queue_full", "daily_budget", "shutdown")
        )
        assert received == 400
        assert dropped > 0  # the queue of 5 overflowed and the budget of 40 ran out
        assert sample(client, "agent_quality_dropped_total", reason="daily_budget") > 0
        assert received == not_sampled + buffered + scored + dropped
