"""Request bodies: the Content-Encoding undone in bounded steps, the size limit, the deadline.

aiohttp's own decompression is off (``handler_args`` in ``exporter.web.app``): it inflated a
compressed body 16 MiB at a time into a stream that buffers twice that, and one 200 KB gzip
bomb held 118 MB until a full garbage collection (docs/design.md, "Request bodies"). Here the
body is inflated 64 KiB at a time and reading stops at the limit, so a body costs at most
``max_bytes`` plus one step, and nothing of it outlives the request: a refusal is raised from
a frame that holds no buffer.
"""

from __future__ import annotations

import asyncio
import functools
import mmap
import zlib
from collections.abc import Callable, Iterator

from aiohttp import web

__all__ = ["BODY_READ_TIMEOUT", "ENCODINGS", "INFLATE_STEP", "Inflater", "read_body"]

#: Seconds a client has to send the whole body once its headers are in. aiohttp has no read
#: timeout of its own, so a client that stalls mid-body would hold its handler forever. An
#: OpenTelemetry Collector gives up on an export after 30 s by default: nobody waits longer.
BODY_READ_TIMEOUT = 30.0
#: The content codings taken, as the 415 names them (``x-gzip`` is read as ``gzip``).
ENCODINGS = ("identity", "gzip", "deflate")
#: Bytes inflated per step: the most a compressed body can overshoot the limit by.
INFLATE_STEP = 64 << 10

_ALIASES = {
    "": "identity",
    "identity": "identity",
    "gzip": "gzip",
    "x-gzip": "gzip",
    "deflate": "deflate",
}


