"""Health, readiness, the OpenAPI document and the status page at ``/``."""

from __future__ import annotations

import functools
import html
from typing import Any

import msgspec
from aiohttp import web

from exporter._version import __version__
from exporter.config.model import Config
from exporter.model import Conversation, Feedback
from exporter.web.ingest import MAX_LISTED_REJECTIONS
from exporter.web.keys import METRICS, PIPELINE, STATE
from exporter.web.status import STATUS
from exporter.web.status_page import render_status

__all__ = ["healthy", "landing", "openapi", "openapi_document", "ready"]


async def healthy(request: web.Request) -> web.Response:
    """Answer 200 while the process runs (liveness)."""
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    """Answer 200 when the config is loaded, workers run and we are not draining."""
    state, pipeline = request.app[STATE], request.app[PIPELINE]
    if state.draining:
        return web.Response(status=503, text="Draining.\n")
    if not (state.started and pipeline.running):
        return web.Response(status=503, text="Starting.\n")
    return web.Response(text="Ready.\n")


async def openapi(request: web.Request) -> web.Response:
    """Serve the OpenAPI 3.1 document (its schemas are the ones ingest validates with)."""
    return web.json_response(openapi_document())


@functools.cache
def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI document, with schemas generated from the decoding structs."""
    (conversation, feedback), components = msgspec.json.schema_components(
        (Conversation, Feedback), ref_template="#/components/schemas/{name}"
    )
    components["Error"] = {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string", "minLength": 1}, "detail": {}},
    }
    components.update(_otlp_schemas())
    errors = {
        str(code): {"description": text, "content": _json({"$ref": "#/components/schemas/Error"})}
        for code, text in (
            (400, "Malformed JSON or a schema violation; `detail` says where."),
            (401, "Missing or wrong bearer token."),
            (408, "The body did not arrive in time; the connection is closed."),
            (413, "Body or batch over the configured limit."),
            (415, "Unsupported content type, or Content-Encoding (identity, gzip, deflate)."),
            (503, "Draining for shutdown."),
        )
    }
    batch = {"oneOf": [conversation, {"type": "array", "items": conversation}]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "agent-quality-exporter", "version": __version__},
        "paths": {
            "/v1/conversations": {
                "post": {
                    "summary": "Send finished conversations (object, array or NDJSON; gzip ok).",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": batch},
                            "application/x-ndjson": {"schema": conversation},
                        },
                    },
                    "responses": {"202": _accepted_response(), **errors},
                }
            },
            "/v1/traces": _otlp_path(
                "OTLP/HTTP traces; conversations are assembled from GenAI spans.",
                "ExportTraceServiceResponse, maybe partial.",
                "Export",
                errors,
            ),
            "/v1/logs": _otlp_path(
                "OTLP/HTTP logs; GenAI events join the conversations of their spans.",
                "ExportLogsServiceResponse, maybe partial.",
                "LogsExport",
                errors,
            ),
            "/v1/feedback": {
                "post": {
                    "summary": "Send a late signal for a conversation already sent.",
                    "requestBody": {"required": True, "content": _json(feedback)},
                    "responses": {"202": _feedback_response(), **errors},
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _accepted_response() -> dict[str, Any]:
    rejection = {
        "type": "object",
        "required": ["index", "where", "error"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "where": {"type": "string"},
            "error": {"type": "string"},
        },
    }
    counts = {
        "type": "object",
        "required": ["accepted", "sampled", "dropped"],
        "properties": {
            name: {"type": "integer", "minimum": 0}
            for name in ("accepted", "sampled", "dropped", "rejected_count")
        }
        | {"rejected": {"type": "array", "items": rejection, "maxItems": MAX_LISTED_REJECTIONS}},
    }
    return {"description": "Accepted; scoring happens later.", "content": _json(counts)}


def _feedback_response() -> dict[str, Any]:
    outcome = {
        "type": "object",
        "required": ["id", "outcome"],
        "properties": {
            "id": {"type": "string"},
            "outcome": {"enum": ["sampled", "not_sampled", "dropped", "unknown"]},
        },
    }
    description = (
        "Applied. `not_sampled`: the signal does not get it scored (an id outside the boost "
        "band is never kept); `unknown`: not held (already sampled, never seen, aged out)."
    )
    return {"description": description, "content": _json(outcome)}


def _otlp_path(summary: str, success: str, name: str, errors: dict[str, Any]) -> dict[str, Any]:
    """Return the POST operation of an OTLP/HTTP path (``/v1/traces``, ``/v1/logs``)."""
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            "responses": {
                "200": _otlp(success, name),
                "400": _otlp("A body that cannot be read or does not decode.", "Status"),
                "401": errors["401"],
                "408": _otlp("The body did not arrive in time; closed.", "Status"),
                "413": _otlp("Body over the configured limit.", "Status"),
                "415": _otlp_or_error(
                    "Unsupported content type (the JSON error body), or a "
                    "Content-Encoding other than identity, gzip, deflate (a Status)."
                ),
                "503": _otlp("Draining for shutdown.", "Status"),
            },
        }
    }


def _otlp(description: str, name: str) -> dict[str, Any]:
    """Return an OTLP response: protobuf, or its JSON mapping, in the request's encoding."""
    return {
        "description": description,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"$ref": f"#/components/schemas/Otlp{name}"}},
        },
    }


def _otlp_or_error(description: str) -> dict[str, Any]:
    """Return a response that is a Status, or the JSON error body when no encoding was taken."""
    status, error = "#/components/schemas/OtlpStatus", "#/components/schemas/Error"
    return {
        "description": description,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"anyOf": [{"$ref": status}, {"$ref": error}]}},
        },
    }


def _otlp_schemas() -> dict[str, Any]:
    # int64 fields are strings in the protobuf JSON mapping.
    count = {"anyOf": [{"type": "string", "pattern": "^[0-9]+$"}, {"type": "integer"}]}
    return {
        "OtlpExport": {
            "type": "object",
            "properties": {
                "partialSuccess": {
                    "type": "object",
                    "properties": {"rejectedSpans": count, "errorMessage": {"type": "string"}},
                }
            },
        },
        "OtlpLogsExport": {
            "type": "object",
            "properties": {
                "partialSuccess": {
                    "type": "object",
                    "properties": {
                        "rejectedLogRecords": count,
                        "errorMessage": {"type": "string"},
                    },
                }
            },
        },
        "OtlpStatus": {
            "type": "object",
            "description": "A google.rpc.Status.",
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "details": {"type": "array"},
            },
        },
    }


async def landing(request: web.Request) -> web.Response:
    """Serve the status page: recent quality, flags, sampling, the queue and the config."""
    app = request.app
    config = app[STATE].config  # the reloaded one, after a SIGHUP
    body = render_status(
        config=config,
        board=app[STATUS],
        metrics=app[METRICS],
        summary=_summary(config),
        ready=not app[STATE].draining,
        idle=app[PIPELINE].idle,
    )
    return web.Response(text=body, content_type="text/html")


def _summary(config: Config) -> str:
    rows = [
        ("config", config.source),
        ("config digest", config.digest),
        ("agents", ", ".join(config.agents) or "(none listed: all are 'other')"),
        ("dimensions", ", ".join(d.name for d in config.dimensions)),
        ("scorers", ", ".join(s.name for s in config.scorers)),
        (
            "sampling",
            f"base {config.sampling.base_rate:g}, boost {config.sampling.boost_rate:g}",
        ),
        ("queue", f"{config.pipeline.queue_size} slots, {config.pipeline.workers} workers"),
    ]
    return "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
