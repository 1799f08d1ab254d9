"""The application factory and the daemon's lifecycle.

Shutdown order matters for a monitoring daemon: on SIGTERM readiness goes false and ingest
answers 503 while the listener stays up (so load balancers move away and Prometheus can still
scrape), the scoring queue drains for up to the grace period, and only then does the server
stop; what could not be scored is counted as ``dropped{reason="shutdown"}``. aiohttp itself
only waits for request handlers, so draining our queue is our job.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from exporter import dataset
from exporter.config.model import Config
from exporter.config.secrets import resolve_secrets
from exporter.events import build_event_export
from exporter.ingest.intake import Intake
from exporter.ingest.otlp import LOGS, TRACES
from exporter.metrics import ExporterRegistry, Metrics
from exporter.pipeline import Pipeline
from exporter.sampling import LateSignalBuffer, Sampler
from exporter.scoring import build_scoring
from exporter.web import pages, traces
from exporter.web.guard import bearer_auth, json_errors, no_route
from exporter.web.ingest import IngestEndpoints
from exporter.web.keys import INTAKE, METRICS, PIPELINE, REGISTRY, STATE, AppState
from exporter.web.protocol import MalformedRequests, Runner
from exporter.web.reload import reload_config, reload_endpoint
from exporter.web.scrape import metrics_page
from exporter.web.status import STATUS, StatusBoard

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)

#: How often aged entries leave the late-signal buffer when no traffic pushes them out.
EXPIRE_INTERVAL = 10.0
#: Allocations of container objects between two collections of the youngest generation:
#: ten times CPython's 700 (docs/benchmarks.md, "Garbage collection").
GC_YOUNG_THRESHOLD = 7000


def create_app(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] | None = None,
    config_file: str | None = None,
    lifecycle_api: bool = False,
) -> web.Application:
    """Build the application for ``config``; workers start with the app and stop with it.

    ``config_file`` is what a reload (SIGHUP, or ``POST /-/reload`` when ``lifecycle_api``)
    reads; None reloads the embedded default. The config's secrets are read here, as the
    daemon starts (``ConfigError`` naming each one missing).
    """
    config = resolve_secrets(config)
    registry = registry if registry is not None else ExporterRegistry()
    metrics = Metrics(config, registry)
    state = AppState(config, config_file=config_file, lifecycle_api=lifecycle_api)
    sink = dataset.build_sink(config, metrics=metrics)
    events = build_event_export(config, metrics=metrics, deadline=lambda: state.drain_deadline)
    status = StatusBoard(config, metrics=metrics, clock=clock)  # the page at /
    scorers, confirmers = build_scoring(config, metrics=metrics)
    pipeline = Pipeline(
        config=config,
        metrics=metrics,
        scorers=scorers,
        confirmers=confirmers,
        sinks=[status, *(s for s in (sink, events) if s is not None)],
    )
    sampling = config.sampling
    intake = Intake(
        config=config,
        metrics=metrics,
        sampler=Sampler(sampling, clock=clock),
        late_buffer=LateSignalBuffer(
            max_conversations=sampling.late_max_conversations,
            max_bytes=sampling.late_max_bytes,
            max_age=sampling.late_max_age,
            clock=clock,
        ),
        pipeline=pipeline,
    )
    # auto_decompress off: exporter.web.body inflates in bounded steps (a gzip bomb inflated
    # by aiohttp held over 100 MB), and answers an unknown Content-Encoding itself.
    app = web.Application(
        client_max_size=config.server.max_body_bytes, handler_args={"auto_decompress": False}
    )
    app[METRICS], app[REGISTRY] = metrics, registry
    app[INTAKE], app[PIPELINE], app[STATE] = intake, pipeline, state
    app[STATUS] = status
    app.cleanup_ctx.append(_scoring)
    # After _scoring: contexts exit in reverse, so spans still buffered at shutdown are handed
    # to a pipeline that is still running.
    otlp = traces.setup(app, config=config, intake=intake, metrics=metrics)
    ingest = IngestEndpoints(intake=intake, metrics=metrics, server=config.server, state=app[STATE])
    _add_routes(app, config, ingest=ingest, otlp=otlp, metrics_page=metrics_page(registry))
    return app


def _add_routes(
    app: web.Application,
    config: Config,
    *,
    ingest: IngestEndpoints,
    otlp: dict[str, Handler],
    metrics_page: Handler,
) -> None:
    """Route every path, each handler wrapped for JSON errors and, where protected, auth."""
    auth = config.server.auth
    protect = bearer_auth(auth.bearer_token) if auth.bearer_token is not None else None
    routes: list[tuple[str, str, Handler, bool]] = [  # method, path, handler, needs the token
        ("POST", "/v1/conversations", ingest.conversations, True),
        ("POST", "/v1/feedback", ingest.feedback, True),
        ("POST", "/v1/traces", otlp[TRACES], True),
        ("POST", "/v1/logs", otlp[LOGS], True),
        ("GET", "/metrics", metrics_page, auth.protect_metrics),
        ("GET", "/-/healthy", pages.healthy, False),
        ("GET", "/-/ready", pages.ready, False),
        ("POST", "/-/reload", reload_endpoint, True),
        ("PUT", "/-/reload", reload_endpoint, True),
        ("GET", "/openapi.json", pages.openapi, False),
        ("GET", "/", pages.landing, False),
    ]
    for method, path, handler, protected in routes:
        if protect is not None and protected:
            handler = protect(handler)
        if method == "GET":
            app.router.add_get(path, json_errors(handler))  # and HEAD
        else:
            app.router.add_route(method, path, json_errors(handler))
    # Last: what no route above takes gets a JSON 404 or 405 instead of aiohttp's plain text.
    app.router.add_route("*", "/{path:.*}", no_route)


async def _scoring(app: web.Application) -> AsyncIterator[None]:
    """Run the workers and the buffer expiry for the app's life; drain them at the end."""
    pipeline, intake, state = app[PIPELINE], app[INTAKE], app[STATE]
    await pipeline.start()
    expiry = asyncio.create_task(_expire_periodically(intake), name="late-buffer-expiry")
    state.started = True
    yield
    grace = state.begin_drain(state.config.pipeline.drain_grace_period)  # reloadable
    expiry.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await expiry
    await pipeline.stop(grace=grace)
    intake.close()


