"""The built-in scorers on crafted conversations, the PII detectors, and the registry."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import itertools
import math
import re
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import Config, ScorerSpec, default_document, parse_config
from exporter.exceptions import ConfigError
from exporter.model import Conversation, Message, ToolCall, Usage
from exporter.pii import PII_KINDS, find_pii, luhn_valid
from exporter.scoring import (
    build_scorers,
    is_set,
    register_scorer_type,
    scorer_types,
)
from exporter.types import Scorer, ScoreResult

MakeConfig = Callable[..., Config]
#: Unicode decimal digits, for text hypothesis draws without any.
DIGITS: tuple[Literal["Nd"]] = ("Nd",)

#: Dimensions for the scorers that have none by default, declared as an operator would.
EXTRA_DIMENSIONS: list[dict[str, Any]] = [
    {"name": "refusal_rate", "scale": {"min": 0, "max": 1}, "higher_is_better": False},
    {"name": "pii_rate", "scale": {"min": 0, "max": 1}, "higher_is_better": False},
    {"name": "json_validity", "scale": {"min": 0, "max": 1}},
    {"name": "answer_chars", "scale": {"min": 0, "max": 2000}},
]


def _dimensions() -> list[dict[str, Any]]:
    """Return the default dimensions plus ``EXTRA_DIMENSIONS``."""
    dimensions: list[dict[str, Any]] = default_document()["dimensions"]
    return dimensions + EXTRA_DIMENSIONS


def _one(make_config: MakeConfig, entry: dict[str, Any], *, extra: bool = True) -> Scorer:
    sections: dict[str, Any] = {"scorers": [entry]}
    if extra:
        sections["dimensions"] = _dimensions()
    (scorer,) = build_scorers(make_config(**sections))
    return scorer


def _conv(*messages: dict[str, Any], **fields: Any) -> Conversation:
    document = {"id": "c-1", "agent": "support-bot", "messages": list(messages), **fields}
    return msgspec.convert(document, Conversation)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def tool(error: Any = None, content: str = "{}") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": "t", "content": content, "error": error}


CALL = {"role": "assistant", "content": None, "tool_calls": [{"id": "t", "name": "lookup"}]}


class TestBuildScorers:
    """The registry builds the configured scorers in order and names what is wrong."""

    def test_default_config(self, make_config: MakeConfig) -> None:
        """The embedded default builds one scorer per entry, named by the config."""
        config = make_config()
        scorers = build_scorers(config)
        assert [s.name for s in scorers] == [s.name for s in config.scorers]
        assert all(isinstance(s, Scorer) for s in scorers)

    def test_every_builtin_is_registered(self) -> None:
        """Each type in the config schema's enum (but the judge) has a factory."""
        assert set(scorer_types()) >= {
            "tool_success",
            "final_answer",
            "user_feedback",
            "refusal",
            "pii",
            "json_validity",
            "answer_length",
            "passthrough",
            "plugin",
        }

    def test_option_errors_name_the_entry(self, make_config: MakeConfig) -> None:
        """A factory's relative path is rebased onto $.scorers[i]."""
        config = make_config(
            scorers=[
                {"type": "final_answer"},
                {"type": "answer_length", "min_chars": 9, "max_chars": 3},
            ]
        )
        with pytest.raises(ConfigError) as caught:
            build_scorers(config)
        assert caught.value.path == "$.scorers[1].max_chars"
        assert caught.value.source == "test.yml"
        assert "min_chars (9)" in caught.value.message

    def test_unknown_type_in_code_built_config(self, make_config: MakeConfig) -> None:
        """A type nobody registered is named with the known ones."""
        config = dataclasses.replace(make_config(), scorers=(ScorerSpec(type="nope", name="x"),))
        with pytest.raises(ConfigError) as caught:
            build_scorers(config)
        assert caught.value.path == "$.scorers[0].type"
        assert "'nope'" in caught.value.message
        assert "tool_success" in caught.value.message

    def test_unknown_option_in_code_built_config(self, make_config: MakeConfig) -> None:
        """Options the schema would reject are rejected without it too."""
        spec = ScorerSpec(type="answer_length", name="len", options={"max_char": 5})
        config = dataclasses.replace(make_config(), scorers=(spec,))
        with pytest.raises(ConfigError) as caught:
            build_scorers(config)
        assert caught.value.path == "$.scorers[0].max_char"
        assert "max_chars" in caught.value.message

    def test_wrong_option_type_in_code_built_config(self, make_config: MakeConfig) -> None:
        """A boolean where a number belongs is named."""
        spec = ScorerSpec(type="answer_length", name="len", options={"max_chars": True})
        config = dataclasses.replace(make_config(), scorers=(spec,))
        with pytest.raises(ConfigError, match="expected an integer, got True"):
            build_scorers(config)

    def test_registered_type(self, make_config: MakeConfig) -> None:
        """A registered factory builds entries of its type."""

        class Constant:
            def __init__(self, spec: ScorerSpec, config: Config) -> None:
                self.name = spec.name

            async def score(self, conversation: Conversation) -> ScoreResult:
                return ScoreResult(scores={"coherence": 5.0})

        register_scorer_type("test_constant", Constant)
        spec = ScorerSpec(type="test_constant", name="always_five")
        config = dataclasses.replace(make_config(), scorers=(spec,))
        (scorer,) = build_scorers(config)
        assert scorer.name == "always_five"
        with pytest.raises(ValueError, match="already registered"):
            register_scorer_type("test_constant", lambda spec, config: Constant(spec, config))

    def test_factory_returning_no_scorer(self, make_config: MakeConfig) -> None:
        """A factory that returns something without score() is a config error, not a crash later."""

        def junk(spec: ScorerSpec, config: Config) -> object:
            return object()

        # Deliberately not a ScorerFactory: the registry's own check at build time is under test.
        register_scorer_type("test_broken", junk, replace=True)  # type: ignore[arg-type]
        config = dataclasses.replace(
            make_config(), scorers=(ScorerSpec(type="test_broken", name="b"),)
        )
        with pytest.raises(ConfigError, match="not a Scorer") as caught:
            build_scorers(config)
        assert caught.value.path == "$.scorers[0]"

    def test_unit_scorer_on_a_wider_scale(self, make_config: MakeConfig) -> None:
        """tool_success scores 0-1: pointing it at a 1-5 dimension is caught at start-up."""
        config = make_config(scorers=[{"type": "tool_success", "dimension": "coherence"}])
        with pytest.raises(ConfigError) as caught:
            build_scorers(config)
        assert caught.value.path == "$.scorers[0].dimension"
        assert "[1, 5]" in caught.value.message


