"""A local OTLP/HTTP logs receiver: what an OpenTelemetry Collector's ``otlphttp`` receiver does.

It decodes each ``ExportLogsServiceRequest`` the daemon posts to ``/v1/logs`` and keeps the
log records with their trace and span ids; ``hang`` makes it take requests and never answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from exporter.ingest.otlp.values import attributes
from tests.support.threaded import serving_in_thread

__all__ = ["Event", "Receiver", "receiver_app", "running_logs_receiver"]


@dataclass(frozen=True)
class Event:
    """One received log record."""

    event_name: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class Receiver:
    """What the receiver got, and how it answers."""

    hang: bool = False
    events: list[Event] = field(default_factory=list)
    requests: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


def receiver_app(receiver: Receiver) -> web.Application:
    """Return the receiver's application: ``POST /v1/logs``, protobuf."""

    async def logs(request: web.Request) -> web.Response:
        receiver.requests += 1
        if receiver.hang:
            await asyncio.sleep(3600)
        body = ExportLogsServiceRequest.FromString(await request.read())
        for resource_logs in body.resource_logs:
            resource = attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    receiver.events.append(
                        Event(
                            event_name=record.event_name,
                            trace_id=record.trace_id.hex(),
                            span_id=record.span_id.hex(),
                            attributes=attributes(record.attributes),
                            resource=resource,
                        )
                    )
        receiver.arrived.set()
        return web.Response(
            body=ExportLogsServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/logs", logs)
    return app


@contextlib.contextmanager
def running_logs_receiver(port: int, receiver: Receiver | None = None) -> Iterator[Receiver]:
    """Run the receiver on ``port`` on its own event loop in a thread (for daemon processes)."""
    receiver = receiver if receiver is not None else Receiver()
    with serving_in_thread(lambda: receiver_app(receiver), port, what="OTLP logs receiver"):
        yield receiver
