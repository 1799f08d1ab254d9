"""Reading spans: OTLP values, message shapes, flattened attributes, GenAI and OpenInference."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from exporter.exceptions import InvalidPayload
from exporter.ingest.otlp import JSON, PROTOBUF, decode_request, extract, media_type
from exporter.ingest.otlp.flat import openinference_messages, unflatten
from exporter.ingest.otlp.messages import from_any, from_genai, from_openai, system
from exporter.ingest.otlp.values import from_json, to_python
from exporter.ingest.otlp.wire import encode_response, encode_status
from exporter.model import Message, ToolCall
from tests.support.fake_agent import any_value, export_request, make_span

_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_TEXT = st.text(st.characters(exclude_categories=_SURROGATES))  # protobuf strings are valid UTF-8


class TestValues:
    def test_structured_values_become_python(self) -> None:
        """kvlist and array values nest as dicts and lists."""
        value = {"role": "user", "parts": [{"type": "text", "content": "hi"}], "n": 2, "x": 0.5}
        assert to_python(any_value(value)) == value

    def test_json_strings_are_parsed_and_other_text_kept(self) -> None:
        """GenAI allows JSON strings for structured attributes; plain text stays text."""
        assert from_json('[{"a": 1}]') == [{"a": 1}]
        assert from_json("[not json") == "[not json"
        assert from_json("hello") == "hello"
        assert from_json([1]) == [1]

    @given(
        st.recursive(
            _TEXT | st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.floats(allow_nan=False),
            lambda children: st.lists(children) | st.dictionaries(_TEXT, children),
            max_leaves=20,
        )
    )
    def test_round_trip(self, value: object) -> None:
        """Whatever a Python SDK can put in an AnyValue comes back unchanged."""
        assert to_python(any_value(value)) == value


class TestMessages:
    def test_genai_parts(self) -> None:
        """Text parts join; tool calls keep id, name and arguments; blobs and reasoning drop."""
        message = {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "hidden"},
                {"type": "text", "content": "Let me check."},
                {"type": "blob", "modality": "image", "content": "aGk="},
                {"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"q": 1}},
            ],
        }
        assert from_genai(message) == [
            Message(
                role="assistant",
                content="Let me check.",
                tool_calls=[ToolCall(id="c1", name="lookup", arguments={"q": 1})],
            )
        ]

    def test_tool_results_become_tool_messages_whatever_the_role(self) -> None:
        """Anthropic-style tool results inside a user message are tool messages."""
        message = {
            "role": "user",
            "parts": [
                {"type": "tool_call_response", "id": "c1", "response": {"ok": True}},
                {"type": "text", "content": "thanks"},
            ],
        }
        assert from_genai(message) == [
            Message(role="user", content="thanks"),
            Message(role="tool", tool_call_id="c1", content='{"ok":true}'),
        ]

    def test_openai_shapes(self) -> None:
        """Nested function calls, multi-part content and tool results are read."""
        assert from_openai(
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{}"}}],
            }
        ) == [
            Message(
                role="assistant",
                content="a\nb",
                tool_calls=[ToolCall(id="t", name="f", arguments="{}")],
            )
        ]
        assert from_openai({"role": "tool", "id": "t", "content": "42"}) == [
            Message(role="tool", tool_call_id="t", content="42")
        ]

    def test_unknown_roles_and_empty_messages_are_skipped(self) -> None:
        """A role that cannot be placed, or a message without text or calls, says nothing."""
        assert (
            from_any([{"role": "narrator", "content": "x"}, {"role": "user", "content": None}])
            == []
        )
        assert from_any({"role": "model", "parts": [{"type": "text", "content": "hi"}]}) == [
            Message(role="assistant", content="hi")
        ]

    def test_system_instructions(self) -> None:
        """Instruction parts become one system message."""
        parts = [{"type": "text", "content": "Be brief."}, {"type": "text", "content": "Be kind."}]
        assert system(parts) == Message(role="system", content="Be brief.\nBe kind.")
        assert system("Be brief.") == Message(role="system", content="Be brief.")
        assert system(None) is None


class TestFlattened:
    def test_unflatten_rebuilds_lists(self) -> None:
        """Indexed keys become lists in index order, nested names become dicts."""
        attrs = {
            "p.1.role": "assistant",
            "p.0.role": "user",
            "p.0.tool_calls.1.name": "b",
            "p.0.tool_calls.0.name": "a",
            "p.x.role": "ignored",
            "other": 1,
        }
        assert unflatten(attrs, "p.") == [
            {"role": "user", "tool_calls": [{"name": "a"}, {"name": "b"}]},
            {"role": "assistant"},
        ]

    def test_openinference_contents_and_tool_calls(self) -> None:
        """message.contents and message.tool_calls map to the OpenAI shape."""
        prefix = "llm.output_messages.0.message"
        attrs = {
            f"{prefix}.role": "assistant",
            f"{prefix}.contents.0.message_content.type": "text",
            f"{prefix}.contents.0.message_content.text": "Checking.",
            f"{prefix}.tool_calls.0.tool_call.id": "c1",
            f"{prefix}.tool_calls.0.tool_call.function.name": "lookup",
            f"{prefix}.tool_calls.0.tool_call.function.arguments": '{"q": 1}',
        }
        (item,) = openinference_messages(attrs, "llm.output_messages.")
        assert from_openai(item) == [
            Message(
                role="assistant",
                content="Checking.",
                tool_calls=[ToolCall(id="c1", name="lookup", arguments='{"q": 1}')],
            )
        ]


class TestExtract:
    def test_plain_spans_are_not_kept(self) -> None:
        """A span without GenAI or OpenInference attributes contributes nothing."""
        assert extract(make_span({"http.route": "/orders", "session.id": "s"})) is None

    def test_structured_genai_attributes(self) -> None:
        """Messages recorded as structured values (not JSON strings) are read the same."""
        record = extract(
            make_span(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "m-1",
                    "gen_ai.response.model": "m-1-2026",
                    "gen_ai.conversation.id": "c-9",
                    "gen_ai.usage.input_tokens": 11,
                    "gen_ai.usage.output_tokens": 7,
                    "gen_ai.input.messages": [
                        {"role": "user", "parts": [{"type": "text", "content": "hi"}]}
                    ],
                    "gen_ai.output.messages": [
                        {"role": "assistant", "parts": [{"type": "text", "content": "a"}]},
                        {"role": "assistant", "parts": [{"type": "text", "content": "b"}]},
                    ],
                },
                parent=5,
            )
        )
        assert record is not None
        assert (record.kind, record.model, record.conversation_id) == ("llm", "m-1-2026", "c-9")
        assert (record.input_tokens, record.output_tokens) == (11, 7)
        assert record.inputs == [Message(role="user", content="hi")]
        assert record.outputs == [Message(role="assistant", content="a")]  # the first choice
        assert not record.ends_conversation

    def test_older_genai_events(self) -> None:
        """Per-message events (up to semconv 1.36), flat or with gen_ai.event.content."""
        call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        record = extract(
            make_span(
                {"gen_ai.system": "openai", "gen_ai.usage.prompt_tokens": 3},
                events=(
                    ("gen_ai.system.message", {"content": "Be brief."}),
                    ("gen_ai.user.message", {"gen_ai.event.content": '{"content": "hi"}'}),
                    ("gen_ai.assistant.message", {"tool_calls": json.dumps([call])}),
                    ("gen_ai.tool.message", {"id": "t1", "content": "42"}),
                    (
                        "gen_ai.choice",
                        {"index": 0, "message": json.dumps({"content": "It is 42."})},
                    ),
                ),
            )
        )
        assert record is not None
        assert record.input_tokens == 3
        assert [m.role for m in record.inputs] == ["system", "user", "assistant", "tool"]
        assert record.inputs[2].tool_calls == [ToolCall(id="t1", name="f", arguments="{}")]
        assert record.outputs == [Message(role="assistant", content="It is 42.")]

    def test_deprecated_prompt_and_openllmetry(self) -> None:
        """gen_ai.prompt as JSON and OpenLLMetry's gen_ai.prompt.N.* are both read."""
        record = extract(
            make_span(
                {
                    "gen_ai.prompt": json.dumps([{"role": "user", "content": "q"}]),
                    "gen_ai.completion.0.role": "assistant",
                    "gen_ai.completion.0.content": "a",
                }
            )
        )
        assert record is not None
        assert record.inputs == [Message(role="user", content="q")]
        assert record.outputs == [Message(role="assistant", content="a")]

    def test_evaluation_events_become_scores(self) -> None:
        """gen_ai.evaluation.result events carry upstream scores."""
        record = extract(
            make_span(
                {"gen_ai.operation.name": "invoke_agent"},
                events=(
                    (
                        "gen_ai.evaluation.result",
                        {"gen_ai.evaluation.name": "csat", "gen_ai.evaluation.score.value": 4.0},
                    ),
                ),
            )
        )
        assert record is not None
        assert record.scores == {"csat": 4.0}

    @pytest.mark.parametrize(
        ("attributes", "error", "events", "message"),
        [
            ({}, "timeout after 5s", (), "timeout after 5s"),
            ({"error.type": "ToolError"}, None, (), "ToolError"),
            ({}, "", (("exception", {"exception.message": "boom"}),), "boom"),
        ],
    )
    def test_failed_tools(
        self,
        attributes: dict[str, str],
        error: str | None,
        events: tuple[tuple[str, dict[str, str]], ...],
        message: str,
    ) -> None:
        """Status ERROR or error.type marks a tool run failed, with the best message at hand."""
        record = extract(
            make_span(
                {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t", **attributes},
                error=error,
                events=events,
            )
        )
        assert record is not None
        assert record.tool is not None
        assert record.tool.error
        assert record.tool.error_message == message

    def test_openinference_tool_and_tokens(self) -> None:
        """OpenInference TOOL spans and llm.token_count.* are read."""
        tool = extract(
            make_span(
                {
                    "openinference.span.kind": "TOOL",
                    "tool.name": "lookup",
                    "input.value": '{"q": 1}',
                    "output.value": "found",
                    "session.id": "s-1",
                }
            )
        )
        assert tool is not None
        assert tool.tool is not None
        assert (tool.tool.name, tool.tool.arguments, tool.tool.result) == (
            "lookup",
            '{"q": 1}',
            "found",
        )
        assert not tool.tool.error
        assert tool.conversation_id == "s-1"
        llm = extract(
            make_span(
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "m",
                    "llm.token_count.prompt": 5,
                    "llm.token_count.completion": 2,
                    "llm.cost.total": 0.25,
                }
            )
        )
        assert llm is not None
        assert (llm.model, llm.input_tokens, llm.output_tokens, llm.cost_usd) == ("m", 5, 2, 0.25)

    @pytest.mark.parametrize(
        ("kind", "parent", "flags", "ends"),
        [
            ("invoke_agent", None, 0, True),  # the root of its trace
            ("invoke_agent", 7, 0x300, True),  # called from another process
            ("invoke_agent", 7, 0x100, False),  # a local child
            ("invoke_agent", 7, 0, False),  # remoteness unknown: only the root counts
            ("execute_tool", 7, 0x300, False),  # a tool in a tool service ends nothing
        ],
    )
    def test_which_spans_end_a_conversation(
        self, kind: str, parent: int | None, flags: int, ends: bool
    ) -> None:
        """Root spans and agent spans with a remote parent end their conversation."""
        record = extract(make_span({"gen_ai.operation.name": kind}, parent=parent, flags=flags))
        assert record is not None
        assert record.ends_conversation is ends


