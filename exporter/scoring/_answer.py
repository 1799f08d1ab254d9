"""Built-in scorers that read what the assistant said: refusals, PII, JSON, length.

``refusal`` and ``pii`` are flags first; given a ``dimension`` they also score 1.0 when they
fire and 0.0 otherwise, so the dimension's mean is the refusal (or leak) rate: declare it with
``higher_is_better: false``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, cast

import jsonschema
import msgspec

from exporter.config.model import Config, Dimension, ScorerSpec
from exporter.model import Conversation
from exporter.pii import PII_KINDS, PiiKind, find_pii
from exporter.scoring._options import NOTHING, ScorerOptions, off_loop
from exporter.types import ScoreResult

__all__ = [
    "DEFAULT_REFUSAL_PATTERNS",
    "AnswerLength",
    "JsonValidity",
    "Pii",
    "Refusal",
    "answer_length",
    "json_validity",
    "pii",
    "refusal",
]

#: Phrases of a model declining, in lower case; each matches where a word starts in the
#: lower-cased final answer (typographic apostrophes read as ASCII ones). Lower-casing once and
#: checking the word start in code is ~8x faster than ``\b`` with ``re.IGNORECASE``.
DEFAULT_REFUSAL_PATTERNS: Final = (
    r"i'?m (?:very |so |really )?sorry,? but i(?:'m| am)? (?:can(?:not|'t)|won't|unable|not able)",
    r"i (?:can(?:not|'t)|won't|will not) (?:help|assist|provide|comply|do that|fulfil|answer"
    r"|share|discuss)",
    r"i(?: am|'m) (?:unable|not able|not allowed|not permitted) to (?:help|assist|provide"
    r"|comply|do that|answer|share|discuss)",
    r"i must (?:respectfully )?(?:decline|refuse)\b",
    r"as an ai(?: language model| assistant)?,? i (?:can(?:not|'t)|am not able|don't have)",
    r"(?:this|that) (?:request )?(?:is|goes) (?:against|outside) (?:my|our) "
    r"(?:guidelines|policy|policies)\b",
)
_DEFAULT_REFUSAL: Final = re.compile("|".join(f"(?:{p})" for p in DEFAULT_REFUSAL_PATTERNS))
_TYPOGRAPHIC = str.maketrans({"\u2019": "'", "\u2018": "'"})

_DEFAULT_PII_KINDS: Final[tuple[PiiKind, ...]] = ("email", "phone", "card")


class Refusal:
    """Flag ``refusal`` when the final answer matches any refusal pattern."""

    inline = True  # CPU-bound on the input, never waits for I/O
    __slots__ = ("dimension", "name", "patterns")

    def __init__(
        self, *, name: str, dimension: str | None, patterns: tuple[re.Pattern[str], ...] | None
    ) -> None:
        self.name = name
        self.dimension = dimension
        self.patterns = patterns  # None: the shipped ones

    def _refused(self, text: str) -> bool:
        text = text.translate(_TYPOGRAPHIC)
        if self.patterns is not None:
            return any(pattern.search(text) for pattern in self.patterns)
        text = text.lower()
        for match in _DEFAULT_REFUSAL.finditer(text):
            start = match.start()
            if not start or not text[start - 1].isalnum():
                return True
        return False

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return ``refusal`` (and 1.0 for the dimension) when the answer declines."""
        answer = conversation.final_answer()
        refused = bool(answer) and await off_loop(self._refused, answer)
        if not self.dimension:
            return ScoreResult(flags=("refusal",)) if refused else NOTHING
        return ScoreResult(
            scores={self.dimension: 1.0 if refused else 0.0},
            flags=("refusal",) if refused else (),
        )


class Pii:
    """Flag ``pii_<kind>`` for personal data found in any assistant message."""

    inline = True  # CPU-bound on the input, never waits for I/O
    __slots__ = ("dimension", "kinds", "name")

    def __init__(self, *, name: str, dimension: str | None, kinds: tuple[PiiKind, ...]) -> None:
        self.name = name
        self.dimension = dimension
        self.kinds = kinds

    def _flags(self, text: str) -> tuple[str, ...]:
        found = {match.kind for match in find_pii(text, kinds=self.kinds)}
        return tuple(f"pii_{kind}" for kind in self.kinds if kind in found)

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return one flag per kind of personal data the assistant wrote."""
        text = "\n".join(m.text() for m in conversation.messages if m.role == "assistant")
        flags = await off_loop(self._flags, text) if text else ()
        if not self.dimension:
            return ScoreResult(flags=flags) if flags else NOTHING
        return ScoreResult(scores={self.dimension: 1.0 if flags else 0.0}, flags=flags)


class JsonValidity:
    """Score 1 when the final answer is JSON matching the configured schema."""

    inline = True  # CPU-bound on the input, never waits for I/O
    __slots__ = ("dimension", "name", "validator")

    def __init__(
        self, *, name: str, dimension: str | None, validator: jsonschema.protocols.Validator | None
    ) -> None:
        self.name = name
        self.dimension = dimension
        self.validator = validator

    def _check(self, text: str) -> tuple[str, str] | None:
        """Return ``(flag, reason)`` when ``text`` fails, ``None`` when it passes."""
        try:
            document = msgspec.json.decode(text)
        except msgspec.DecodeError as error:
            return "invalid_json", f"not JSON: {error}"
        if self.validator is None or self.validator.is_valid(document):
            return None
        best = jsonschema.exceptions.best_match(self.validator.iter_errors(document))
        where = best.json_path if best is not None else "$"
        return "schema_mismatch", f"{where}: {best.message if best is not None else 'invalid'}"

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return 1.0, or 0.0 with ``invalid_json``/``schema_mismatch`` and the reason."""
        failure = await off_loop(self._check, conversation.final_answer().strip())
        if failure is None:
            return ScoreResult(scores={self.dimension: 1.0}) if self.dimension else NOTHING
        flag, reason = failure
        if not self.dimension:
            return ScoreResult(flags=(flag,))
        return ScoreResult(
            scores={self.dimension: 0.0}, flags=(flag,), explanations={self.dimension: reason}
        )