class TestToolSuccess:
    """Share of tool results without an error."""

    async def test_ratio_and_flag(self, make_config: MakeConfig) -> None:
        """Two good results of three: 2/3 and tool_error; a string error counts as an error."""
        scorer = _one(make_config, {"type": "tool_success"})
        result = await scorer.score(
            _conv(user("hi"), CALL, tool(False), tool(None), tool("connection refused"))
        )
        assert result.scores == {"tool_success": pytest.approx(2 / 3)}
        assert result.flags == ("tool_error",)

    async def test_false_like_strings_are_success(self, make_config: MakeConfig) -> None:
        """Upstream "false", "0" and "" errors are no errors."""
        scorer = _one(make_config, {"type": "tool_success"})
        result = await scorer.score(_conv(CALL, tool("false"), tool("0"), tool(""), tool("FALSE")))
        assert result.scores == {"tool_success": 1.0}
        assert result.flags == ()

    async def test_no_tools_no_score(self, make_config: MakeConfig) -> None:
        """No tool call is no evidence: no score rather than an invented 1.0."""
        scorer = _one(make_config, {"type": "tool_success"})
        result = await scorer.score(_conv(user("hi"), assistant("hello")))
        assert result.scores == {}
        assert result.flags == ()

    async def test_undeclared_dimension_only_flags(self, make_config: MakeConfig) -> None:
        """Without a tool_success dimension the scorer still raises tool_error."""
        dims = [{"name": "coherence", "scale": {"min": 1, "max": 5}}]
        (scorer,) = build_scorers(make_config(dimensions=dims, scorers=[{"type": "tool_success"}]))
        result = await scorer.score(_conv(CALL, tool(True)))
        assert result.scores == {}
        assert result.flags == ("tool_error",)