def _deep_protobuf() -> bytes:
    """Return a request whose one attribute nests arrays past what decoders accept (100)."""
    value = b"\x0a\x01x"  # AnyValue{string_value: "x"}
    for _ in range(150):
        array = b"\x0a" + _varint(len(value)) + value  # ArrayValue{values: [value]}
        value = b"\x2a" + _varint(len(array)) + array  # AnyValue{array_value: ...}
    attribute = b"\x0a\x01a\x12" + _varint(len(value)) + value  # KeyValue{key, value}
    span = b"\x0a\x10" + b"\x01" * 16 + b"\x12\x08" + b"\x02" * 8
    span += b"\x4a" + _varint(len(attribute)) + attribute  # Span.attributes (field 9)
    scope = b"\x12" + _varint(len(span)) + span  # ScopeSpans.spans (field 2)
    resource = b"\x12" + _varint(len(scope)) + scope  # ResourceSpans.scope_spans (field 2)
    return b"\x0a" + _varint(len(resource)) + resource


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


_DEEP_JSON = (
    b'{"resourceSpans": [{"resource": {"attributes": [{"key": "a", "value": '
    + b'{"arrayValue": {"values": [' * 200
    + b"]}}" * 200
    + b"}]}}]}"
)
_DEEP_PROTOBUF = _deep_protobuf()


