"""``POST /v1/conversations`` and ``POST /v1/feedback``: validate, answer 202 at once."""

from __future__ import annotations

import msgspec
from aiohttp import web

from exporter.config.model import ServerConfig
from exporter.exceptions import InvalidPayload, PayloadTooLarge
from exporter.ingest.decode import Batch, invalid_utf8, shorten, split_json, split_ndjson
from exporter.ingest.intake import Counts, Intake
from exporter.metrics import Metrics
from exporter.model import decode_feedback
from exporter.web.body import read_body
from exporter.web.guard import error_body
from exporter.web.keys import AppState

# read_body is the one way in for every handler that reads a body, OTLP ones included.
__all__ = ["IngestEndpoints", "read_body"]

_JSON_TYPES = frozenset({"application/json", ""})
_NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/ndjson"})
#: Rejected items listed one by one in a response; the rest are only counted.
MAX_LISTED_REJECTIONS = 100


def _media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").partition(";")[0].strip().lower()


def _draining() -> web.Response:
    response = error_body(503, "shutting down", "this replica is draining; retry another")
    response.headers["Retry-After"] = "5"
    return response


class IngestEndpoints:
    """The JSON ingest handlers, with what they need from the app bound once.

    Bound at start rather than looked up per request (``request.app[...]`` is three Python
    calls): the server limits need a restart to change, and the intake reconfigures itself in
    place on a reload, so nothing bound here goes stale.
    """

    def __init__(
        self, *, intake: Intake, metrics: Metrics, server: ServerConfig, state: AppState
    ) -> None:
        self._intake = intake
        self._metrics = metrics
        self._max_body_bytes = server.max_body_bytes
        self._max_items = server.max_batch_items
        self._state = state

    async def conversations(self, request: web.Request) -> web.Response:
        """Take one conversation, a JSON array of them, or NDJSON; answer 202 with counts."""
        if self._state.draining:
            return _draining()
        media_type = _media_type(request)
        if media_type in _NDJSON_TYPES:
            split = split_ndjson
        elif media_type in _JSON_TYPES or media_type.endswith("+json"):
            split = split_json
        else:
            self._reject("content_type")
            return error_body(
                415,
                "unsupported content type",
                f"got {media_type!r}; send application/json or application/x-ndjson",
            )
        body = await read_body(request, max_bytes=self._max_body_bytes)
        if not body or body.isspace():  # no copy of a large body just to look
            self._reject("malformed")
            return error_body(400, "empty body", {"where": "$"})
        try:
            batch = split(body, max_items=self._max_items)
        except PayloadTooLarge as error:
            self._reject("too_many_items")
            return error_body(413, error.message, {"where": error.where})
        except InvalidPayload as error:
            self._reject("malformed")
            return error_body(400, error.message, {"where": error.where})
        if batch.rejected:
            return self._answer_partly(batch)
        # An empty array is a batch of nothing, not an error: 202 with zero counts.
        return _accepted(self._intake.accept(batch.items))

    def _answer_partly(self, batch: Batch) -> web.Response:
        """Answer a batch with rejected items: 400 if none is left, else 202 listing them."""
        rejected = batch.rejected
        self._reject("invalid", len(rejected))
        listed = [r.as_dict() for r in rejected[:MAX_LISTED_REJECTIONS]]
        if not batch.items:
            first = rejected[0]
            message = first.error if len(batch) == 1 else "no valid conversation in the request"
            return error_body(
                400,
                message,
                {"where": first.where, "rejected": listed, "rejected_count": len(rejected)},
            )
        return _accepted(
            self._intake.accept(batch.items), rejected=listed, rejected_count=len(rejected)
        )

    def _reject(self, reason: str, count: int = 1, *, endpoint: str = "conversations") -> None:
        self._metrics.rejected.labels(endpoint, reason).inc(count)

    async def feedback(self, request: web.Request) -> web.Response:
        """Take a late signal ``{"id": ..., "signals": {...}}`` for a conversation already sent."""
        if self._state.draining:
            return _draining()
        media_type = _media_type(request)
        if not (media_type in _JSON_TYPES or media_type.endswith("+json")):
            self._reject("content_type", endpoint="feedback")
            return error_body(415, "unsupported content type", f"got {media_type!r}; send JSON")
        body = await read_body(request, max_bytes=self._max_body_bytes)
        try:
            item = decode_feedback(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            detail = shorten(str(error))
        except UnicodeDecodeError as error:
            detail = invalid_utf8(error)
        except RecursionError:  # deep nesting in a field msgspec skips over
            detail = "JSON nested too deeply"
        else:
            outcome = self._intake.feedback(item)
            return web.json_response({"id": item.id, "outcome": outcome}, status=202)
        self._reject("invalid", endpoint="feedback")
        return error_body(400, "invalid feedback", detail)


def _accepted(counts: Counts, **rejections: object) -> web.Response:
    """Return the 202 answer: the request's counts, and its rejected items if any."""
    result: dict[str, object] = {
        "accepted": counts.accepted,
        "sampled": counts.sampled,
        "dropped": counts.dropped,
        **rejections,
    }
    # msgspec encodes several times faster than json.dumps: this is on every ingest request.
    return web.Response(
        body=msgspec.json.encode(result), status=202, content_type="application/json"
    )
