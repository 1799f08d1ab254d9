"""Detect personal data in text: e-mail addresses, phone numbers, payment cards, IP addresses.

Shared by the ``pii`` scorer and ``exporter.redaction`` (the dataset, the judges' prompts), so
both agree on what counts. The detectors favour precision: an order number, a date, an ISO
timestamp or a UUID must never look like a phone or a card, because every false flag is a false
page. Every pattern is anchored on token boundaries so a scan stays linear in the text's length,
even on hostile input.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Literal, NamedTuple, Protocol, TypeVar

__all__ = ["PII_KINDS", "PiiKind", "PiiMatch", "Span", "claim", "find_pii", "luhn_valid"]

PiiKind = Literal["email", "phone", "card", "ip"]

#: Every kind ``find_pii`` knows, in the order overlaps are resolved (earlier wins).
PII_KINDS: Final[tuple[PiiKind, ...]] = ("email", "card", "ip", "phone")


class PiiMatch(NamedTuple):
    """One finding: its kind and the ``text[start:end]`` span it covers."""

    kind: PiiKind
    start: int
    end: int


# The look-behinds reject starts inside a token, so the engine never rescans a long run.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,63}(?![A-Za-z0-9-])"
)

# 13-19 digits, optionally grouped by single spaces or hyphens; Luhn and issuer checked after.
# The look-behind comes after the first digit so the engine can skip ahead to digits.
_CARD = re.compile(r"\d(?<![\w.+-].)(?:[ -]?\d){12,18}(?![\w]|[.-]\d)")
_SEPARATORS = str.maketrans("", "", " -.()")

# Phones only in shapes people write them, never a bare run of digits (that is an order number).
_PHONE = re.compile(
    r"(?<![\w+./:-])(?<!\d )(?:"
    # International: +33612345678, +44 20 7946 0958, +1 (555) 123-4567, +49 (0)30 1234567.
    # Groups after the first need a separator so digit runs split one way only (no backtracking).
    r"\+(?:\d{7,15}|\d{1,3}(?:[ .-]?\(\d{1,4}\)[ .-]?\d{1,5})?(?:[ .-]\d{1,8}){0,6})"
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-555-123-4567.
    r"|(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    # National with a trunk 0: 020 7946 0958, 06 12 34 56 78, 030-1234-5678, 07700 900123.
    r"|0[1-9]\d{0,3}(?:[ .-]\d{2,8}){1,4}"
    # Not followed by more digits: "0532 0130 00" inside an IBAN is no phone number.
    r")(?![\w]|[ .:/-]\d)"
)
# Dates written with a four-digit year: 2024-01-15, 15.01.2024, 01-15-2024.
_DATE_LIKE = re.compile(r"^(?:\d{4}([ ./-])\d{1,2}\1\d{1,2}|\d{1,2}([./-])\d{1,2}\2\d{4})(?!\d)")

_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w]|\.\d)"
)
# A sentence may end right after an address ("... at 2001:db8::1."): a dot is only part of
# the token when a digit follows it (an embedded IPv4 tail, a version string).
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:]|\.\d)")


def luhn_valid(digits: str) -> bool:
    """Say whether a string of digits passes the Luhn checksum."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_issuer_known(digits: str) -> bool:
    """Say whether the number has a real issuer prefix for its length (Visa, Mastercard ...)."""
    length, two, four = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":  # Visa
        # Not 13: those Visa numbers are long retired, and a 13-digit run is far more often a
        # millisecond epoch (4xxxxxxxxxxxx is the 2090s) than a card.
        return length in (16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:  # Mastercard
        return length == 16
    if two in (34, 37):  # American Express
        return length == 15
    if digits.startswith(("6011", "65")) or 644 <= int(digits[:3]) <= 649:  # Discover
        return 16 <= length <= 19
    if 3528 <= four <= 3589:  # JCB
        return 16 <= length <= 19
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:  # Diners Club
        return 14 <= length <= 19
    if two == 62:  # UnionPay
        return 16 <= length <= 19
    return False


def _cards(text: str) -> Iterator[PiiMatch]:
    for match in _CARD.finditer(text):
        span = _card_within(match.group())
        if span is not None:
            yield PiiMatch("card", match.start() + span[0], match.start() + span[1])


def _card_within(raw: str) -> tuple[int, int] | None:
    """Return the longest run of whole groups in ``raw`` that is a card number.

    The candidate regex is greedy, so "4111 1111 1111 1111 05" (a card, then more digits)
    arrives as one run; the card is found among its groups, longest first.
    """
    # Mixed separators ("1234 5678-9012 ...") read as ids, not as a printed card.
    if " " in raw and "-" in raw:
        return None
    cuts = [i for i, char in enumerate(raw) if char in " -"]
    if len(cuts) > 7:  # printed cards have at most five groups; one-digit groups are not cards
        cuts = []
    starts, ends = [0, *(i + 1 for i in cuts)], [*cuts, len(raw)]
    spans = sorted(
        ((a, b) for a in starts for b in ends if a < b),
        key=lambda span: span[0] - span[1],
    )
    for start, end in spans:
        digits = raw[start:end].translate(_SEPARATORS)
        if 13 <= len(digits) <= 19 and _card_issuer_known(digits) and luhn_valid(digits):
            return start, end
    return None


def _phones(text: str) -> Iterator[PiiMatch]:
    for match in _PHONE.finditer(text):
        raw = match.group()
        digits = raw.translate(_SEPARATORS).lstrip("+")
        if not 8 <= len(digits) <= 15 or _DATE_LIKE.match(raw.lstrip("+")):
            continue
        if raw[0] == "0" and len(digits) < 9:
            continue  # "0 12 34" and friends are quantities, not numbers anyone dials
        yield PiiMatch("phone", match.start(), match.end())


def _emails(text: str) -> Iterator[PiiMatch]:
    if "@" not in text:
        return
    for match in _EMAIL.finditer(text):
        yield PiiMatch("email", match.start(), match.end())


def _ips(text: str) -> Iterator[PiiMatch]:
    if text.count(".") >= 3:
        for match in _IPV4.finditer(text):
            yield PiiMatch("ip", match.start(), match.end())
    if "::" in text or text.count(":") >= 7:
        for match in _IPV6.finditer(text):
            candidate = match.group()
            # Times (10:30:00) and other colon runs are not addresses: let ipaddress decide.
            if candidate.count(":") < 2 or not any(c.isdigit() for c in candidate):
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            yield PiiMatch("ip", match.start(), match.end())


_DETECTORS: Final[dict[PiiKind, Callable[[str], Iterator[PiiMatch]]]] = {
    "email": _emails,
    "card": _cards,
    "ip": _ips,
    "phone": _phones,
}
# Phones and cards need 8+ digits close together; most answers have none, and one scan for
# that is cheaper than the two full detectors (whose look-behinds run at every position).
_DIGIT_CLUSTER = re.compile(r"\d(?:[ ().+/-]{0,2}\d){7}")


def find_pii(text: str, *, kinds: Iterable[PiiKind] = PII_KINDS) -> list[PiiMatch]:
    """Return the personal data in ``text``: sorted, non-overlapping spans of the given kinds.

    Where two kinds overlap the earlier one in ``PII_KINDS`` wins, so a card number is never
    also reported as a phone number.
    """
    wanted = set(kinds)
    if not text or not wanted:
        return []
    if wanted & {"card", "phone"} and not _DIGIT_CLUSTER.search(text):
        wanted -= {"card", "phone"}
    taken: list[PiiMatch] = []  # sorted by start, never overlapping
    for kind in PII_KINDS:
        if kind not in wanted:
            continue
        for found in _DETECTORS[kind](text):
            claim(taken, found)
    return taken


class Span(Protocol):
    """Anything covering ``text[start:end]``: a ``PiiMatch``, a redaction finding."""

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


_S = TypeVar("_S", bound=Span)


def claim(taken: list[_S], span: _S) -> bool:
    """Insert ``span`` into ``taken`` unless it overlaps a span there; return whether it did.

    ``taken`` stays sorted by start and free of overlaps; what was claimed first wins.
    """
    index = bisect.bisect_left(taken, span.start, key=_start)
    if index and taken[index - 1].end > span.start:
        return False
    if index < len(taken) and taken[index].start < span.end:
        return False
    taken.insert(index, span)
    return True


def _start(span: Span) -> int:
    return span.start