class TestWire:
    def test_media_types(self) -> None:
        """Protobuf and JSON, with parameters; anything else is unsupported."""
        assert media_type("application/x-protobuf") == PROTOBUF
        assert media_type("application/json; charset=utf-8") == JSON
        assert media_type("text/plain") is None

    def test_protobuf_round_trip(self) -> None:
        """The binary encoding decodes to the same request."""
        request = export_request(make_span({"gen_ai.operation.name": "chat"}))
        assert decode_request(request.SerializeToString(), encoding=PROTOBUF) == request

    def test_json_with_hex_ids_and_unknown_fields(self) -> None:
        """OTLP/JSON: hex ids, lowerCamelCase or snake_case names, unknown fields ignored."""
        request = export_request(make_span({"gen_ai.operation.name": "chat"}, trace=0xAB, span=3))
        document = json_format.MessageToDict(request)
        span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        span["traceId"] = "000000000000000000000000000000ab"
        span["spanId"] = "0000000000000003"
        span["futureField"] = {"x": 1}
        decoded = decode_request(json.dumps(document).encode(), encoding=JSON)
        assert decoded == request
        snake = {"resource_spans": [{"scope_spans": [{"spans": [{"trace_id": "ab" * 16}]}]}]}
        decoded = decode_request(json.dumps(snake).encode(), encoding=JSON)
        assert decoded.resource_spans[0].scope_spans[0].spans[0].trace_id == b"\xab" * 16

    @pytest.mark.parametrize(
        ("body", "encoding", "where"),
        [
            (b"{not json", JSON, "$"),
            (b"[]", JSON, "$"),
            (
                b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
                JSON,
                "$.resourceSpans[0].scopeSpans[0].spans[0].traceId",
            ),
            (b'{"resourceSpans": 5}', JSON, "$"),
            (export_request(make_span({"a": "b"})).SerializeToString()[:-3], PROTOBUF, "$"),
            (b"\xff\xff\xff\xff", PROTOBUF, "$"),
            (b"[" * 100_000, JSON, "$"),
            (_DEEP_JSON, JSON, "$"),
            (_DEEP_PROTOBUF, PROTOBUF, "$"),
        ],
    )
    def test_undecodable_bodies(self, body: bytes, encoding: str, where: str) -> None:
        """Broken bodies raise InvalidPayload saying where."""
        with pytest.raises(InvalidPayload) as raised:
            decode_request(body, encoding=encoding)
        assert raised.value.where == where
        assert len(raised.value.message) < 400

    def test_responses_in_the_request_encoding(self) -> None:
        """Partial success and Status bodies encode as protobuf or OTLP/JSON."""
        body = encode_response(rejected=2, error_message="bad ids", encoding=JSON)
        assert json.loads(body) == {
            "partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad ids"}
        }
        response = ExportTraceServiceResponse.FromString(
            encode_response(rejected=0, error_message="", encoding=PROTOBUF)
        )
        assert not response.HasField("partial_success")
        status = Status.FromString(encode_status(code=3, message="broken", encoding=PROTOBUF))
        assert (status.code, status.message) == (3, "broken")
