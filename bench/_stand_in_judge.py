"""A plugin scorer that behaves like a saturated judge without one: 32 at a time, 500 ms each.

The judge bench's control: the same queue dynamics (a full queue, sampled conversations beyond
the judge's rate dropped) with no HTTP, so the difference to the real judge is the judge's cost.
"""

from __future__ import annotations

import asyncio

from exporter.model import Conversation

_CAP = asyncio.Semaphore(32)


async def score(conversation: Conversation) -> dict[str, float]:
    """Score coherence 4 after 500 ms, at most 32 at a time."""
    async with _CAP:
        await asyncio.sleep(0.5)
    return {"coherence": 4.0}
