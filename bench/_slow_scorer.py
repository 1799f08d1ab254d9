"""A plugin scorer with a known, small drain rate: it sleeps ``sleep_ms`` (default 20 ms).

With one pipeline worker the queue drains at about 1000 / sleep_ms conversations/s, so the
memory bench can feed the daemon at a known multiple of that rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from exporter.model import Conversation


async def score(conversation: Conversation, options: Mapping[str, Any]) -> dict[str, float]:
    """Score coherence 4 after ``options["sleep_ms"]`` milliseconds."""
    await asyncio.sleep(float(options.get("sleep_ms", 20)) / 1000)
    return {"coherence": 4.0}
