"""Per-route wrappers: JSON error bodies and bearer-token auth, plus the JSON 404/405 route.

These wrap each handler when its route is added instead of running as aiohttp middlewares. A
middleware chain costs every request two extra coroutine frames, a ``functools.partial`` and
aiohttp's own current-app middleware: about 5 µs of CPU, a twentieth of a whole single-POST
ingest (docs/benchmarks.md). A wrapper costs one frame, and only on the routes it guards.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["bearer_auth", "error_body", "json_errors", "no_route"]

log = logging.getLogger(__name__)

#: Headers of an aiohttp HTTP error that still mean something on its JSON replacement.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def error_body(status: int, error: str, detail: object = None) -> web.Response:
    """Return the error response of docs/api.md: ``{"error": ..., "detail": ...}``."""
    return web.json_response({"error": error, "detail": detail}, status=status)


def json_errors(handler: Handler) -> Handler:
    """Wrap ``handler`` so aiohttp's plain-text HTTP errors (413, 408...) become JSON.

    A bug of ours becomes a logged 500 with the same body shape, never a dropped connection.
    """

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status < 400 or error.content_type == "application/json":
                raise
            return _as_json(error)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_body(500, "internal error", "the exporter logged the cause")

    return guarded


def _as_json(error: web.HTTPException) -> web.Response:
    response = error_body(error.status, error.reason, error.text)
    for name in _KEPT_HEADERS:
        if name in error.headers:
            response.headers[name] = error.headers[name]
    if error.keep_alive is False:  # the body was not read to its end (web.ingest.read_body)
        response.force_close()
    return response


def bearer_auth(token: str) -> Callable[[Handler], Handler]:
    """Return a wrapper that requires ``Authorization: Bearer <token>`` before ``handler``."""
    expected = token.encode("utf-8", "surrogateescape")  # os.environ decodes the same way

    def protect(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def authorized(request: web.Request) -> web.StreamResponse:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # aiohttp decodes header bytes as UTF-8 with surrogate escapes: encoding them back
            # the same way gives the bytes sent, where a plain encode() raised on non-UTF-8.
            sent = given.encode("utf-8", "surrogateescape")
            # Constant-time comparison: response timing must not leak the token.
            if scheme.lower() != "bearer" or not hmac.compare_digest(sent, expected):
                response = error_body(
                    401, "unauthorized", "missing or wrong bearer token in Authorization"
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="agent-quality-exporter"'
                return response
            return await handler(request)

        return authorized

    return protect


async def no_route(request: web.Request) -> web.Response:
    """Answer what no route takes: JSON 405 with ``Allow`` for a known path, else JSON 404.

    Added last, on every path and method, so aiohttp's plain-text errors never show. The
    methods a path allows are asked of the other routes the way aiohttp's router asks them.
    """
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        match, methods = await resource.resolve(request)
        if match is None:  # a match is this catch-all itself: it takes every request
            allowed |= methods
    if not allowed:
        return error_body(404, "Not Found", f"no route for {request.path}")
    response = error_body(
        405, "Method Not Allowed", f"{request.method} is not allowed on {request.path}"
    )
    response.headers["Allow"] = ",".join(sorted(allowed))
    return response
