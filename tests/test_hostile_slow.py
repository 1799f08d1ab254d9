"""Slow clients on raw sockets: a stalled body never blocks others and is cut off with a 408.

The body deadline (``BODY_READ_TIMEOUT``, 30 s) is shortened here so the tests stay fast; one
test runs the real daemon with its real deadline and only checks that others are served.
"Others are served meanwhile" is shown by order, not by speed: their answers arrive while the
stalled request still has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient

from exporter.config import Config
from exporter.web import body as web_body
from exporter.web import create_app
from tests.conftest import conversation
from tests.support.daemon import running_daemon

Client = TestClient[web.Request, web.Application]

#: Long enough for a POST and a scrape on a busy machine, before the stalled request's 408.
DEADLINE = 2.0
PATHS = ("/v1/conversations", "/v1/feedback", "/v1/traces", "/v1/logs")


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[Client]],
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    """Start the real app on a loopback port, with a short body deadline."""
    monkeypatch.setattr(web_body, "BODY_READ_TIMEOUT", DEADLINE)
    return await aiohttp_client(create_app(make_config()))


@asynccontextmanager
async def raw_connection(
    port: int | None, head: bytes
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Open a socket to the app and send ``head`` (request line, headers, part of a body)."""
    assert port is not None, "the app is not listening"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


def request_head(path: str, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


Response = tuple[int, dict[str, str], bytes]


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Read one HTTP/1.1 response with a Content-Length body."""
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def assert_served(client: Client) -> None:
    """A normal ingest and a scrape are answered."""
    response = await client.post("/v1/conversations", json=conversation())
    assert response.status == 202
    assert (await client.get("/metrics")).status == 200


async def assert_served_meanwhile(client: Client, *stalled: asyncio.Task[Response]) -> None:
    """Others are answered while each ``stalled`` request is still waiting for its own answer."""
    await assert_served(client)
    assert not any(task.done() for task in stalled), "a stalled request was answered first"


def answer_of(reader: asyncio.StreamReader) -> asyncio.Task[Response]:
    """Start reading the stalled request's answer, to be awaited by ``assert_cut_off``."""
    return asyncio.create_task(read_response(reader))


async def assert_cut_off(
    reader: asyncio.StreamReader,
    answer: asyncio.Task[Response],
    started: float,
    path: str = "/v1/conversations",
) -> None:
    """The stalled request gets the 408 from our body deadline, then the socket closes.

    JSON error body, or on the OTLP paths a google.rpc.Status (here in JSON, as the request was).
    """
    status, headers, body = await asyncio.wait_for(answer, 60)
    waited = time.monotonic() - started
    assert status == 408
    assert headers["connection"] == "close"
    document = json.loads(body)
    if path in ("/v1/traces", "/v1/logs"):
        assert document["code"] == 4  # DEADLINE_EXCEEDED
        message = document["message"]
    else:
        assert set(document) == {"error", "detail"}
        message = document["detail"]
    # The deadline's own message: not aiohttp's, nor a keep-alive timeout's.
    assert message == f"the body did not arrive within {DEADLINE:g}s of the headers"
    assert waited >= DEADLINE * 0.8  # never before the deadline (0.8: clock granularity)
    # Closed at once: aiohttp's lingering would read on for 10 s. The client may still be
    # sending, and then the close is a reset; either way the server is done with it.
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 5) == b""


