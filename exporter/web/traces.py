"""``POST /v1/traces`` and ``POST /v1/logs``: OTLP/HTTP, answered as the OTLP specification says.

200 with the signal's export response (partial success naming refused spans or log records), a
google.rpc.Status for a body that cannot be read (400, 408, 413, 415 for its Content-Encoding) or
does not decode (400), 503 with Retry-After while draining, all in the request's encoding; 415 for
other content types (with the JSON error body of docs/api.md, since there is no OTLP encoding to
answer in). Both feed one receiver: GenAI events in log records join the conversations their spans
make.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from exporter.config.model import Config
from exporter.exceptions import InvalidPayload
from exporter.ingest.intake import Intake
from exporter.ingest.otlp import (
    DEADLINE_EXCEEDED,
    INVALID_ARGUMENT,
    LOGS,
    RESOURCE_EXHAUSTED,
    TRACES,
    UNAVAILABLE,
    ExportResult,
    OtlpReceiver,
    decode_logs_request,
    decode_request,
    encode_response,
    encode_status,
    media_type,
)
from exporter.metrics import Metrics
from exporter.web.guard import error_body
from exporter.web.ingest import read_body
from exporter.web.keys import STATE

__all__ = ["setup"]

log = logging.getLogger(__name__)

#: Seconds between idle checks at most; shorter when the idle timeout is short.
MAX_SWEEP_INTERVAL = 1.0
#: google.rpc.Code of a body that could not be read, by HTTP status (else INVALID_ARGUMENT).
_CODES = {408: DEADLINE_EXCEEDED, 413: RESOURCE_EXHAUSTED}


class _Endpoint:
    """The request handler of one signal, with what it needs from the app bound at setup."""

    def __init__(
        self,
        *,
        signal: str,
        receiver: OtlpReceiver,
        metrics: Metrics,
        max_body_bytes: int,
        draining: Callable[[], bool],
    ) -> None:
        self.signal = signal
        self.receiver = receiver
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.draining = draining

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one OTLP/HTTP export request."""
        encoding = media_type(request.headers.get("Content-Type", ""))
        if encoding is None:
            self.metrics.rejected.labels(self.signal, "content_type").inc()
            return error_body(
                415,
                "unsupported content type",
                f"got {request.content_type!r}; send application/x-protobuf or application/json",
            )
        if self.draining():
            response = _status(503, UNAVAILABLE, "shutting down; retry another replica", encoding)
            response.headers["Retry-After"] = "5"
            return response
        try:
            body = await read_body(request, max_bytes=self.max_body_bytes)
        except web.HTTPException as error:  # 400, 408, 413, 415: answered in OTLP's encoding
            return _refused(error, encoding)
        try:
            result = await self._export(body, encoding)
        except InvalidPayload as error:
            self.metrics.rejected.labels(self.signal, "malformed").inc()
            return _status(400, INVALID_ARGUMENT, str(error), encoding)
        if result.rejected:
            self.metrics.rejected.labels(self.signal, "invalid").inc(result.rejected)
        payload = encode_response(
            rejected=result.rejected,
            error_message=result.error_message,
            encoding=encoding,
            signal=self.signal,
        )
        return web.Response(body=payload, content_type=encoding)

    async def _export(self, body: bytes, encoding: str) -> ExportResult:
        """Decode and take one request; raise ``InvalidPayload`` for a body that is none."""
        if self.signal == LOGS:
            return await self.receiver.export_logs(decode_logs_request(body, encoding=encoding))
        return await self.receiver.export(decode_request(body, encoding=encoding))


def _status(status: int, code: int, message: str, encoding: str) -> web.Response:
    payload = encode_status(code=code, message=message, encoding=encoding)
    return web.Response(status=status, body=payload, content_type=encoding)


def _refused(error: web.HTTPException, encoding: str) -> web.Response:
    """Return ``read_body``'s refusal as a google.rpc.Status, closing as it would have."""
    code = _CODES.get(error.status, INVALID_ARGUMENT)
    response = _status(error.status, code, error.text or error.reason, encoding)
    if error.keep_alive is False:  # the body was not read to its end
        response.force_close()
    return response


def setup(
    app: web.Application, *, config: Config, intake: Intake, metrics: Metrics
) -> dict[str, Handler]:
    """Add the background completion of idle conversations to ``app``; return the handlers.

    The caller routes ``POST /v1/traces`` and ``POST /v1/logs`` to the handlers of ``TRACES``
    and ``LOGS``, with the wrappers of its other routes.

    Call it after the scoring pipeline's ``cleanup_ctx`` is registered: contexts exit in
    reverse order, so what is left in the buffer at shutdown reaches a running pipeline.
    """
    receiver = OtlpReceiver(config=config.otlp, intake=intake, metrics=metrics)

    def draining() -> bool:
        state = app.get(STATE)
        return state is not None and state.draining

    handlers: dict[str, Handler] = {
        signal: _Endpoint(
            signal=signal,
            receiver=receiver,
            metrics=metrics,
            max_body_bytes=config.server.max_body_bytes,
            draining=draining,
        ).handle
        for signal in (TRACES, LOGS)
    }
    interval = min(MAX_SWEEP_INTERVAL, config.otlp.idle_timeout / 4)

    async def completion(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(
            _complete_periodically(receiver, interval=interval, draining=draining),
            name="otlp-completion",
        )
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        receiver.flush()

    app.cleanup_ctx.append(completion)
    return handlers


async def _complete_periodically(
    receiver: OtlpReceiver, *, interval: float, draining: Callable[[], bool]
) -> None:
    """Complete idle conversations; when draining begins, complete all of them at once.

    Flushing at the start of the drain, not at the end, gives the flushed conversations the
    drain's grace period to be scored.
    """
    flushed = False
    while True:
        await asyncio.sleep(interval)
        try:
            if draining():
                if not flushed:
                    receiver.flush()
                    flushed = True
            else:
                receiver.sweep()
        except Exception:  # a bug here must not stop completion for the daemon's lifetime
            log.exception("completing OTLP conversations failed")