class Inflater:
    """Undo ``gzip`` (every member) or ``deflate`` (zlib, or raw as some clients send it).

    ``feed`` yields the inflated bytes in pieces of at most ``INFLATE_STEP``; ``finish`` raises
    ``zlib.error`` when the stream stopped before its end. Both raise ``zlib.error`` for a
    corrupt stream or data after its end.
    """

    def __init__(self, coding: str) -> None:
        self._gzip = coding == "gzip"
        self._stream: zlib._Decompress | None = None

    def _open(self, first: int) -> zlib._Decompress:
        if self._gzip:
            return zlib.decompressobj(wbits=31)
        # RFC 9110 means zlib (RFC 1950); some clients send raw deflate. A zlib stream's first
        # byte says "deflate" (CM = 8) in its low bits; aiohttp and browsers sniff it the same.
        return zlib.decompressobj(wbits=15 if first & 0x0F == 8 else -15)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield what ``data`` inflates to, at most ``INFLATE_STEP`` bytes at a time."""
        while data:
            stream = self._stream
            if stream is None or stream.eof:
                # After a gzip member's end comes the next member, if any (RFC 1952 2.2).
                if stream is not None and not self._gzip:
                    raise zlib.error("data after the end of the deflate stream")
                stream = self._stream = self._open(data[0])
            piece = stream.decompress(data, INFLATE_STEP)
            if piece:
                yield piece
            # A full step may leave output waiting inside zlib even when all input is taken.
            while len(piece) == INFLATE_STEP and not stream.unconsumed_tail and not stream.eof:
                piece = stream.decompress(b"", INFLATE_STEP)
                if piece:
                    yield piece
            data = stream.unused_data if stream.eof else stream.unconsumed_tail

    def finish(self) -> None:
        """Raise ``zlib.error`` if the stream stopped before its end (a truncated body)."""
        if self._stream is not None and not self._stream.eof:
            raise zlib.error("the stream is cut short: it stops before its end marker")


def content_coding(request: web.Request) -> str:
    """Return ``identity``, ``gzip`` or ``deflate``; raise a 415 naming them for another."""
    given = request.headers.get("Content-Encoding")
    if given is None:  # most requests: nothing more to look at
        return "identity"
    coding = _ALIASES.get(given.strip().lower())
    if coding is None:
        taken = ", ".join(ENCODINGS)
        raise web.HTTPUnsupportedMediaType(
            text=f"Content-Encoding {given[:64]!r} is not supported; send {taken}"
        )
    return coding


#: Why reading stopped: makes the HTTP error to raise once the buffers are gone.
_Refusal = Callable[[], web.HTTPException]


async def read_body(request: web.Request, *, max_bytes: int) -> bytes:
    """Read the whole body, its Content-Encoding undone, refusing more than ``max_bytes``.

    Raises ``web.HTTPException``: 415 for an encoding other than ``ENCODINGS``, 413 past the
    limit (compressed or inflated), 408 after ``BODY_READ_TIMEOUT``, 400 for a broken stream.
    After a 408, 413 or 400 the connection is closed once the answer is sent
    (``_stop_reading``). The JSON handlers let ``exporter.web.guard.json_errors`` turn these
    into the JSON error body; the OTLP handlers answer them as a google.rpc.Status.
    """
    coding = content_coding(request)
    length = request.content_length
    if length is not None and length > max_bytes:
        too_large = web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=length)
        # An uncompressed rest costs nothing to skip; lingering lets the client read the 413.
        if coding != "identity":
            _stop_reading(request, too_large)
        raise too_large
    if coding == "identity" and request.content.is_eof():
        # The whole body came with the headers (most posts): nothing to wait for, and a
        # timer would cost more than the rest of reading it.
        return await request.read()
    outcome = await _read(request, coding=coding, max_bytes=max_bytes)
    if isinstance(outcome, bytes):
        return outcome
    # Raised here, not where reading stopped: that frame held the body, and an exception's
    # traceback keeps every frame it passed through alive until the garbage collector runs.
    failure = outcome()
    _stop_reading(request, failure)
    raise failure


async def _read(request: web.Request, *, coding: str, max_bytes: int) -> bytes | _Refusal:
    """Return the body, or why reading it stopped; never raise while holding it.

    The body is built in an anonymous memory map, given back to the OS when the request ends.
    In a bytearray it came from malloc, and glibc keeps a freed block of a few MB in its heap
    once a larger one was freed (its mmap threshold rises to the largest block freed): 17 MB
    stayed resident after a series of bombs, where the map leaves nothing.
    """
    inflater = Inflater(coding) if coding != "identity" else None
    length = request.content_length
    room = max_bytes if inflater is not None or length is None else length
    with mmap.mmap(-1, max(room, 1)) as body:  # pages cost memory only once written
        size = 0
        try:
            async with asyncio.timeout(BODY_READ_TIMEOUT):
                while chunk := await request.content.readany():
                    for piece in inflater.feed(chunk) if inflater is not None else (chunk,):
                        end = size + len(piece)
                        if end > max_bytes:
                            return functools.partial(
                                web.HTTPRequestEntityTooLarge,
                                max_size=max_bytes,
                                actual_size=end,
                                text=_too_large(max_bytes, compressed=inflater is not None),
                            )
                        body[size:end] = piece
                        size = end
            if inflater is not None:
                inflater.finish()
        except TimeoutError:
            late = f"the body did not arrive within {BODY_READ_TIMEOUT:g}s of the headers"
            return functools.partial(web.HTTPRequestTimeout, text=late)
        except zlib.error as error:
            broken = f"cannot read the request body: {coding}: {error}"
            return functools.partial(web.HTTPBadRequest, text=broken)
        except Exception as error:  # a client that went away, a broken chunked encoding
            unread = f"cannot read the request body: {error}"
            return functools.partial(web.HTTPBadRequest, text=unread)
        return body[:size]


def _too_large(max_bytes: int, *, compressed: bool) -> str:
    what = "the body inflates to" if compressed else "the body is"
    return f"{what} more than {max_bytes} bytes (server.limits.max_body_bytes)"


def _stop_reading(request: web.Request, answer: web.HTTPException) -> None:
    """Close the connection after the answer instead of reading the rest of the body.

    Once a handler has answered, aiohttp reads and discards what is left of the body for up to
    10 s ("lingering"): ten seconds of waiting for a stalled client, or of reading a bomb's
    rest. A timeout set on the stream ends the lingering at once, as its own deadline would.
    """
    request.content.set_exception(TimeoutError("the exporter stopped reading this body"))
    answer.force_close()  # `Connection: close`, so the client does not reuse the connection
