"""Replace personal data with typed placeholders (``[EMAIL]``, ``[CARD]``) before it leaves us.

The feedback dataset redacts with this before writing to disk, LLM judges before sending a
prompt. Detection is :func:`exporter.pii.find_pii`, the ``pii`` scorer's too: one set of
patterns and validators, so what the scorer flags is exactly what gets redacted. This module adds
the operator's own regexes (``employee_id: "EMP-\\d{6}"``), the placeholders and the walk over a
conversation's messages, tool calls, signals and metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import msgspec

from exporter.model import Conversation, Message
from exporter.pii import PII_KINDS, PiiKind, claim, find_pii

__all__ = ["Finding", "Redactor", "placeholder"]


class Finding(NamedTuple):
    """One span to redact: its kind (built-in or a configured pattern's name) and position."""

    kind: str
    start: int
    end: int


def placeholder(kind: str) -> str:
    """Return the typed placeholder that replaces data of ``kind``: ``[EMAIL]``."""
    return f"[{kind.upper()}]"


class Redactor:
    """Finds the chosen built-in PII kinds plus named custom regexes and replaces them.

    ``patterns`` maps a kind name to a regex; where a custom match overlaps a built-in one the
    custom kind wins, because the operator knows their own identifiers best.
    """

    def __init__(
        self,
        *,
        kinds: Iterable[str] = PII_KINDS,
        patterns: Mapping[str, str | re.Pattern[str]] | None = None,
    ) -> None:
        chosen = list(kinds)
        unknown = sorted(set(chosen) - set(PII_KINDS))
        if unknown:
            raise ValueError(f"unknown PII kinds {unknown}; known: {', '.join(PII_KINDS)}")
        self._kinds: tuple[PiiKind, ...] = tuple(k for k in PII_KINDS if k in chosen)
        self._patterns = tuple(
            (name, re.compile(regex)) for name, regex in (patterns or {}).items()
        )

    @property
    def kinds(self) -> tuple[str, ...]:
        """Return every kind this redactor replaces, custom patterns first."""
        return (*(name for name, _ in self._patterns), *self._kinds)

    def find(self, text: str) -> list[Finding]:
        """Return the non-overlapping spans to redact in ``text``, in order of position."""
        if not text:
            return []
        taken: list[Finding] = []  # sorted by start, never overlapping
        for name, regex in self._patterns:
            for match in regex.finditer(text):
                if match.end() > match.start():
                    claim(taken, Finding(name, match.start(), match.end()))
        if self._kinds:
            for found in find_pii(text, kinds=self._kinds):
                claim(taken, Finding(found.kind, found.start, found.end))
        return taken

    def redact(self, text: str) -> str:
        """Return ``text`` with every finding replaced by its typed placeholder."""
        findings = self.find(text)
        if not findings:
            return text
        parts: list[str] = []
        position = 0
        for finding in findings:
            parts += (text[position : finding.start], placeholder(finding.kind))
            position = finding.end
        parts.append(text[position:])
        return "".join(parts)

    def redact_value(self, value: Any) -> Any:
        """Return a JSON-like value with every string in it redacted; mapping keys are kept."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {key: self.redact_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(item) for item in value]
        return value

    def redact_conversation(self, conversation: Conversation) -> Conversation:
        """Return a redacted copy of ``conversation``.

        Message text (multi-part too), tool-call arguments, tool errors, string signals and
        metadata are redacted; ``id``, ``agent``, ``model``, scores, usage and times are kept
        (the id is the dedup key and never meant to carry personal data).
        """
        return msgspec.structs.replace(
            conversation,
            messages=[self._message(m) for m in conversation.messages],
            signals=self.redact_value(conversation.signals),
            metadata=self.redact_value(conversation.metadata),
        )

    def _message(self, message: Message) -> Message:
        tool_calls = message.tool_calls
        if tool_calls is not None:
            tool_calls = [
                msgspec.structs.replace(
                    call,
                    arguments=self.redact_value(call.arguments),
                    function=self.redact_value(call.function),
                )
                for call in tool_calls
            ]
        return msgspec.structs.replace(
            message,
            content=self.redact_value(message.content),
            tool_calls=tool_calls,
            error=self.redact_value(message.error),
        )
