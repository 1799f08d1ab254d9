"""Middlewares: JSON error bodies for every 4xx/5xx, and bearer-token auth."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["bearer_auth", "error_body", "json_errors"]

log = logging.getLogger(__name__)


def error_body(status: int, error: str, detail: object = None) -> web.Response:
    """Return the SPEC's error response: ``{"error": ..., "detail": ...}``."""
    return web.json_response({"error": error, "detail": detail}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's plain-text HTTP errors (413 from the body limit, 404, 405) into JSON.

    A bug of ours becomes a logged 500 with the same body shape, never a dropped connection.
    """
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400 or error.content_type == "application/json":
            raise
        response = error_body(error.status, error.reason, error.text)
        for name in ("Allow", "WWW-Authenticate", "Retry-After"):
            if name in error.headers:
                response.headers[name] = error.headers[name]
        if error.keep_alive is False:  # the body was not read to its end (read_body)
            response.force_close()
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_body(500, "internal error", "the exporter logged the cause")


def bearer_auth(token: str, *, protected: tuple[str, ...]) -> web.middleware:  # type: ignore[valid-type]
    """Require ``Authorization: Bearer <token>`` on paths starting with ``protected``."""
    expected = token.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(protected):
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # Constant-time comparison: response timing must not leak the token.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected):
                response = error_body(
                    401, "unauthorized", "missing or wrong bearer token in Authorization"
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="agent-quality-exporter"'
                return response
        return await handler(request)

    return middleware
