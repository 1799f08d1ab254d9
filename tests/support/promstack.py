"""Real Prometheus, Alertmanager and a webhook receiver on free loopback ports, for tests.

Each helper is a context manager that starts the real process (Debian's ``prometheus`` and
``prometheus-alertmanager``), waits until it is ready and stops it afterwards, keeping its log
for the failure message. Reusable by any test that needs the real stack.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.support.daemon import free_port, stop_process, wait_http
from tests.support.threaded import serving_in_thread

__all__ = [
    "Alertmanager",
    "Prometheus",
    "WebhookReceiver",
    "running_alertmanager",
    "running_prometheus",
    "running_receiver",
    "serving_prometheus",
]

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"


def seconds_alerting() -> dict[str, Any]:
    """Return an ``alerting`` section whose windows are seconds instead of hours.

    For tests that watch the generated rules on a real Prometheus, which scrapes every second:
    one degradation tier (10s window, 20 samples), absolute thresholds after 10s, no SLO burn
    rates, and no dip long enough to matter (``min_duration`` 0s: no extra hold).
    """
    return {
        "scrape_interval": "1s",
        "min_duration": "0s",
        "baseline_window": "60s",
        "current_window": "20s",
        "degradation": {
            "fast": {"window": "10s", "for": "10s", "min_samples": 20},
            "sharp": None,
            "sustained": None,
        },
        "absolute": {"for": "10s"},
        "slo": None,
    }


@dataclass
class _Process:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, timeout=10)

    def get_json(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:
            return json.load(response)


@contextlib.contextmanager
def _running(args: list[str], *, port: int, log_path: Path, ready: str) -> Iterator[_Process]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    running = _Process(process, port, log_path)
    try:
        try:
            wait_http(f"{running.url}{ready}", timeout=30)
        except TimeoutError as error:
            raise RuntimeError(f"{args[0]} did not become ready:\n{running.log()}") from error
        yield running
    finally:
        running.stop()


class Prometheus(_Process):
    """A running Prometheus."""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Return the instant vector ``expr`` evaluates to now."""
        body = self.get_json("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Return the alerts Prometheus has pending or firing."""
        alerts: list[dict[str, Any]] = self.get_json("/api/v1/alerts")["data"]["alerts"]
        return alerts


class Alertmanager(_Process):
    """A running Alertmanager."""

    def post_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Send alerts the way Prometheus does (``POST /api/v2/alerts``)."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(list(alerts)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def alerts(self) -> list[dict[str, Any]]:
        """Return the alerts Alertmanager holds, with ``status.inhibitedBy``."""
        alerts: list[dict[str, Any]] = self.get_json("/api/v2/alerts")
        return alerts


@contextlib.contextmanager
def running_prometheus(
    tmp_path: Path,
    *,
    targets: Iterable[str],
    rule_files: Iterable[Path] = (),
    alertmanager: str | None = None,
    job: str = "agent-quality-exporter",
    interval: str = "1s",
    features: Sequence[str] = (),
) -> Iterator[Prometheus]:
    """Start Prometheus scraping ``targets`` (``host:port``) and evaluating ``rule_files``.

    ``features`` are passed as ``--enable-feature`` (``exemplar-storage``).
    """
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    if alertmanager is not None:
        host = urllib.parse.urlsplit(alertmanager).netloc
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
    directory = tmp_path / f"prometheus-{port}"
    directory.mkdir()
    config_path = directory / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    args = [
        PROMETHEUS,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        # Send a firing alert again at once, not a minute later.
        "--rules.alert.resend-delay=1s",
        *(f"--enable-feature={feature}" for feature in features),
    ]
    with _running(args, port=port, log_path=directory / "log", ready="/-/ready") as process:
        yield Prometheus(process.process, process.port, process.log_path)


@contextlib.contextmanager
def serving_prometheus(tmp_path: Path, *, data: Path) -> Iterator[Prometheus]:
    """Start Prometheus on an existing TSDB directory (backfilled history), scraping nothing."""
    port = free_port()
    directory = tmp_path / f"prometheus-{port}"
    directory.mkdir()
    config_path = directory / "prometheus.yml"
    config_path.write_text("global: {}\n")
    args = [
        PROMETHEUS,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        # Backfilled history is old: keep it whatever its age.
        "--storage.tsdb.retention.time=10y",
    ]
    with _running(args, port=port, log_path=directory / "log", ready="/-/ready") as process:
        yield Prometheus(process.process, process.port, process.log_path)


@contextlib.contextmanager
def running_alertmanager(tmp_path: Path, *, config_file: Path) -> Iterator[Alertmanager]:
    """Start Alertmanager with ``config_file`` (templates resolve next to it), no clustering."""
    port = free_port()
    directory = tmp_path / f"alertmanager-{port}"
    directory.mkdir()
    args = [
        ALERTMANAGER,
        f"--config.file={config_file}",
        f"--storage.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with _running(args, port=port, log_path=directory / "log", ready="/-/ready") as process:
        yield Alertmanager(process.process, process.port, process.log_path)


@dataclass
class WebhookReceiver:
    """Collects Alertmanager webhook notifications, by path (``/pager``, ``/ticket``)."""

    port: int
    received: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def notifications(self, path: str | None = None) -> list[dict[str, Any]]:
        """Return the payloads received so far (on ``path`` only, if given)."""
        with self.lock:
            return [body for where, body, _ in self.received if path in (None, where)]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, path: str, timeout: float
    ) -> tuple[dict[str, Any], float]:
        """Return the first payload on ``path`` matching ``predicate`` and when it arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for where, body, at in self.received:
                    if where == path and predicate(body):
                        return body, at
            time.sleep(0.2)
        raise TimeoutError(f"no matching notification on {path} within {timeout}s")


@contextlib.contextmanager
def running_receiver() -> Iterator[WebhookReceiver]:
    """Run an aiohttp webhook receiver on its own event loop in a thread."""
    receiver = WebhookReceiver(free_port())

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        with receiver.lock:
            receiver.received.append((request.path, body, time.monotonic()))
        return web.Response(text="ok")

    def make_app() -> web.Application:
        app = web.Application()
        app.router.add_post("/{name}", handle)
        return app

    with serving_in_thread(make_app, receiver.port, what="webhook receiver"):
        yield receiver
