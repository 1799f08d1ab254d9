"""Logging in the Prometheus ecosystem's formats: logfmt (default) or JSON, one line each."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["LEVELS", "FailureLog", "Throttle", "setup_logging"]

LEVELS = ("debug", "info", "warn", "error")


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname.lower())


class _FieldsFormatter(logging.Formatter):
    """Turns a record into the fields both formats print, in order."""

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        fields = {
            "ts": _timestamp(record),
            "level": _level(record),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            fields["err"] = self.formatException(record.exc_info)
        return fields


class LogfmtFormatter(_FieldsFormatter):
    """``ts=... level=info logger=exporter.web msg="listening on ..."``."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_quote(v)}" for k, v in self.fields(record).items())


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\t'):
        return value
    return json.dumps(value)


class JsonFormatter(_FieldsFormatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record))


def setup_logging(
    *, level: str = "info", fmt: str = "logfmt", stream: TextIO | None = None
) -> None:
    """Send every log record of the process to ``stream`` (stderr) in ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel({"warn": logging.WARNING}.get(level, level.upper()))
    # aiohttp's access log at info would log every ingest POST: far too much for an exporter.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class Throttle:
    """Let one log line per key through every ``interval`` seconds, counting those held back.

    A failure that repeats for every conversation (a judge endpoint down) would otherwise log a
    line per conversation; its counter already has every occurrence.
    """

    def __init__(self, *, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """Return None to hold this line back, else how many were held back since the last."""
        now = self._clock()
        if now - self._last.get(key, -math.inf) < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


class FailureLog:
    """Log failures as warnings: the first of each kind at once, then one a kind an interval.

    The kind is the error's ``kind`` (``ScorerError``: ``HTTP 400``, ``timeout``...) or its
    class name, so a judge that starts answering 401 after a run of timeouts is logged at
    once, with its answer, instead of waiting for the timeouts' interval to pass.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._throttle = Throttle(interval=interval, clock=clock)

    def failed(self, what: str, error: BaseException, *, where: str = "") -> None:
        """Log that ``what`` failed ``where`` with ``error``, unless its kind was just logged."""
        kind = getattr(error, "kind", None) or type(error).__name__
        held = self._throttle.allow(f"{what}\0{kind}")
        if held is not None:
            more = f" ({held} more failures of this kind since the last report)" if held else ""
            self._logger.warning("%s failed%s: %s%s", what, where, error, more)