class TestFinalAnswer:
    """Does the conversation end with an assistant message that has text."""

    @pytest.mark.parametrize(
        ("messages", "expected"),
        [
            ([user("hi"), assistant("hello")], 1.0),
            ([user("hi"), assistant([{"type": "text", "text": "part"}])], 1.0),
            ([user("hi"), assistant("done"), {"role": "system", "content": "log"}], 1.0),
            ([user("hi"), CALL, tool()], 0.0),
            ([user("hi"), CALL], 0.0),
            ([user("hi"), assistant("   \n")], 0.0),
            ([user("hi"), assistant([{"type": "image_url", "image_url": {"url": "x"}}])], 0.0),
            ([user("hi"), assistant("answer"), user("and then?")], 0.0),
            ([user("only a question")], 0.0),
            ([{"role": "system", "content": "be nice"}], 0.0),
        ],
        ids=[
            "text",
            "content-parts",
            "trailing-system",
            "ends-with-tool",
            "ends-with-call",
            "whitespace",
            "image-only",
            "user-last",
            "no-assistant",
            "system-only",
        ],
    )
    async def test_cases(
        self, make_config: MakeConfig, messages: list[dict[str, Any]], expected: float
    ) -> None:
        """Score 1 for an answer, else 0 and no_final_answer."""
        scorer = _one(make_config, {"type": "final_answer"})
        result = await scorer.score(_conv(*messages))
        assert result.scores == {"final_answer": expected}
        assert result.flags == (() if expected else ("no_final_answer",))


class TestUserFeedback:
    """Negative signals as a dimension and as flags."""

    @pytest.mark.parametrize(
        ("signals", "score", "flags"),
        [
            ({}, 1.0, ()),
            ({"user_thumbs_down": False, "escalation_requested": False}, 1.0, ()),
            ({"user_thumbs_down": True}, 0.0, ("user_thumbs_down",)),
            ({"user_thumbs_down": "false", "escalation_requested": "no"}, 1.0, ()),
            (
                {"user_thumbs_down": 1, "escalation_requested": "yes"},
                0.0,
                ("user_thumbs_down", "escalation_requested"),
            ),
            ({"user_thumbs_up": True}, 1.0, ()),
        ],
    )
    async def test_default_signals(
        self, make_config: MakeConfig, signals: dict[str, Any], score: float, flags: tuple[str, ...]
    ) -> None:
        """thumbs-down and escalation count; strings that mean false do not."""
        scorer = _one(make_config, {"type": "user_feedback"})
        result = await scorer.score(_conv(user("hi"), assistant("ok"), signals=signals))
        assert result.scores == {"user_feedback": score}
        assert result.flags == flags

    async def test_configured_signals_add_to_the_defaults(self, make_config: MakeConfig) -> None:
        """``signals`` adds negative signals; the defaults still count."""
        scorer = _one(make_config, {"type": "user_feedback", "signals": ["complaint_filed"]})
        complaint = _conv(assistant("ok"), signals={"complaint_filed": True})
        thumbs = _conv(assistant("ok"), signals={"user_thumbs_down": True})
        assert (await scorer.score(complaint)).flags == ("complaint_filed",)
        assert (await scorer.score(thumbs)).scores == {"user_feedback": 0.0}

    def test_signal_names_must_be_labels(self, make_config: MakeConfig) -> None:
        """A signal becomes a flag label, so the schema wants snake_case."""
        with pytest.raises(ConfigError) as caught:
            make_config(scorers=[{"type": "user_feedback", "signals": ["Bad Signal"]}])
        assert caught.value.path == "$.scorers[0].signals[0]"


