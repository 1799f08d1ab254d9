"""Typed application state shared by handlers (aiohttp ``AppKey``s)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.config.model import Config
from exporter.ingest.intake import Intake
from exporter.metrics import Metrics
from exporter.pipeline import Pipeline

__all__ = ["INTAKE", "METRICS", "PIPELINE", "REGISTRY", "STATE", "AppState"]


@dataclass(slots=True)
class AppState:
    """The running config (a reload replaces it) and what readiness depends on."""

    config: Config
    #: The file a reload reads (None: the embedded default).
    config_file: str | None = None
    #: Whether ``POST /-/reload`` is on (``--web.enable-lifecycle``, as in Prometheus).
    lifecycle_api: bool = False
    started: bool = False
    draining: bool = False
    #: ``time.monotonic()`` by which draining must end, once it has begun.
    drain_deadline: float | None = None

    def begin_drain(self, grace: float) -> float:
        """Start draining (idempotent); return the seconds of grace left."""
        now = time.monotonic()
        if self.drain_deadline is None:
            self.drain_deadline = now + grace
        self.draining = True
        return max(0.0, self.drain_deadline - now)


METRICS = web.AppKey("metrics", Metrics)
REGISTRY = web.AppKey("registry", CollectorRegistry)
INTAKE = web.AppKey("intake", Intake)
PIPELINE = web.AppKey("pipeline", Pipeline)
STATE = web.AppKey("state", AppState)
