"""Span records -> conversations: grouping, transcript merging, completion, buffer bounds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exporter.config.model import OtlpConfig
from exporter.ingest.otlp import Partial, PartialBuffer, SpanRecord, assemble, extract
from exporter.model import Conversation, decode_conversation
from tests.support.fake_agent import Convention, FakeAgent, Script, make_span, provider, scripts


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sdk_spans(convention: Convention, plays: list[Script]) -> list[Span]:
    """Play ``plays`` with the real SDK and return the spans as OTLP encodes them."""
    memory = InMemorySpanExporter()
    tracer_provider = provider(memory, batch=False)
    agent = FakeAgent(tracer_provider.get_tracer("fake-agent"), convention=convention)
    for script in plays:
        agent.run(script)
    request = encode_spans(memory.get_finished_spans())
    tracer_provider.shutdown()
    return [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def records(spans: list[Span]) -> Iterator[SpanRecord]:
    for span in spans:
        record = extract(span)
        if record is not None:
            yield record


def feed(buffer: PartialBuffer, spans: list[Span]) -> list[bool]:
    """Add the spans' records, then end the traces whose root came, as the receiver does."""
    kept = [buffer.add(record, service="support-service") for record in records(spans)]
    for record in records(spans):
        if record.ends_conversation:
            buffer.end_trace(record.trace_id)
    return kept


def conversation_of(partial: Partial) -> Conversation:
    """Assemble and validate, as the receiver does."""
    assembled = assemble(
        key=partial.key,
        conversation_id=partial.conversation_id,
        records=partial.records,
        service=partial.service,
    )
    assert assembled is not None
    return decode_conversation(msgspec.json.encode(assembled))


def comparable(conversation: Conversation | dict[str, Any]) -> dict[str, Any]:
    """Keep what both paths set; read tool arguments whether sent as text or structured."""
    if isinstance(conversation, dict):
        conversation = decode_conversation(json.dumps(conversation).encode())
    document = msgspec.to_builtins(conversation)
    for message in document["messages"]:
        for call in message.get("tool_calls") or ():
            if isinstance(call["arguments"], str):
                call["arguments"] = json.loads(call["arguments"])
    return {key: document[key] for key in ("id", "agent", "model", "messages", "usage")}


def config(**changes: Any) -> OtlpConfig:
    return OtlpConfig(**changes)


