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
from exporter.ingest.otlp import (
    Partial,
    PartialBuffer,
    SpanRecord,
    assemble,
    extract,
    extract_event,
)
from exporter.ingest.otlp.buffer import PARTIAL_BYTES
from exporter.model import Conversation, decode_conversation
from tests.support.fake_agent import (
    Convention,
    FakeAgent,
    Script,
    make_log,
    make_span,
    provider,
    scripts,
)


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
        records=partial.records(),
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
        assert len(partial.records()) == 2

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


#: The assistant's call of the ``refund`` tool, as gen_ai.output.messages records it.
CALL = [{"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "refund"}]}]


class TestContent:
    """What the transcript says when content comes late, hidden, or from events."""

    SAW = "refund failed: the payment service is down"

    def spans(self, *, next_call: bool) -> list[Span]:
        user = [{"role": "user", "parts": [{"type": "text", "content": "Refund A-1"}]}]
        first = {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps(user),
            "gen_ai.output.messages": json.dumps(CALL),
        }
        tool = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "refund",
            "gen_ai.tool.call.id": "c1",
        }
        response = {"type": "tool_call_response", "id": "c1", "response": self.SAW}
        result = [{"role": "tool", "parts": [response]}]
        answer = [{"role": "assistant", "parts": [{"type": "text", "content": "Sorry."}]}]
        second = {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps(user + CALL + result),
            "gen_ai.output.messages": json.dumps(answer),
        }
        spans = [
            make_span(first, span=2, parent=1, start=10),
            make_span(tool, span=3, parent=1, start=20, error="PaymentError: HTTP 503"),
        ]
        return spans + ([make_span(second, span=4, parent=1, start=30)] if next_call else [])

    @pytest.mark.parametrize("order", [1, -1])
    def test_tool_result_is_what_the_model_saw(self, order: int) -> None:
        """The next call's input beats the span's status message; the status marks the error."""
        spans = self.spans(next_call=True)[::order]
        assembled = assemble(
            key="k", conversation_id=None, records=list(records(spans)), service=None
        )
        assert assembled is not None
        (result,) = [m for m in assembled.messages if m.role == "tool"]
        assert result.content == self.SAW
        assert result.error == "PaymentError: HTTP 503"
        assert assembled.signals == {"tool_error": True}

    def test_status_message_when_the_model_input_was_not_recorded(self) -> None:
        """Without a next call, the failed tool's only text is its status message."""
        spans = self.spans(next_call=False)
        assembled = assemble(
            key="k", conversation_id=None, records=list(records(spans)), service=None
        )
        assert assembled is not None
        (result,) = [m for m in assembled.messages if m.role == "tool"]
        assert result.content == "PaymentError: HTTP 503"

    def test_openinference_redacted_values_are_no_content(self) -> None:
        """OPENINFERENCE_HIDE_*: "__REDACTED__" is no text, not a message saying it."""
        llm = {
            "openinference.span.kind": "LLM",
            "input.value": "__REDACTED__",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "__REDACTED__",
        }
        agent = {"openinference.span.kind": "AGENT", "input.value": "__REDACTED__"}
        tool = {
            "openinference.span.kind": "TOOL",
            "tool.name": "refund",
            "tool.id": "c9",
            "input.value": "__REDACTED__",
            "output.value": "__REDACTED__",
        }
        spans = [
            make_span(agent),
            make_span(llm, span=2, parent=1),
            make_span(tool, span=3, parent=1),
        ]
        assembled = assemble(
            key="k", conversation_id=None, records=list(records(spans)), service="s"
        )
        assert assembled is not None
        assert [(m.role, m.content) for m in assembled.messages] == [
            ("assistant", None),
            ("tool", None),
        ]
        assert assembled.messages[1].tool_call_id == "c9"
        assert not assembled.has_text()

    def test_events_take_their_span_place(self) -> None:
        """An event's messages sit at its span's times, before later spans' messages."""
        call = {"gen_ai.operation.name": "chat"}
        answer = [{"role": "assistant", "parts": [{"type": "text", "content": "Done."}]}]
        question = [{"role": "user", "parts": [{"type": "text", "content": "Refund A-1"}]}]
        spans = [
            make_span(call, span=2, parent=1, start=10),
            make_span(
                {**call, "gen_ai.output.messages": json.dumps(answer)}, span=3, parent=1, start=50
            ),
        ]
        late_event = make_log(DETAILS, {"gen_ai.input.messages": question}, span=2, time=99)
        event = extract_event(late_event, DETAILS)
        assert event is not None
        assembled = assemble(
            key="k", conversation_id=None, records=[*records(spans), event], service=None
        )
        assert assembled is not None
        assert [m.text() for m in assembled.messages] == ["Refund A-1", "Done."]


def _record(span: Span) -> SpanRecord:
    record = extract(span)
    assert record is not None
    return record


DETAILS = "gen_ai.client.inference.operation.details"


def _sized(size: int) -> dict[str, Any]:
    """Return span attributes whose record grows with ``size``: a user message that long."""
    message = [{"role": "user", "parts": [{"type": "text", "content": "x" * size}]}]
    return {"gen_ai.input.messages": json.dumps(message)}


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
        one = PartialBuffer(config())
        one.add(_record(make_span(_sized(1000), trace=1, parent=9)), service=None)
        each = one.nbytes
        assert 1000 < each < 1000 + PARTIAL_BYTES + 400  # the content, and what holds it
        buffer = PartialBuffer(config(max_bytes=each * 2 + each // 2))
        for trace in range(1, 4):
            buffer.add(_record(make_span(_sized(1000), trace=trace, parent=9)), service=None)
        assert [p.key[-1] for p in buffer.take_overflow()] == ["1"]
        assert buffer.nbytes == 2 * each

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
                st.sampled_from(["add", "bare", "event", "end", "overflow", "tick", "expire"]),
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
        """Any sequence of spans, events and sweeps keeps the bounds and the byte count right.

        ``bare`` is an LLM span without content (span id = the trace number), which an ``event``
        for that span id completes; an ended conversation leaves once it waits for none.
        """
        clock = Clock()
        bounds = config(max_conversations=4, max_bytes=6000, idle_timeout=3, max_age=10)
        buffer = PartialBuffer(bounds, clock=clock)
        added = removed = 0

        def took(partials: list[Partial]) -> None:
            nonlocal removed
            removed += sum(p.nbytes for p in partials)

        for n, (operation, trace, conversation_id, size) in enumerate(operations):
            if operation in ("add", "bare", "event"):
                attributes = (
                    _sized(size) if operation == "add" else {"gen_ai.operation.name": "chat"}
                )
                if conversation_id is not None:
                    attributes["gen_ai.conversation.id"] = conversation_id
                if operation == "event":
                    log = make_log(DETAILS, attributes, trace=trace, span=trace)
                    record = extract_event(log, DETAILS)
                    assert record is not None
                else:
                    span_id = trace if operation == "bare" else 100 + n
                    record = _record(make_span(attributes, trace=trace, span=span_id, parent=99))
                before = buffer.nbytes
                if buffer.add(record, service=None):
                    added += buffer.nbytes - before
                else:
                    assert buffer.nbytes == before
            elif operation == "end":
                buffer.end_trace(trace.to_bytes(16, "big"))
                ended = buffer.take_ended()
                assert all(partial.ready for partial in ended)
                took(ended)
            elif operation == "overflow":
                took(buffer.take_overflow())
                assert len(buffer) <= bounds.max_conversations
                assert buffer.nbytes <= buffer.held <= bounds.max_bytes
            elif operation == "tick":
                clock.now += 2
            else:
                idle, old = buffer.take_expired()
                took(idle + old)
            assert buffer.nbytes == added - removed
        took(buffer.take_all())
        assert (len(buffer), buffer.nbytes, added) == (0, 0, removed)