class TestRefusal:
    """Refusal patterns against the final answer."""

    @pytest.mark.parametrize(
        "answer",
        [
            "I'm sorry, but I can't help with that.",
            "I\u2019m sorry, but I can\u2019t help with that request.",
            "I cannot assist with creating malware.",
            "I am unable to provide medical advice.",
            "I must decline this request.",
            "As an AI language model, I cannot browse the internet.",
            "Unfortunately that request goes against my guidelines.",
            "i won't help with that",
        ],
    )
    async def test_refusals_flagged(self, make_config: MakeConfig, answer: str) -> None:
        """Common refusal phrasings raise ``refusal``."""
        scorer = _one(make_config, {"type": "refusal"})
        result = await scorer.score(_conv(user("do it"), assistant(answer)))
        assert result.flags == ("refusal",)
        assert result.scores == {}

    @pytest.mark.parametrize(
        "answer",
        [
            "Sorry for the delay! Your order ships tomorrow.",
            "I can help with that: the refund is on its way.",
            "You cannot return opened items, but I can offer store credit.",
            "I'm sorry to hear that. I have reset your password.",
            "Restarting the wifi cannot help here; replace the router.",
            "",
        ],
    )
    async def test_helpful_answers_not_flagged(self, make_config: MakeConfig, answer: str) -> None:
        """Apologies and helpful answers are not refusals."""
        scorer = _one(make_config, {"type": "refusal"})
        result = await scorer.score(_conv(user("help"), assistant(answer)))
        assert result.flags == ()

    async def test_only_the_final_answer_counts(self, make_config: MakeConfig) -> None:
        """An early refusal followed by a real answer is not a refusal."""
        scorer = _one(make_config, {"type": "refusal"})
        conversation = _conv(
            user("x"), assistant("I can't help with that."), user("please"), assistant("Done.")
        )
        assert (await scorer.score(conversation)).flags == ()

    async def test_custom_patterns_and_dimension(self, make_config: MakeConfig) -> None:
        """``patterns`` replaces the defaults; with a dimension it scores 1 on refusal."""
        scorer = _one(
            make_config,
            {"type": "refusal", "patterns": [r"\bnicht möglich\b"], "dimension": "refusal_rate"},
        )
        german = await scorer.score(_conv(assistant("Das ist leider NICHT MÖGLICH.")))
        english = await scorer.score(_conv(assistant("I cannot help with that.")))
        assert german == ScoreResult(scores={"refusal_rate": 1.0}, flags=("refusal",))
        assert english == ScoreResult(scores={"refusal_rate": 0.0}, flags=())

    async def test_patterns_with_inline_flags(self, make_config: MakeConfig) -> None:
        """Patterns that cannot be joined into one regex still work one by one."""
        patterns = [r"(?x) not \s allowed", "nope"]  # (?x) is only valid at a regex's start
        scorer = _one(make_config, {"type": "refusal", "patterns": patterns})
        assert (await scorer.score(_conv(assistant("That is NOT allowed.")))).flags == ("refusal",)
        assert (await scorer.score(_conv(assistant("Nope.")))).flags == ("refusal",)
        assert (await scorer.score(_conv(assistant("Allowed.")))).flags == ()

    def test_invalid_regex(self, make_config: MakeConfig) -> None:
        """A broken regex names its index."""
        config = make_config(scorers=[{"type": "refusal", "patterns": ["ok", "(unclosed"]}])
        with pytest.raises(ConfigError) as caught:
            build_scorers(config)
        assert caught.value.path == "$.scorers[0].patterns[1]"
        assert "invalid regex" in caught.value.message


class TestPiiScorer:
    """PII flags over the assistant's messages."""

    async def test_flags_per_kind(self, make_config: MakeConfig) -> None:
        """Email, phone and card in assistant messages raise one flag each."""
        scorer = _one(make_config, {"type": "pii"})
        conversation = _conv(
            user("who do I call?"),
            assistant("Write to jane.doe@example.com"),
            CALL,
            tool(content="{}"),
            assistant(
                [{"type": "text", "text": "or call +1 (555) 123-4567; card 4111 1111 1111 1111"}]
            ),
        )
        result = await scorer.score(conversation)
        assert result.flags == ("pii_email", "pii_phone", "pii_card")
        assert result.scores == {}

    async def test_user_and_tool_text_ignored(self, make_config: MakeConfig) -> None:
        """Only what the assistant said counts: the user may share their own email."""
        scorer = _one(make_config, {"type": "pii"})
        conversation = _conv(
            user("I am jane@example.com, card 4111111111111111"),
            CALL,
            tool(content='{"email": "jane@example.com"}'),
            assistant("Thanks, your order 123456789 ships on 2024-01-15."),
        )
        assert (await scorer.score(conversation)).flags == ()

    async def test_kinds_and_dimension(self, make_config: MakeConfig) -> None:
        """``kinds`` narrows the search; with a dimension it scores 1 when anything is found."""
        scorer = _one(make_config, {"type": "pii", "kinds": ["ip"], "dimension": "pii_rate"})
        found = await scorer.score(_conv(assistant("ssh to 10.0.0.12, mail root@example.com")))
        clean = await scorer.score(_conv(assistant("mail root@example.com")))
        assert found == ScoreResult(scores={"pii_rate": 1.0}, flags=("pii_ip",))
        assert clean == ScoreResult(scores={"pii_rate": 0.0}, flags=())

    async def test_huge_answer_scanned_off_the_loop(self, make_config: MakeConfig) -> None:
        """A 200 kB answer is scanned in a worker thread and still found."""
        scorer = _one(make_config, {"type": "pii"})
        text = "lorem ipsum 12 " * 14000 + " mail x@example.org"
        assert (await scorer.score(_conv(assistant(text)))).flags == ("pii_email",)