class TestAssembly:
    @pytest.mark.parametrize("convention", ["genai", "openinference"])
    def test_same_conversation_as_the_json_sink_gets(self, convention: Convention) -> None:
        """Each conversation played through the SDK comes out as a client would send it."""
        plays = scripts(3, failing=1)
        buffer = PartialBuffer(config())
        assert all(feed(buffer, sdk_spans(convention, plays)))
        done = {partial.key: conversation_of(partial) for partial in buffer.take_ended()}
        assert len(buffer) == 0
        for script in plays:
            got = comparable(done[script.conversation_id])
            assert got == comparable(script.conversation(agent="support-bot"))
        failed = done["conv-1"]
        assert failed.signals == {"tool_error": True}
        tool_results = [m for m in failed.messages if m.role == "tool"]
        assert [m.error for m in tool_results] == [False, "refund service unavailable"]
        assert failed.metadata["source"] == "otlp"
        assert failed.metadata["service.name"] == "support-service"

    def test_multi_turn_conversation_over_several_traces(self) -> None:
        """With root-span completion off, one conversation id gathers every turn's trace."""
        clock = Clock()
        buffer = PartialBuffer(config(complete_on_root_span=False, idle_timeout=5), clock=clock)
        turn = Script("chat-1", user="Hi", answer="Hello! How can I help?")
        follow_up = Script("chat-1", user="Where is A-7?", answer="It ships tomorrow.")
        assert all(feed(buffer, sdk_spans("genai", [turn, follow_up])))
        assert buffer.take_ended() == []
        clock.now += 4
        assert buffer.take_expired() == ([], [])
        clock.now += 2
        (idle,), old = buffer.take_expired()
        assert old == []
        conversation = conversation_of(idle)
        assert len(idle.traces) == 2
        assert [m.text() for m in conversation.messages if m.role != "system"] == [
            "Hi",
            "Hello! How can I help?",
            "Where is A-7?",
            "It ships tomorrow.",
        ]

    def test_later_trace_of_a_completed_conversation_is_late(self) -> None:
        """With root-span completion on, a second trace of the same id counts as late."""
        buffer = PartialBuffer(config())
        first, second = (Script("chat-2", user=f"q{n}", answer=f"a{n}") for n in range(2))
        assert all(feed(buffer, sdk_spans("genai", [first])))
        assert len(buffer.take_ended()) == 1
        assert not any(feed(buffer, sdk_spans("genai", [second])))

    def test_conversation_id_found_on_a_child_span(self) -> None:
        """Spans keyed by trace join the conversation id another span of the trace names."""
        buffer = PartialBuffer(config())
        chat = {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": "q"}]}]
            ),
        }
        # The trace's first span carries no id; the next one does; the root is not GenAI.
        assert buffer.add(_record(make_span(chat, span=2, parent=1)), service=None)
        tagged = {**chat, "gen_ai.conversation.id": "c-42"}
        assert buffer.add(_record(make_span(tagged, span=3, parent=1, start=2)), service=None)
        assert len(buffer) == 1
        buffer.end_trace((1).to_bytes(16, "big"))
        (partial,) = buffer.take_ended()
        assert partial.key == "c-42"
        assert len(partial.records) == 2

    def test_without_content_capture_tools_still_make_a_conversation(self) -> None:
        """GenAI content is opt-in: tool spans alone still give calls and their outcomes."""
        tool = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "refund",
            "gen_ai.tool.call.id": "c1",
        }
        spans = [
            make_span({"gen_ai.operation.name": "chat"}, span=2, parent=1),
            make_span(tool, span=3, parent=1, start=5, error="refund failed"),
        ]
        assembled = assemble(
            key="k", conversation_id=None, records=list(records(spans)), service="svc"
        )
        assert assembled is not None
        assert [m.role for m in assembled.messages] == ["assistant", "tool"]
        assert assembled.messages[1].error == "refund failed"
        assert assembled.agent == "svc"  # no gen_ai.agent.name: the service names the agent
        nothing = assemble(
            key="k", conversation_id=None, records=list(records(spans[:1])), service=None
        )
        assert nothing is None

    def test_usage_sums_llm_calls_and_falls_back_to_the_agent(self) -> None:
        """Agent spans repeat the LLM totals: they count only when no LLM span has usage."""
        answer = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}])
        agent = make_span(
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 500}
        )
        chat = {"gen_ai.operation.name": "chat", "gen_ai.output.messages": answer}

        def usage(*spans: Span) -> float | None:
            assembled = assemble(
                key="k", conversation_id=None, records=list(records(list(spans))), service=None
            )
            assert assembled is not None
            assert assembled.usage is not None
            return assembled.usage.input_tokens

        first = make_span({**chat, "gen_ai.usage.input_tokens": 30}, span=2, parent=1)
        second = make_span({**chat, "gen_ai.usage.input_tokens": 70}, span=3, parent=1)
        assert usage(agent, first, second) == 100
        assert usage(agent, make_span(chat, span=4, parent=1)) == 500


def _record(span: Span, size: int | None = None) -> SpanRecord:
    record = extract(span)
    assert record is not None
    if size is not None:
        record.size = size
    return record


