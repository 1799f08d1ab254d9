"""Fixtures shared across the suite. Helpers for real processes live in tests/support/."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from exporter.config import Config, parse_config
from exporter.web import create_app
from tests.support.app import Client, MakeClient
from tests.support.fake_openai import FakeOpenAI, running_fake_openai

# Hypothesis fails an example slower than 200 ms by default: a wall-clock limit that a loaded
# machine breaks (a PII scan of "1" took 291 ms once). Properties here are about results; speed
# has its benchmarks under bench/. Tests may still set their own `deadline`.
settings.register_profile("exporter", deadline=None)
settings.load_profile("exporter")

EXAMPLE_CONVERSATION: dict[str, Any] = {
    "id": "c-7f3a",
    "agent": "support-bot",
    "model": "gpt-4.1-mini",
    "messages": [
        {"role": "user", "content": "Where is my order?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "t1", "name": "lookup_order", "arguments": "{}"}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": '{"status": "shipped"}', "error": False},
        {"role": "assistant", "content": "It ships tomorrow."},
    ],
    "signals": {"user_thumbs_down": False, "escalation_requested": False},
    "scores": {"csat": 4},
    "usage": {"input_tokens": 850, "output_tokens": 120, "cost_usd": 0.0031},
    "started_at": "2026-11-26T10:00:00Z",
    "ended_at": "2026-11-26T10:00:09Z",
    "metadata": {},
}


def conversation(**changes: Any) -> dict[str, Any]:
    """Return a copy of docs/api.md's example conversation with ``changes`` applied."""
    document = copy.deepcopy(EXAMPLE_CONVERSATION)
    document.update(changes)
    return document


@pytest.fixture
def make_config() -> Callable[..., Config]:
    """Build a Config from keyword sections merged over the embedded default."""

    def make(**sections: Any) -> Config:
        return parse_config(sections, source="test.yml")

    return make


@pytest.fixture
def client_for(
    aiohttp_client: Callable[..., Awaitable[Client]], make_config: Callable[..., Config]
) -> MakeClient:
    """Start the real app (aiohttp's test server) for a config made of the given sections."""

    async def start(**sections: Any) -> Client:
        return await aiohttp_client(create_app(make_config(**sections)))

    return start


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    """A real OpenAI-compatible server process on loopback, one per test module."""
    with running_fake_openai() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    """The module's fake judge server, reset to answer normally."""
    fake_server.reset()
    return fake_server