PII_FOUND = [
    ("email", "reach me at jane.doe@example.com today"),
    ("email", "a_b-c+tag@sub.mail.example.co.uk"),
    ("phone", "call +1 (555) 123-4567"),
    ("phone", "call 555-123-4567 now"),
    ("phone", "(555) 123-4567"),
    ("phone", "1-555-123-4567"),
    ("phone", "London: +44 20 7946 0958"),
    ("phone", "Paris: +33 6 12 34 56 78"),
    ("phone", "06 12 34 56 78"),
    ("phone", "020 7946 0958"),
    ("phone", "+4915112345678"),
    ("phone", "+49 (0)30 1234567"),
    ("card", "4111 1111 1111 1111"),
    ("card", "5500-0000-0000-0004"),
    ("card", "amex 378282246310005."),
    ("card", "6011111111111117"),
    ("card", "card 4111111111111111 exp 05/27"),
    ("card", "4111 1111 1111 1111 05/27"),
    ("ip", "host 192.168.0.1 is down"),
    ("ip", "v6 2001:db8::8a2e:370:7334"),
    ("ip", "the server is at 2001:db8::1."),
    ("ip", "fe80::1"),
]

PII_ABSENT = [
    "Order #123456789012 is on its way",
    "order number 4111111111111112",  # fails Luhn
    "order 1234567890123456",  # no card issuer starts with 1
    "order 5500000000000001",  # issuer prefix but fails Luhn
    "reference 0000 0000 0000 0000",
    "shipped 2024-01-15",
    "at 2024-01-15T10:00:00Z",
    "at 2026-11-26T10:00:09.123+01:00",
    "at 2024-01-15 10:00:00",
    "on 15.01.2024",
    "on 01/15/2024 at 10:30",
    "on 01.02.2024 10 items left",
    "id 550e8400-e29b-41d4-a716-446655440000",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736",
    "tracking 1Z999AA10123456784",
    "epoch 1700000000000 ms, 1700000000123456789 ns",
    "a 2100 epoch in ms that passes Luhn: 4102444800007",
    "price $1,234,567.89",
    "bare number 5551234567",
    "ORD-555-123-4567",
    "invoice 2024-000123-0042",
    "time 10:30:00",
    "ISBN 978-3-16-148410-0",
    "IBAN DE89 3704 0044 0532 0130 00",
    "user@localhost",
    "std::vector and Foo::bar",
]


DATE_FORMATS = [
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M:%S",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M",
    "%Y%m%d",
    "%Y%m%d%H%M%S",
    "iso",
    "iso-tz",
    "epoch",
    "epoch-ms",
    "uuid",
]