class TestStalledBody:
    @pytest.mark.parametrize("path", PATHS)
    async def test_part_of_the_body_then_nothing(self, client: Client, path: str) -> None:
        """Headers and 10 of 1000 bytes: others are served meanwhile; 408 at the deadline."""
        head = request_head(path, Content_Length="1000") + b'{"id": "x",'
        started = time.monotonic()
        async with raw_connection(client.port, head) as (reader, _):
            answer = answer_of(reader)
            await assert_served_meanwhile(client, answer)
            await assert_cut_off(reader, answer, started, path)
        await assert_served(client)

    async def test_a_byte_at_a_time_is_still_cut_off(self, client: Client) -> None:
        """A client trickling a byte every 50 ms (slowloris) meets the same whole-body deadline."""
        head = request_head("/v1/conversations", Content_Length="100000")
        started = time.monotonic()
        async with raw_connection(client.port, head) as (reader, writer):

            async def trickle() -> None:
                while True:
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.05)

            dripping = asyncio.create_task(trickle())
            try:
                answer = answer_of(reader)
                await assert_served_meanwhile(client, answer)
                try:
                    await assert_cut_off(reader, answer, started)
                except ConnectionResetError:
                    # The server closed on a client still sending: the kernel answers the next
                    # byte with a reset, which can overtake the 408. Cut off while bytes kept
                    # coming is the point: an idle timeout would never have fired.
                    assert time.monotonic() - started >= DEADLINE * 0.8
            finally:
                dripping.cancel()
                await asyncio.gather(dripping, return_exceptions=True)

    async def test_chunked_body_that_never_ends(self, client: Client) -> None:
        """A chunked body without its last chunk is cut off the same way."""
        head = request_head("/v1/conversations", Transfer_Encoding="chunked") + b"5\r\n[{}, \r\n"
        started = time.monotonic()
        async with raw_connection(client.port, head) as (reader, _):
            answer = answer_of(reader)
            await assert_served_meanwhile(client, answer)
            await assert_cut_off(reader, answer, started)

    async def test_gzip_body_that_stops(self, client: Client) -> None:
        """Half a gzip stream, then silence: 408, not a worker stuck in the inflater."""
        compressed = gzip.compress(json.dumps([conversation()] * 20).encode())
        head = request_head(
            "/v1/conversations", Content_Length=str(len(compressed)), Content_Encoding="gzip"
        )
        started = time.monotonic()
        async with raw_connection(client.port, head + compressed[: len(compressed) // 2]) as (
            reader,
            _,
        ):
            answer = answer_of(reader)
            await assert_served_meanwhile(client, answer)
            await assert_cut_off(reader, answer, started)

    async def test_many_stalled_clients(self, client: Client) -> None:
        """Fifty stalled uploads at once cost the others nothing, and all get their 408."""
        head = request_head("/v1/conversations", Content_Length="1000") + b"["
        started = time.monotonic()
        async with AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(raw_connection(client.port, head))
                for _ in range(50)
            ]
            answers = [answer_of(reader) for reader, _ in streams]
            await assert_served_meanwhile(client, *answers)
            for (reader, _), answer in zip(streams, answers, strict=True):
                await assert_cut_off(reader, answer, started)
        await assert_served(client)


class TestStalledHeaders:
    async def test_half_a_request_line_blocks_nobody(self, client: Client) -> None:
        """A client that never finishes its headers holds only its own connection.

        aiohttp closes it after the server's keep-alive timeout (see the report on issue 8).
        """
        head = b"POST /v1/conversations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"
        async with raw_connection(client.port, head) as (reader, _):
            answer = answer_of(reader)
            for _ in range(3):
                await assert_served_meanwhile(client, answer)
            answer.cancel()


async def test_real_daemon_serves_others_while_a_body_stalls(tmp_path: Path) -> None:
    """The daemon as a subprocess: a stalled upload does not hold up ingest or scrapes."""
    with running_daemon(tmp_path) as daemon:
        head = request_head("/v1/conversations", Content_Length="1000") + b"["
        async with raw_connection(daemon.port, head) as (reader, _), ClientSession() as session:
            answer = answer_of(reader)  # its 408 comes only after the real 30 s deadline
            for _ in range(5):
                async with session.post(
                    f"{daemon.url}/v1/conversations", json=conversation()
                ) as response:
                    assert response.status == 202
                async with session.get(f"{daemon.url}/metrics") as response:
                    assert response.status == 200
            assert not answer.done(), "the stalled upload was answered before the others"
            answer.cancel()
        assert daemon.process.poll() is None
