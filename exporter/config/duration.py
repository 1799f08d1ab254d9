"""Prometheus-style durations (``1h30m``) to seconds and back."""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["format_duration", "parse_duration", "parse_time"]

_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_PART = re.compile(r"([0-9]+)(ms|y|w|d|h|m|s)")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def parse_duration(text: str) -> float:
    """Return the seconds in a duration such as ``30s``, ``15m`` or ``1h30m``."""
    position, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 15m, 1h30m)")
    return seconds


def format_duration(seconds: float) -> str:
    """Return the shortest Prometheus duration for whole ``seconds`` (``5400`` -> ``1h30m``)."""
    remaining = int(seconds)
    if remaining != seconds or remaining <= 0:
        raise ValueError(f"durations are positive whole seconds, got {seconds!r}")
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = int(_UNITS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_time(text: str, *, now: dt.datetime) -> dt.datetime:
    """Parse ``2026-11-26T10:00:00Z``, ``2026-11-26`` (UTC midnight) or ``24h`` (ago)."""
    if _DURATION.match(text):
        return now - dt.timedelta(seconds=parse_duration(text))
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: expected RFC 3339 (2026-11-26T10:00:00Z), "
            "a date (2026-11-26) or a duration ago (24h, 7d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