class TestPiiDetection:
    """find_pii: precise, typed, non-overlapping spans."""

    @pytest.mark.parametrize(("kind", "text"), PII_FOUND, ids=[t for _, t in PII_FOUND])
    def test_found(self, kind: str, text: str) -> None:
        """Real personal data is found with the right kind."""
        kinds = [m.kind for m in find_pii(text)]
        assert kind in kinds

    @pytest.mark.parametrize("text", PII_ABSENT)
    def test_absent(self, text: str) -> None:
        """Order numbers, dates, timestamps, ids and prices are not personal data."""
        assert [(m.kind, text[m.start : m.end]) for m in find_pii(text)] == []

    def test_spans(self) -> None:
        """Spans cover exactly the data, sorted, and a card is never also a phone."""
        text = "Card 4111 1111 1111 1111, mail bob@example.com, call 555-123-4567."
        found = [(m.kind, text[m.start : m.end]) for m in find_pii(text)]
        assert found == [
            ("card", "4111 1111 1111 1111"),
            ("email", "bob@example.com"),
            ("phone", "555-123-4567"),
        ]

    def test_kinds_filter(self) -> None:
        """Only the asked kinds are searched."""
        text = "bob@example.com 555-123-4567"
        assert [m.kind for m in find_pii(text, kinds=["phone"])] == ["phone"]
        assert find_pii(text, kinds=[]) == []

    def test_luhn(self) -> None:
        """The checksum accepts valid numbers and rejects one-digit changes."""
        assert luhn_valid("4111111111111111")
        assert luhn_valid("378282246310005")
        assert not luhn_valid("4111111111111112")

    @given(st.text(alphabet=st.characters(blacklist_categories=DIGITS), max_size=300))
    def test_no_digits_no_numbers(self, text: str) -> None:
        """Text without digits never holds a phone, card or IPv4 address."""
        assert not [m for m in find_pii(text, kinds=["phone", "card"]) if m.kind != "email"]

    @given(st.from_regex(r"[0-9]{13,19}", fullmatch=True))
    def test_cards_always_pass_luhn(self, digits: str) -> None:
        """Whatever is reported as a card passes Luhn."""
        for match in find_pii(digits, kinds=["card"]):
            assert luhn_valid(digits[match.start : match.end])

    @given(
        st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1)),
        st.sampled_from(DATE_FORMATS),
        st.uuids(),
    )
    @settings(max_examples=300)
    def test_dates_and_ids_never_numbers(
        self, moment: dt.datetime, form: str, identifier: uuid.UUID
    ) -> None:
        """Dates, timestamps, epochs and UUIDs in any common form are no phone or card."""
        aware = moment.replace(tzinfo=dt.timezone(dt.timedelta(hours=2)))
        written = {
            "iso": moment.isoformat(),
            "iso-tz": aware.isoformat(),
            "epoch": str(int(aware.timestamp())),
            "epoch-ms": str(int(aware.timestamp() * 1000)),
            "uuid": str(identifier),
        }.get(form) or moment.strftime(form)
        assert find_pii(f"shipped {written} ok", kinds=["phone", "card"]) == []

    @given(st.from_regex(r"[1-9][0-9]{5,12}", fullmatch=True))
    def test_bare_digit_runs_are_not_phones(self, digits: str) -> None:
        """Order numbers written as bare digits are never phone numbers."""
        assert find_pii(f"order {digits} shipped", kinds=["phone"]) == []

    @given(st.text(alphabet="0123456789 -.:+()/@abcxyz", max_size=400))
    @settings(max_examples=300)
    def test_spans_sorted_and_disjoint(self, text: str) -> None:
        """Matches never overlap and stay inside the text, for any mix of digits and marks."""
        found = find_pii(text, kinds=PII_KINDS)
        for before, after in itertools.pairwise(found):
            assert before.end <= after.start
        assert all(0 <= m.start < m.end <= len(text) for m in found)


