"""``GET /metrics``: what prometheus_client's aiohttp handler does, on the faster exposition."""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from exporter.metrics import compressed, render

__all__ = ["metrics_page"]


def metrics_page(registry: CollectorRegistry) -> Handler:
    """Return the handler: Prometheus text or OpenMetrics as ``Accept`` asks, ``name[]`` filters.

    gzip is done here, at a low level, when the client takes it (Prometheus always does);
    another coding (deflate) is left to aiohttp as before.
    """

    async def handle(request: web.Request) -> web.Response:
        accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
        body, content_type = render(
            registry, accept=accept, names=request.query.getall("name[]", [])
        )
        packed = compressed(body, accept_encoding=request.headers.get(hdrs.ACCEPT_ENCODING, ""))
        if packed is not None:
            return web.Response(
                body=packed,
                headers={hdrs.CONTENT_TYPE: content_type, hdrs.CONTENT_ENCODING: "gzip"},
            )
        response = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
        response.enable_compression()
        return response

    return handle