class AnswerLength:
    """Flag final answers shorter than ``min_chars`` or longer than ``max_chars``."""

    inline = True  # CPU-bound on the input, never waits for I/O
    __slots__ = ("dimension", "max_chars", "min_chars", "name")

    def __init__(
        self,
        *,
        name: str,
        dimension: Dimension | None,
        min_chars: int | None,
        max_chars: int | None,
    ) -> None:
        self.name = name
        self.dimension = dimension
        self.min_chars = min_chars
        self.max_chars = max_chars

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return the flags, and the length in characters for the dimension."""
        length = len(conversation.final_answer().strip())
        flags: tuple[str, ...] = ()
        if self.min_chars is not None and length < self.min_chars:
            flags = ("answer_too_short",)
        elif self.max_chars is not None and length > self.max_chars:
            flags = ("answer_too_long",)
        if self.dimension is None:
            return ScoreResult(flags=flags) if flags else NOTHING
        # Past the scale's top is still "that long or more": clamp rather than lose the score.
        return ScoreResult(scores={self.dimension.name: self.dimension.clamp(length)}, flags=flags)


def refusal(spec: ScorerSpec, config: Config) -> Refusal:
    """Build a ``refusal`` scorer; ``patterns`` replaces the shipped patterns."""
    options = ScorerOptions(spec, config, allowed=("patterns",))
    sources = options.strings("patterns")
    if sources is None:
        return Refusal(name=spec.name, dimension=options.declared(None), patterns=None)
    if not sources:
        raise options.error("patterns", "expected at least one pattern")
    for index, source in enumerate(sources):
        try:
            re.compile(source, re.IGNORECASE)
        except re.error as error:
            message = f"invalid regex {source!r}: {error}"
            raise options.error(f"patterns[{index}]", message) from None
    try:  # one scan instead of one per pattern
        combined = re.compile("|".join(f"(?:{p})" for p in sources), re.IGNORECASE)
        patterns: tuple[re.Pattern[str], ...] = (combined,)
    except re.error:  # inline global flags like (?x) only work at the start of a pattern
        patterns = tuple(re.compile(p, re.IGNORECASE) for p in sources)
    return Refusal(name=spec.name, dimension=options.declared(None), patterns=patterns)


def pii(spec: ScorerSpec, config: Config) -> Pii:
    """Build a ``pii`` scorer for ``kinds`` (default: email, phone, card)."""
    options = ScorerOptions(spec, config, allowed=("kinds",))
    kinds = options.strings("kinds")
    for index, kind in enumerate(kinds or ()):
        if kind not in PII_KINDS:
            raise options.error(f"kinds[{index}]", f"expected one of {', '.join(PII_KINDS)}")
    if kinds is not None and not kinds:
        raise options.error("kinds", "expected at least one kind")
    chosen = cast(tuple[PiiKind, ...], tuple(dict.fromkeys(kinds))) if kinds else _DEFAULT_PII_KINDS
    return Pii(name=spec.name, dimension=options.declared(None), kinds=chosen)


def json_validity(spec: ScorerSpec, config: Config) -> JsonValidity:
    """Build a ``json_validity`` scorer; its ``schema`` is checked and compiled once, here."""
    options = ScorerOptions(spec, config, allowed=("schema",))
    schema = options.mapping("schema")
    validator = None if schema is None else _compile(options, schema)
    return JsonValidity(
        name=spec.name, dimension=options.declared("json_validity"), validator=validator
    )


def _compile(options: ScorerOptions, schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    document = dict(schema)
    cls = jsonschema.validators.validator_for(document, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(document)
    except jsonschema.SchemaError as error:
        where = "schema" + error.json_path[1:]
        raise options.error(where, f"not a valid JSON Schema: {error.message}") from None
    return cls(document, format_checker=cls.FORMAT_CHECKER)


def answer_length(spec: ScorerSpec, config: Config) -> AnswerLength:
    """Build an ``answer_length`` scorer; the length is a score only with ``dimension`` set."""
    options = ScorerOptions(spec, config, allowed=("min_chars", "max_chars"))
    low = options.integer("min_chars", minimum=0)
    high = options.integer("max_chars", minimum=1)
    if low is not None and high is not None and low > high:
        raise options.error("max_chars", f"must be at least min_chars ({low}), got {high}")
    declared = options.declared(None, unit=False)
    return AnswerLength(
        name=spec.name,
        dimension=None if declared is None else config.dimension(declared),
        min_chars=low,
        max_chars=high,
    )
