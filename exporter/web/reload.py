"""SIGHUP or ``POST /-/reload``: reload the config file in place, as Prometheus does.

A valid file takes effect without dropping a connection, a queued conversation or a counter:
agents, sampling, dimensions, scorers and judges change in place (evaluations already running
finish with the old scorers). An invalid file keeps the running config. Settings bound to what
was built at start (the listener, TLS, limits and auth, the queue, the workers, the late-signal
and OTLP buffers, the dataset) need a restart; a file that changes them is refused, naming them.
``agent_quality_config_last_reload_successful`` says how the last attempt went.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from exporter.config import Config, load_config, resolve_secrets
from exporter.exceptions import ConfigError
from exporter.scoring import build_scoring, judge
from exporter.web.guard import error_body
from exporter.web.keys import INTAKE, METRICS, PIPELINE, STATE
from exporter.web.status import STATUS

__all__ = ["RESTART_ONLY", "reload_config", "reload_endpoint"]

log = logging.getLogger(__name__)

#: What a reload cannot change, with how to read it from a Config.
RESTART_ONLY: dict[str, Callable[[Config], object]] = {
    "server": lambda c: c.server,
    "pipeline.queue_size": lambda c: c.pipeline.queue_size,
    "pipeline.workers": lambda c: c.pipeline.workers,
    "sampling.late_signals": lambda c: (
        c.sampling.late_max_conversations,
        c.sampling.late_max_bytes,
        c.sampling.late_max_age,
    ),
    "otlp": lambda c: c.otlp,
    "dataset": lambda c: c.dataset,
}


def reload_config(app: web.Application, path: str | None) -> bool:
    """Load ``path`` (None: the embedded default) and apply it; keep the old one if invalid."""
    return _reload(app, path) is None


async def reload_endpoint(request: web.Request) -> web.Response:
    """``POST /-/reload``: what SIGHUP does, for sidecars that cannot signal the process.

    Off unless the daemon runs with ``--web.enable-lifecycle`` (403), as in Prometheus, which
    also answers 500 when the file is refused; the running config then stays.
    """
    app = request.app
    state = app[STATE]
    if not state.lifecycle_api:
        return error_body(
            403,
            "lifecycle API is not enabled",
            "start the daemon with --web.enable-lifecycle, or send it SIGHUP",
        )
    error = _reload(app, state.config_file)
    if error is not None:
        return error_body(500, "failed to reload config", str(error))
    config = state.config
    return web.json_response(
        {"status": "reloaded", "source": config.source, "digest": config.digest}
    )


def _reload(app: web.Application, path: str | None) -> ConfigError | None:
    """Apply ``path`` as described in the module docstring; return why it was refused, if it was."""
    metrics, state = app[METRICS], app[STATE]
    try:
        config = resolve_secrets(load_config(path))
        _refuse_restart_only(state.config, config)
        metrics.extend(config)
        with judge.fresh_clients(metrics):
            scorers, confirmers = build_scoring(config, metrics=metrics)
    except ConfigError as error:
        metrics.config_reload_successful.set(0)
        log.error("reload failed, the running config stays: %s", error)
        return error
    app[PIPELINE].reconfigure(config, scorers=scorers, confirmers=confirmers)
    app[INTAKE].reconfigure(config)
    app[STATUS].reconfigure(config)
    state.config = config
    metrics.config_reload_successful.set(1)
    metrics.config_reload_time.set_to_current_time()
    log.info("reloaded the config from %s (digest %s)", config.source, config.digest)
    return None


def _refuse_restart_only(running: Config, loaded: Config) -> None:
    changed = [key for key, read in RESTART_ONLY.items() if read(running) != read(loaded)]
    if changed:
        raise ConfigError(
            f"{', '.join(changed)} changed: these need a restart (the running values stay)",
            source=loaded.source,
            path="$." + changed[0],
        )
