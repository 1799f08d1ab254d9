"""Serve an aiohttp app on its own event loop in a thread, for tests whose clients block.

The daemon under test runs in another process and the test's own code waits synchronously, so
the receivers it talks to (webhooks, OTLP collectors) need a loop of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator

from aiohttp import web

__all__ = ["serving_in_thread"]


@contextlib.contextmanager
def serving_in_thread(
    make_app: Callable[[], web.Application], port: int, *, what: str
) -> Iterator[None]:
    """Serve ``make_app()`` on 127.0.0.1:``port`` until the block ends; ``what`` names it."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        runner = web.AppRunner(make_app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError(f"the {what} did not start")
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
