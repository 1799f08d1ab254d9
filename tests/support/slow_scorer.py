"""A user plugin scorer that takes its time: keeps the queue busy in drain tests."""

from __future__ import annotations

import asyncio

from exporter.model import Conversation


async def score(conversation: Conversation) -> dict[str, float]:
    """Score task_completion 1.0 after 100 ms."""
    await asyncio.sleep(0.1)
    return {"task_completion": 1.0}