class TestBuffer:
    def test_overflow_by_count_drops_the_oldest(self) -> None:
        """Past max_conversations the oldest conversations leave first."""
        buffer = PartialBuffer(config(max_conversations=3))
        for trace in range(1, 6):
            buffer.add(_record(make_span({"gen_ai.x": 1}, trace=trace, parent=9)), service=None)
        evicted = buffer.take_overflow()
        assert [p.key for p in evicted] == [(t).to_bytes(16, "big").hex() for t in (1, 2)]
        assert len(buffer) == 3

    def test_overflow_by_bytes(self) -> None:
        """Past max_bytes the oldest leave until the rest fits."""
        buffer = PartialBuffer(config(max_bytes=2500))
        for trace in range(1, 4):
            span = make_span({"gen_ai.x": 1}, trace=trace, parent=9)
            buffer.add(_record(span, size=1000), service=None)
        assert [p.key[-1] for p in buffer.take_overflow()] == ["1"]
        assert buffer.nbytes == 2000

    def test_spans_after_eviction_are_late(self) -> None:
        """An evicted conversation does not come back as a fragment."""
        buffer = PartialBuffer(config(max_conversations=1))
        buffer.add(_record(make_span({"gen_ai.x": 1}, trace=1, parent=9)), service=None)
        buffer.add(_record(make_span({"gen_ai.x": 1}, trace=2, parent=9)), service=None)
        assert len(buffer.take_overflow()) == 1
        assert not buffer.add(_record(make_span({"gen_ai.x": 1}, trace=1, span=2)), service=None)

    def test_max_age_completes_a_busy_conversation(self) -> None:
        """A conversation that never goes idle still leaves at max_age."""
        clock = Clock()
        buffer = PartialBuffer(config(idle_timeout=10, max_age=30), clock=clock)
        for step in range(4):
            span = make_span({"gen_ai.x": 1}, span=step + 1, parent=9)
            assert buffer.add(_record(span), service=None)
            clock.now += 9
        idle, old = buffer.take_expired()
        assert idle == []
        assert len(old) == 1

    def test_root_completion_can_be_turned_off(self) -> None:
        """complete_on_root_span false leaves ended conversations to the idle timeout."""
        buffer = PartialBuffer(config(complete_on_root_span=False))
        assert feed(buffer, [make_span({"gen_ai.operation.name": "invoke_agent"})]) == [True]
        assert buffer.take_ended() == []
        assert len(buffer) == 1

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["add", "end", "overflow", "tick", "expire"]),
                st.integers(1, 12),  # trace
                st.sampled_from([None, "a", "b"]),  # conversation id
                st.integers(1, 3000),  # size
            ),
            max_size=80,
        )
    )
    def test_bounds_and_byte_accounting_hold(
        self, operations: list[tuple[str, int, str | None, int]]
    ) -> None:
        """Any sequence of spans and sweeps keeps the bounds and the byte count right."""
        clock = Clock()
        bounds = config(max_conversations=4, max_bytes=6000, idle_timeout=3, max_age=10)
        buffer = PartialBuffer(bounds, clock=clock)
        added = removed = 0

        def took(partials: list[Partial]) -> None:
            nonlocal removed
            removed += sum(p.nbytes for p in partials)

        for n, (operation, trace, conversation_id, size) in enumerate(operations):
            if operation == "add":
                attributes: dict[str, Any] = {"gen_ai.x": 1}
                if conversation_id is not None:
                    attributes["gen_ai.conversation.id"] = conversation_id
                span = make_span(attributes, trace=trace, span=n + 1, parent=99)
                if buffer.add(_record(span, size), service=None):
                    added += size
            elif operation == "end":
                buffer.end_trace(trace.to_bytes(16, "big"))
                took(buffer.take_ended())
            elif operation == "overflow":
                took(buffer.take_overflow())
                assert len(buffer) <= bounds.max_conversations
                assert buffer.nbytes <= bounds.max_bytes
            elif operation == "tick":
                clock.now += 2
            else:
                idle, old = buffer.take_expired()
                took(idle + old)
            assert buffer.nbytes == added - removed
        took(buffer.take_all())
        assert (len(buffer), buffer.nbytes, added) == (0, 0, removed)
