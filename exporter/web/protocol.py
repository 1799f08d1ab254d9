"""Malformed HTTP, answered like every other error: the JSON body, a counter, a throttled log.

aiohttp's parser refuses some requests before any route sees them (a bad chunk size, both
Content-Length and Transfer-Encoding, a header or URL over 8 KB, too many headers) and answers
them itself: plain text, logged at error level with a traceback, once per request. Its hook
for that answer is ``RequestHandler.handle_error``; aiohttp builds one ``RequestHandler`` per
connection in ``Server.__call__``, and the runner builds the ``Server`` in ``_make_server``.
``Runner`` overrides those two, and nothing else: a request that parses costs what it did.
"""

from __future__ import annotations

import http
import logging
from typing import Any

from aiohttp import http_exceptions, web
from prometheus_client import Counter

from exporter.ingest.decode import shorten
from exporter.logs import Throttle
from exporter.web.guard import error_body

__all__ = ["MalformedRequests", "Runner"]

log = logging.getLogger(__name__)

#: Seconds between two log lines about one kind of malformed request (the counter gets all).
LOG_INTERVAL = 60.0


def _reason(status: int, error: BaseException | None) -> str:
    """Return the ``reason`` label of a refused request: one of ``HTTP_ERROR_REASONS``."""
    if status >= 500:
        return "internal"
    if isinstance(error, http_exceptions.LineTooLong):
        return "too_long"
    if isinstance(error, http_exceptions.BadHttpMethod):
        return "bad_method"  # mostly TLS or other protocols sent to the HTTP port
    return "malformed"


class MalformedRequests:
    """Count every request refused before routing; log the first of each kind, then few."""

    def __init__(self, *, counter: Counter, interval: float = LOG_INTERVAL) -> None:
        self._counter = counter
        self._throttle = Throttle(interval=interval)

    def report(self, *, status: int, error: BaseException | None, remote: str | None) -> str:
        """Count and maybe log one refused request; return what the client is told."""
        reason = _reason(status, error)
        self._counter.labels(reason).inc()
        if reason == "internal":
            held = self._throttle.allow(reason)
            if held is not None:
                log.error("error handling a request from %s%s", remote, _more(held), exc_info=error)
            return "the exporter logged the cause"
        # aiohttp's message, without the lines it adds under it to point at the offending byte.
        message = str(getattr(error, "message", "") or error or "bad request")
        detail = shorten(message.split("\n", 1)[0].rstrip(":"))
        held = self._throttle.allow(reason)
        if held is not None:
            # A port scanner or a TLS client on the HTTP port: not worth a warning.
            level = logging.DEBUG if reason == "bad_method" else logging.WARNING
            more = _more(held)
            log.log(level, "refused a %s request from %s: %s%s", reason, remote, detail, more)
        return detail


def _more(held: int) -> str:
    return f" ({held} more since the last report)" if held else ""


class _Handler(web.RequestHandler):
    """aiohttp's connection handler, answering what it cannot parse with the JSON error body."""

    __slots__ = ("_malformed",)

    def __init__(self, manager: web.Server, *, malformed: MalformedRequests, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._malformed = malformed

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Return the JSON error body for ``status``; log and count as ``MalformedRequests``."""
        if request.writer.output_size > 0:  # as aiohttp does: an answer is already under way
            raise ConnectionError("an answer was already sent; cannot send an error")
        detail = self._malformed.report(status=status, error=exc, remote=request.remote)
        response = error_body(status, http.HTTPStatus(status).phrase, detail)
        response.force_close()
        return response


class _Server(web.Server):
    """The server ``AppRunner`` built, with ``_Handler`` for each connection."""

    def __init__(self, built: web.Server, *, malformed: MalformedRequests) -> None:
        super().__init__(
            built.request_handler,
            request_factory=built.request_factory,
            handler_cancellation=built.handler_cancellation,
            **built._kwargs,  # the handler arguments: the runner's and the app's handler_args
        )
        self._malformed = malformed

    def __call__(self) -> web.RequestHandler:
        return _Handler(self, loop=self._loop, malformed=self._malformed, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` whose connections answer malformed HTTP as ``MalformedRequests`` says."""

    __slots__ = ("_malformed",)

    def __init__(self, app: web.Application, *, malformed: MalformedRequests, **kwargs: Any):
        super().__init__(app, **kwargs)
        self._malformed = malformed

    async def _make_server(self) -> web.Server:
        return _Server(await super()._make_server(), malformed=self._malformed)
