"""Redaction: typed placeholders for each PII kind, custom patterns, no false redaction."""

from __future__ import annotations

import itertools
import re

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.config import config_schema, parse_config
from exporter.model import decode_conversation
from exporter.pii import PII_KINDS
from exporter.redaction import Redactor, placeholder

REDACTOR = Redactor()


class TestEachKind:
    """Every built-in kind is replaced by its own placeholder."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("write to jane.doe+orders@example.co.uk today", "write to [EMAIL] today"),
            ("JANE@EXAMPLE.COM.", "[EMAIL]."),
            ("call +44 20 7946 0958 now", "call [PHONE] now"),
            ("call (415) 555-2671", "call [PHONE]"),
            ("call 415-555-2671", "call [PHONE]"),
            ("call 020 7946 0958", "call [PHONE]"),
            ("appelez le 06 12 34 56 78", "appelez le [PHONE]"),
            ("card 4111 1111 1111 1111 exp 12/27", "card [CARD] exp 12/27"),
            ("card 4111-1111-1111-1111", "card [CARD]"),
            ("amex 378282246310005", "amex [CARD]"),
            ("from 192.168.1.10.", "from [IP]."),
            ("from 2001:db8::8a2e:370:7334 ok", "from [IP] ok"),
        ],
    )
    def test_kind_is_replaced(self, text: str, expected: str) -> None:
        """Each PII form is replaced by the placeholder of its kind."""
        assert REDACTOR.redact(text) == expected

    def test_card_failing_luhn_is_kept(self) -> None:
        """Sixteen digits that fail the Luhn check are not a card number."""
        assert REDACTOR.redact("ref 4111 1111 1111 1112") == "ref 4111 1111 1111 1112"

    def test_several_kinds_in_one_text(self) -> None:
        """Findings of different kinds in one text are all replaced, text between kept."""
        text = "I'm bob@example.org, +1 415 555 2671, card 5500 0055 5555 5559, ip 10.0.0.7"
        assert REDACTOR.redact(text) == "I'm [EMAIL], [PHONE], card [CARD], ip [IP]"

    def test_only_chosen_kinds(self) -> None:
        """A redactor built for some kinds leaves the others alone."""
        only_email = Redactor(kinds=["email"])
        assert only_email.redact("a@b.io 10.0.0.7") == "[EMAIL] 10.0.0.7"

    def test_unknown_kind_is_an_error(self) -> None:
        """Asking for a kind nobody detects fails loudly instead of silently not redacting."""
        with pytest.raises(ValueError, match="ssn"):
            Redactor(kinds=["ssn"])


class TestCustomPatterns:
    """Configured regexes redact to a placeholder named after them."""

    def test_custom_pattern(self) -> None:
        """`employee_id` becomes [EMPLOYEE_ID]."""
        redactor = Redactor(patterns={"employee_id": r"EMP-\d{6}"})
        assert redactor.redact("ask EMP-123456 or a@b.io") == "ask [EMPLOYEE_ID] or [EMAIL]"

    def test_custom_pattern_wins_an_overlap(self) -> None:
        """Where a custom match overlaps a built-in one, the operator's pattern wins."""
        redactor = Redactor(patterns={"account": r"acct:\S+"})
        assert redactor.redact("acct:jane@example.com") == "[ACCOUNT]"

    def test_config_patterns_reach_the_redactor(self) -> None:
        """The dataset's redaction section builds the same redactor the judges use."""
        config = parse_config(
            {"dataset": {"redaction": {"patterns": [{"name": "ticket", "regex": "TCK-[0-9]+"}]}}}
        )
        redaction = config.dataset.redaction
        redactor = Redactor(kinds=redaction.kinds, patterns=redaction.patterns)
        assert redactor.redact("TCK-42 from a@b.io") == "[TICKET] from [EMAIL]"

    def test_schema_lists_exactly_the_detected_kinds(self) -> None:
        """The config schema's kinds are the detector's kinds, so no kind is unconfigurable."""
        enum = config_schema()["$defs"]["redaction"]["properties"]["kinds"]["items"]["enum"]
        assert sorted(enum) == sorted(PII_KINDS)