class TestJsonValidity:
    """The final answer parsed as JSON and validated against the configured schema."""

    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["order_id", "status"],
        "properties": {"order_id": {"type": "string"}, "status": {"enum": ["shipped", "pending"]}},
    }

    def _scorer(self, make_config: MakeConfig) -> Scorer:
        return _one(make_config, {"type": "json_validity", "schema": self.SCHEMA})

    async def test_valid(self, make_config: MakeConfig) -> None:
        """A matching document scores 1 with no flag."""
        answer = '  {"order_id": "A1", "status": "shipped"}\n'
        result = await self._scorer(make_config).score(_conv(assistant(answer)))
        assert result == ScoreResult(scores={"json_validity": 1.0})

    async def test_content_parts(self, make_config: MakeConfig) -> None:
        """JSON split over content parts is joined before parsing."""
        parts = [
            {"type": "text", "text": '{"order_id": "A1",'},
            {"type": "text", "text": '"status": "pending"}'},
        ]
        result = await self._scorer(make_config).score(_conv(assistant(parts)))
        assert result.scores == {"json_validity": 1.0}

    @pytest.mark.parametrize("answer", ["Your order shipped.", '{"order_id": "A1",', "NaN", ""])
    async def test_not_json(self, make_config: MakeConfig, answer: str) -> None:
        """Prose, truncated JSON, NaN and no answer are invalid_json."""
        result = await self._scorer(make_config).score(_conv(user("q"), assistant(answer)))
        assert result.scores == {"json_validity": 0.0}
        assert result.flags == ("invalid_json",)
        assert result.explanations["json_validity"].startswith("not JSON")

    async def test_schema_mismatch(self, make_config: MakeConfig) -> None:
        """Valid JSON of the wrong shape is schema_mismatch, with the path in the reason."""
        answer = '{"order_id": "A1", "status": "lost"}'
        result = await self._scorer(make_config).score(_conv(assistant(answer)))
        assert result.flags == ("schema_mismatch",)
        assert result.explanations["json_validity"].startswith("$.status:")

    def test_invalid_schema(self, make_config: MakeConfig) -> None:
        """A schema that is not a JSON Schema fails at start-up, naming where."""
        schema = {"type": "object", "properties": {"n": {"type": "integr"}}}
        config = make_config(scorers=[{"type": "json_validity", "schema": schema}])
        with pytest.raises(ConfigError) as caught:
            build_scorers(config)
        assert caught.value.path == "$.scorers[0].schema.properties.n.type"
        assert "not a valid JSON Schema" in caught.value.message

    async def test_flags_only_without_dimension(self, make_config: MakeConfig) -> None:
        """With no json_validity dimension declared, only flags come out."""
        scorer = _one(make_config, {"type": "json_validity", "schema": self.SCHEMA}, extra=False)
        assert await scorer.score(_conv(assistant("nope"))) == ScoreResult(flags=("invalid_json",))


class TestAnswerLength:
    """Length flags, and the length as a score."""

    async def test_flags(self, make_config: MakeConfig) -> None:
        """Too short and too long against min_chars/max_chars; whitespace does not count."""
        scorer = _one(make_config, {"type": "answer_length", "min_chars": 3, "max_chars": 10})
        short = await scorer.score(_conv(assistant("  ok  ")))
        fine = await scorer.score(_conv(assistant("just right")))
        long = await scorer.score(_conv(assistant("far too long an answer")))
        missing = await scorer.score(_conv(user("hello?")))
        assert short.flags == ("answer_too_short",)
        assert fine.flags == ()
        assert long.flags == ("answer_too_long",)
        assert missing.flags == ("answer_too_short",)
        assert short.scores == {}

    async def test_length_as_score_clamped(self, make_config: MakeConfig) -> None:
        """With a dimension the length is the score, held to the dimension's scale."""
        scorer = _one(make_config, {"type": "answer_length", "dimension": "answer_chars"})
        assert (await scorer.score(_conv(assistant("abcd")))).scores == {"answer_chars": 4.0}
        huge = await scorer.score(_conv(assistant("x" * 5000)))
        assert huge.scores == {"answer_chars": 2000.0}


class TestPassthrough:
    """Upstream scores for declared dimensions."""

    async def test_declared_only(self, make_config: MakeConfig) -> None:
        """Declared dimensions pass; undeclared ones (csat) are left out."""
        scorer = _one(make_config, {"type": "passthrough"})
        result = await scorer.score(
            _conv(assistant("x"), scores={"csat": 4, "coherence": 4.5, "task_completion": 1})
        )
        assert result.scores == {"coherence": 4.5, "task_completion": 1.0}

    async def test_listed_dimensions(self, make_config: MakeConfig) -> None:
        """``dimensions`` narrows what passes."""
        scorer = _one(make_config, {"type": "passthrough", "dimensions": ["coherence"]})
        result = await scorer.score(
            _conv(assistant("x"), scores={"coherence": 2, "task_completion": 1})
        )
        assert result.scores == {"coherence": 2.0}

    async def test_non_finite_dropped(self, make_config: MakeConfig) -> None:
        """NaN and infinities from a struct built in code never become scores."""
        scorer = _one(make_config, {"type": "passthrough"})
        conversation = _conv(assistant("x"))
        conversation.scores = {"coherence": math.nan, "task_completion": math.inf}
        assert (await scorer.score(conversation)).scores == {}

    def test_undeclared_listed_dimension(self, make_config: MakeConfig) -> None:
        """Listing an undeclared dimension is a config error."""
        with pytest.raises(ConfigError) as caught:
            make_config(scorers=[{"type": "passthrough", "dimensions": ["csat"]}])
        assert caught.value.path == "$.scorers[0].dimensions[0]"


