"""Read a judge's answer: one JSON object with a score on the rubric's scale, or an error."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from exporter.scoring.judge._errors import InvalidVerdict
from exporter.scoring.judge._rubrics import Rubric

__all__ = ["Verdict", "parse_verdict"]

# Models often wrap JSON in a Markdown fence despite being told not to; that much is tolerated.
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n?(?P<body>.*?)\n?[ \t]*```$", re.DOTALL)
_MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class Verdict:
    """A judge's score for one dimension and its one-sentence reason."""

    score: float
    reason: str


def parse_verdict(text: str, *, rubric: Rubric, judge: str) -> Verdict:
    """Return the verdict in ``text``; raise ``InvalidVerdict`` for anything but a clean score.

    Prose, malformed JSON, a missing score or one off the rubric's scale are errors, never
    a guessed number: a wrong score that looks right is worse than a counted failure.
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group("body").strip()
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidVerdict(f"answer is not JSON: {_preview(text)}", judge=judge) from None
    if not isinstance(data, dict):
        raise InvalidVerdict(f"answer is not a JSON object: {_preview(text)}", judge=judge)
    score = _number(data.get("score"))
    if score is None:
        raise InvalidVerdict(f"answer has no numeric score: {_preview(text)}", judge=judge)
    if not rubric.scale_min <= score <= rubric.scale_max:
        raise InvalidVerdict(
            f"score {score:g} for {rubric.dimension} is outside "
            f"{rubric.scale_min:g}..{rubric.scale_max:g}",
            judge=judge,
        )
    reason = data.get("reason", data.get("explanation", ""))
    return Verdict(score, str(reason)[:_MAX_REASON])


def _number(value: object) -> float | None:
    """Return a finite number from a JSON number or numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _preview(text: str) -> str:
    """Return the start of an answer for an error message (never the whole prompt echo)."""
    flat = " ".join(text.split())
    return repr(flat[:80] + ("..." if len(flat) > 80 else ""))