async def _expire_periodically(intake: Intake) -> None:
    while True:
        await asyncio.sleep(EXPIRE_INTERVAL)
        intake.expire()


def _settle_heap() -> None:
    """Keep the garbage collector off what start-up built, and run it less often.

    An NDJSON batch decodes a thousand conversations, each with its lists and dicts: at the
    default threshold the youngest generation is collected every 700 of them, and the full
    collections that follow walked every object the modules and the app hold. Frozen, those
    are never walked again; a young threshold ten times higher gives up little memory (the
    hot path makes almost no reference cycles) for about a tenth of an NDJSON batch's CPU.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def serve(
    config: Config,
    *,
    host: str,
    port: int,
    config_file: str | None = None,
    lifecycle_api: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain as described in the module docstring."""
    ssl_context = _ssl_context(config)  # before anything starts: a bad key is a clean exit
    app = create_app(config, config_file=config_file, lifecycle_api=lifecycle_api)
    # keepalive_timeout: run_app's 75 s, not the runner's hour; an idle or half-sent
    # connection must not hold a slot that long.
    malformed = MalformedRequests(counter=app[METRICS].http_errors)
    runner = Runner(
        app, malformed=malformed, handle_signals=False, access_log=None, keepalive_timeout=75
    )
    await runner.setup()
    site = web.TCPSite(runner, host or None, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise RuntimeError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    _settle_heap()
    scheme = "https" if ssl_context else "http"
    log.info("listening on %s://%s:%d with config %s", scheme, host or "*", port, config.source)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_config, app, config_file)
    await stop.wait()
    await _drain(app)
    await runner.cleanup()
    log.info("stopped")
    # The last line, and the last word on where every conversation went: /metrics is gone now.
    # Only a daemon that served logs it: one that could not listen has nothing to account for.
    totals = app[METRICS].totals()
    log.info("final accounting: %s", " ".join(f"{k}={v}" for k, v in totals.items()))


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    """Return the server's TLS context, or None for plain HTTP."""
    tls = config.server.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as error:
        raise RuntimeError(f"cannot load the TLS certificate or key: {error}") from error
    return context


async def _drain(app: web.Application) -> None:
    """Refuse ingest and wait for the queue while the listener still serves /metrics."""
    grace = app[STATE].begin_drain(app[STATE].config.pipeline.drain_grace_period)
    log.info("draining the scoring queue for up to %gs", grace)
    started = time.monotonic()
    drained = await app[PIPELINE].drain(grace)
    log.info(
        "queue %s after %.1fs",
        "drained" if drained else "not drained",
        time.monotonic() - started,
    )