class TestIsSet:
    """Signal and error values read the way senders mean them."""

    @pytest.mark.parametrize("value", [True, 1, 2.5, "yes", "true", "timeout", "1"])
    def test_set(self, value: object) -> None:
        """Truthy values and words are set."""
        assert is_set(value)

    @pytest.mark.parametrize(
        "value", [None, False, 0, 0.0, math.nan, "", "false", " FALSE ", "0", "no", "off", "null"]
    )
    def test_not_set(self, value: object) -> None:
        """Falsy values and the words for them are not set."""
        assert not is_set(value)


# --- property: no built-in raises on any valid conversation ------------------------------

_tricky_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "I'm sorry, but I can't help with that.",
            '{"order_id": "A1", "status": "shipped"}',
            "call +1 (555) 123-4567 or 4111 1111 1111 1111, x@example.com",
            "2024-01-15T10:00:00Z 550e8400-e29b-41d4-a716-446655440000",
            "",
            "   ",
        ]
    ),
)
_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)
)
_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _tricky_text}),
    st.dictionaries(st.text(max_size=5), _scalar, max_size=3),
)
_messages = st.builds(
    Message,
    role=st.sampled_from(["system", "developer", "user", "assistant", "tool"]),
    content=st.one_of(st.none(), _tricky_text, st.lists(_part, max_size=3)),
    tool_calls=st.one_of(
        st.none(), st.lists(st.builds(ToolCall, id=st.text(max_size=5)), max_size=2)
    ),
    tool_call_id=st.one_of(st.none(), st.text(max_size=5)),
    error=st.one_of(st.none(), st.booleans(), st.text(max_size=10)),
)
_names = st.sampled_from(["task_completion", "coherence", "csat", "tool_success", "x"])
_conversations = st.builds(
    Conversation,
    id=st.text(min_size=1, max_size=10),
    agent=st.text(min_size=1, max_size=10),
    messages=st.lists(_messages, min_size=1, max_size=8),
    signals=st.dictionaries(
        st.sampled_from(["user_thumbs_down", "escalation_requested", "other"]), _scalar
    ),
    scores=st.dictionaries(_names, st.floats(allow_nan=True, allow_infinity=True)),
    usage=st.one_of(st.none(), st.builds(Usage)),
)

_FLAG = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class TestProperties:
    """Every built-in survives every valid conversation."""

    @given(conversation=_conversations)
    @settings(max_examples=200, deadline=None)
    def test_no_builtin_raises(self, conversation: Conversation) -> None:
        """Scores are finite and declared, within scale for the built-ins; flags are labels."""
        config, scorers = _all_builtins()
        results = asyncio.run(_score_all(scorers, conversation))
        for scorer, result in zip(scorers, results, strict=True):
            assert isinstance(result, ScoreResult)
            assert all(_FLAG.match(flag) for flag in result.flags)
            for name, value in result.scores.items():
                dimension = config.dimension(name)
                assert dimension is not None
                assert math.isfinite(value)
                if scorer.name != "passthrough":
                    assert dimension.scale_min <= value <= dimension.scale_max


@functools.cache
def _all_builtins() -> tuple[Config, list[Scorer]]:
    config = parse_config(
        {
            "dimensions": _dimensions(),
            "scorers": [
                {"type": "tool_success"},
                {"type": "final_answer"},
                {"type": "user_feedback"},
                {"type": "refusal", "dimension": "refusal_rate"},
                {"type": "pii", "dimension": "pii_rate", "kinds": ["email", "phone", "card", "ip"]},
                {"type": "json_validity", "schema": TestJsonValidity.SCHEMA},
                {"type": "answer_length", "dimension": "answer_chars", "min_chars": 1},
                {"type": "passthrough"},
            ],
        }
    )
    return config, build_scorers(config)


async def _score_all(scorers: list[Scorer], conversation: Conversation) -> list[ScoreResult]:
    return [await scorer.score(conversation) for scorer in scorers]
