"""The real app under aiohttp's test client, and reading the app's own registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from exporter.web.keys import REGISTRY

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def sample(client: Client, name: str, **labels: str) -> float:
    """Read one sample from the app's own registry (0 when absent)."""
    registry: CollectorRegistry = client.app[REGISTRY]
    return registry.get_sample_value(name, labels) or 0.0
