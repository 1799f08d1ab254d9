"""Find the series a PromQL expression reads: its vector selectors and how far back each looks.

Not a PromQL evaluator (Prometheus evaluates everything here): a lexer that knows enough of
the grammar to tell a metric name from a function, a keyword or a label list, and to add up
the ranges, subquery ranges and offsets above each selector. docs/backtest.md says why the
backtest needs it: to fetch only the raw series the rules read, and enough history before
the period for the longest window.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from exporter.config.duration import parse_duration

__all__ = ["PromQLError", "Selector", "selectors"]

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<duration>(?:[0-9]+(?:ms|[smhdwy]))+)(?![0-9a-zA-Z_.])
    | (?P<number>0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<punct>[(){}\[\],:@]|[=!]~|[=!<>]=|[-+*/%^=<>~!])
    """,
    re.VERBOSE | re.DOTALL,
)
#: Followed by a parenthesised label list, not by an expression.
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*')


class PromQLError(ValueError):
    """An expression this lexer cannot follow (unbalanced brackets, an unknown character)."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Selector:
    """One vector selector as written: ``name{matchers}``, and the time it reads back.

    ``name`` is None only for a selector without a metric name and without a
    ``__name__="..."`` matcher. ``matchers`` is the text between the braces as written.
    ``lookback`` is the seconds before the evaluation time the selector reads: its range,
    offsets and the ranges of the subqueries around it (0 for a plain instant selector).
    """

    name: str | None
    matchers: str = ""
    lookback: float = 0.0

    def text(self) -> str:
        """Return the selector as PromQL, without range or offset."""
        return f"{self.name or ''}{{{self.matchers}}}" if self.matchers else str(self.name)

    def labels(self) -> frozenset[str]:
        """Return the label names the selector has matchers on."""
        return frozenset(match.group(1) for match in _MATCHER.finditer(self.matchers))

    def equalities(self) -> dict[str, str]:
        """Return the label values the selector requires (its ``label="value"`` matchers)."""
        return {
            match.group(1): _unquote(match.group(3))
            for match in _MATCHER.finditer(self.matchers)
            if match.group(2) == "="
        }

    def with_matchers(self, *extra: str) -> str:
        """Return the selector as PromQL with more matchers (``job="x"``) added."""
        inner = ", ".join(part for part in (self.matchers.strip(), *extra) if part)
        return f"{self.name or ''}{{{inner}}}"


@dataclass
class _Frame:
    """An open parenthesis: the selectors read inside it, so a subquery can add its range."""

    members: list[int] = field(default_factory=list)


def _tokens(expr: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise PromQLError(f"unexpected {expr[position]!r} at {position} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), match.start(), match.end()))
        position = match.end()
    return tokens


def _closing(tokens: list[_Token], start: int, expr: str) -> int:
    """Return the index of the bracket closing the one at ``start``."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    opening = tokens[start].text
    depth = 0
    for index in range(start, len(tokens)):
        text = tokens[index].text
        if text == opening:
            depth += 1
        elif text == pairs[opening]:
            depth -= 1
            if depth == 0:
                return index
    raise PromQLError(f"unbalanced {opening!r} in {expr!r}")


def _unquote(text: str) -> str:
    """Return the value of a double-quoted PromQL string.

    JSON's escapes are the ones label values use; Go's rarer ones (``\\x41``) stay as written.
    """
    try:
        return str(json.loads(text))
    except ValueError:
        return text[1:-1]


def _name_matcher(matchers: str) -> str | None:
    for match in _MATCHER.finditer(matchers):
        if match.group(1) == "__name__" and match.group(2) == "=":
            return _unquote(match.group(3))
    return None


def _suffix(tokens: list[_Token], index: int, expr: str) -> tuple[float, int]:
    """Read ``[range]``, ``[range:step]``, ``offset d`` and ``@ t`` after ``index``.

    Return the seconds they add to the lookback and the index of the last token read.
    """
    seconds = 0.0
    while index + 1 < len(tokens):
        nxt = tokens[index + 1]
        if nxt.text == "[":
            end = _closing(tokens, index + 1, expr)
            first = tokens[index + 2] if index + 2 < end else None
            if first is not None and first.kind == "duration":
                seconds += parse_duration(first.text)
            index = end
        elif nxt.kind == "ident" and nxt.text.lower() == "offset":
            sign, step = 1.0, index + 2
            if step < len(tokens) and tokens[step].text in "+-":
                sign = -1.0 if tokens[step].text == "-" else 1.0
                step += 1
            if step < len(tokens) and tokens[step].kind == "duration":
                seconds += max(sign * parse_duration(tokens[step].text), 0.0)
            index = step
        elif nxt.text == "@":
            step = index + 2
            if step < len(tokens) and tokens[step].kind == "ident":  # @ start() / @ end()
                step = _closing(tokens, step + 1, expr) if step + 1 < len(tokens) else step
            index = step
        else:
            break
    return seconds, index


def selectors(expr: str) -> list[Selector]:
    """Return the vector selectors in ``expr``, in order of appearance."""
    tokens = _tokens(expr)
    found: list[tuple[str | None, str]] = []
    lookback: list[float] = []
    frames = [_Frame()]
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind == "ident":
            lowered = token.text.lower()
            if token.text in _LABEL_LISTS and following is not None and following.text == "(":
                index = _closing(tokens, index + 1, expr) + 1
                continue
            if following is not None and following.text == "(":  # a function or aggregation
                frames.append(_Frame())
                index += 2
                continue
            if following is not None and following.text in ("by", "without"):
                index += 1  # `sum by (agent) (...)`: an aggregation, its modifier first
                continue
            if lowered in _KEYWORDS:
                index += 1
                continue
            name: str | None = token.text
            matchers = ""
            if following is not None and following.text == "{":
                end = _closing(tokens, index + 1, expr)
                matchers = _between(expr, tokens, index + 1, end)
                index = end
        elif token.text == "{":
            end = _closing(tokens, index, expr)
            matchers = _between(expr, tokens, index, end)
            name = _name_matcher(matchers)
            index = end
        elif token.text == "(":
            frames.append(_Frame())
            index += 1
            continue
        elif token.text == ")":
            if len(frames) == 1:
                raise PromQLError(f"unbalanced ')' in {expr!r}")
            closed = frames.pop()
            seconds, index = _suffix(tokens, index, expr)
            for member in closed.members:
                lookback[member] += seconds
            frames[-1].members.extend(closed.members)
            index += 1
            continue
        else:
            index += 1
            continue
        seconds, index = _suffix(tokens, index, expr)
        found.append((name, matchers))
        lookback.append(seconds)
        frames[-1].members.append(len(found) - 1)
        index += 1
    if len(frames) != 1:
        raise PromQLError(f"unbalanced '(' in {expr!r}")
    return [
        Selector(name, matchers, seconds)
        for (name, matchers), seconds in zip(found, lookback, strict=True)
    ]


def _between(expr: str, tokens: list[_Token], start: int, end: int) -> str:
    """Return the source text strictly between the brackets at ``start`` and ``end``."""
    return expr[tokens[start].end : tokens[end].start].strip()