class TestNoFalseRedaction:
    """Order numbers, dates, timestamps, UUIDs and friends stay readable."""

    @pytest.mark.parametrize(
        "text",
        [
            "order ORD-2026-004512 is late",
            "order #100234567 shipped",
            "order number 4532015112830367 (not Luhn-valid)",
            "tracking 1Z999AA10123456784",
            "delivered on 2026-11-26",
            "delivered on 26/11/2026 or 11.26.2026",
            "at 05-11-2026 10:00",
            "logged 2026-11-26T10:00:09Z and 2026-11-26 10:00:09.123+01:00",
            "time 10:00:09, 12:30",
            "epoch 1732615209 and 1732615209000 ms",
            "id 550e8400-e29b-41d4-a716-446655440000",
            "id 123e4567-e89b-12d3-a456-426614174000",
            "total $1,234,567.89 for 3 items",
            "version v1.2.3.4 of std::vector",
            "SKU 12345-67890",
        ],
    )
    def test_kept(self, text: str) -> None:
        """The text comes back unchanged."""
        assert REDACTOR.redact(text) == text


class TestConversation:
    """Everything a conversation carries as text is redacted; identity fields are kept."""

    def conversation(self) -> bytes:
        return msgspec.json.encode(
            {
                "id": "c-1",
                "agent": "support-bot",
                "model": "gpt-4.1-mini",
                "messages": [
                    {"role": "user", "content": "I'm jane@example.com"},
                    {"role": "user", "content": [{"type": "text", "text": "ip 10.1.2.3"}]},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "t1", "name": "find", "arguments": '{"phone": "415-555-2671"}'},
                            {"id": "t2", "name": "find", "arguments": {"email": "x@y.io"}},
                            {
                                "id": "t3",
                                "function": {"name": "f", "arguments": "card 4111111111111111"},
                            },
                        ],
                    },
                    {"role": "tool", "tool_call_id": "t1", "error": "no user x@y.io"},
                    {"role": "assistant", "content": "Done, order ORD-2026-004512."},
                ],
                "signals": {"note": "mail me at a@b.io", "user_thumbs_down": True},
                "scores": {"csat": 2},
                "metadata": {"customer": {"emails": ["c@d.io"]}, "count": 3},
            }
        )

    def test_every_text_field(self) -> None:
        """Content, parts, tool arguments (str and dict), errors, signals, metadata."""
        redacted = REDACTOR.redact_conversation(decode_conversation(self.conversation()))
        messages = redacted.messages
        assert messages[0].content == "I'm [EMAIL]"
        assert messages[1].content == [{"type": "text", "text": "ip [IP]"}]
        calls = messages[2].tool_calls
        assert calls is not None
        assert calls[0].arguments == '{"phone": "[PHONE]"}'
        assert calls[1].arguments == {"email": "[EMAIL]"}
        assert calls[2].function == {"name": "f", "arguments": "card [CARD]"}
        assert messages[3].error == "no user [EMAIL]"
        assert messages[4].content == "Done, order ORD-2026-004512."
        assert redacted.signals == {"note": "mail me at [EMAIL]", "user_thumbs_down": True}
        assert redacted.metadata == {"customer": {"emails": ["[EMAIL]"]}, "count": 3}

    def test_identity_is_kept_and_original_untouched(self) -> None:
        """Id, agent, model and scores survive; the input struct is not modified."""
        original = decode_conversation(self.conversation())
        redacted = REDACTOR.redact_conversation(original)
        assert (redacted.id, redacted.agent, redacted.model) == (
            "c-1",
            "support-bot",
            "gpt-4.1-mini",
        )
        assert redacted.scores == {"csat": 2.0}
        assert original.messages[0].content == "I'm jane@example.com"


_FILLER = st.text(alphabet=st.sampled_from("abc XYZ,;!?"), max_size=40)


class TestProperties:
    """Properties that hold for any text."""

    @given(before=_FILLER, after=_FILLER, user=st.from_regex(r"[a-z]{1,12}", fullmatch=True))
    def test_email_never_survives(self, before: str, after: str, user: str) -> None:
        """An e-mail address between arbitrary words is always replaced."""
        address = f"{user}@example.com"
        redacted = REDACTOR.redact(f"{before} {address} {after}")
        assert address not in redacted
        assert placeholder("email") in redacted

    @given(st.text(max_size=300))
    def test_findings_are_sorted_and_disjoint(self, text: str) -> None:
        """Findings never overlap, so replacing them is well defined."""
        findings = Redactor(patterns={"word": re.compile(r"[a-z]{3,}")}).find(text)
        for first, second in itertools.pairwise(findings):
            assert first.end <= second.start
        assert all(0 <= f.start < f.end <= len(text) for f in findings)
