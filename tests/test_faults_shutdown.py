"""Shutdown as a fault: SIGTERM under full load, and scrapes racing the daemon's exit.

SIGTERM under load must end within the drain grace period plus a moment, exit 0, and leave no
conversation unaccounted for: every one the senders were told was accepted is scored, not
sampled, or dropped with a reason. Every /metrics answer during the shutdown must be a whole,
parseable exposition; a refused connection once the daemon is gone is fine.
"""

from __future__ import annotations

import collections
import gzip
import http.client
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.dataset import read_records
from tests.conftest import conversation
from tests.support.daemon import Daemon, running_daemon
from tests.support.promstack import running_prometheus
from tests.test_daemon import post, wait_for
from tests.test_faults import Scrape, Traffic, thumbs_down

GRACE = 3.0
WORKERS = 8
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def slow_config(**pipeline: Any) -> dict[str, Any]:
    """Half the traffic sampled, scored by a 100 ms plugin: the queue outlives the grace period."""
    return {
        "agents": ["support-bot"],
        "sampling": {"base_rate": 0.5, "boost_rate": 0.5},
        "pipeline": {"workers": WORKERS, "drain_grace_period": f"{GRACE:g}s", **pipeline},
        "scorers": [
            {"type": "final_answer"},
            {"type": "plugin", "name": "slow", "path": "tests.support.slow_scorer:score"},
        ],
    }


class TestSigtermUnderLoad:
    def test_exits_in_time_with_everything_accounted_for(self, tmp_path: Path) -> None:
        """32 posters, a full queue, SIGTERM: exit 0 in time, and received == the fates."""
        directory = tmp_path / "ds"
        # A longer grace than the other tests: the final counts are read during the drain,
        # after every poster had its 503, and on a busy machine that can take a few seconds.
        # The queue holds 12.5 s of scoring (8 workers, 100 ms each), more than the grace.
        grace = 8.0
        config = slow_config(queue_size=1000, drain_grace_period=f"{grace:g}s")
        config["dataset"] = {"enabled": True, "path": str(directory), "flush_interval": "200ms"}
        with running_daemon(tmp_path, config) as daemon:
            traffic = Traffic(
                daemon.url,
                posters=32,
                batch=10,
                pause=0,
                health=False,
                stop_on_refusal=True,
                make=thumbs_down,
            )
            with traffic:
                traffic.wait_accepted(3000)
                wait_for(lambda: Scrape.of(daemon).total("dropped_total", reason="queue_full") > 0)
                signalled = time.monotonic()
                daemon.process.send_signal(signal.SIGTERM)
                # Each poster stops at its first 503: then every answer it got is known.
                wait_for(lambda: not traffic.running, timeout=grace)
            # Still draining, so still listening; ingest is refused, the counts are final.
            draining = Scrape.of(daemon)
            code = daemon.process.wait(grace + 30)
            took = time.monotonic() - signalled
            log = daemon.log()
        assert code == 0, log
        # The grace period bounds the drain (the log below shows it cut short): no hang after.
        assert took < grace + 10, took
        assert traffic.failures == [], traffic.failures[:3]
        assert set(traffic.statuses) == {202, 503}, traffic.statuses
        received = draining.total("conversations_total")
        assert received == traffic.accepted
        # Scored conversations all carried a thumbs-down: each one is a record in the dataset.
        ids = [record.id for record in read_records(directory)]
        assert len(ids) == len(set(ids))
        assert "could not be written" not in log
        shutdown = re.search(r"shutdown dropped (\d+) conversations \((\d+) queued, (\d+) c", log)
        assert shutdown is not None, log
        dropped, queued, cancelled = map(int, shutdown.groups())
        # The queue outlived the grace period, so every worker was cut short mid-scoring.
        assert (queued > 0, cancelled) == (True, WORKERS)
        fates = {
            "not_sampled": draining.total("not_sampled_total")
            + draining.total("late_buffer_conversations"),
            "scored": len(ids),
            "dropped:shutdown": dropped,
            **{
                f"dropped:{reason}": value
                for reason, value in draining.by_label("dropped_total", "reason").items()
                if reason != "shutdown"
            },
        }
        assert received == sum(fates.values()), (received, fates)
        assert draining.total("scored_total") <= len(ids)


class Scrapers:
    """Threads scraping /metrics in a tight loop, keeping every answer's verdict."""

    def __init__(self, daemon: Daemon) -> None:
        self.port = daemon.port
        self.reference = {
            False: self._families(self._get(gzipped=False, openmetrics=False), openmetrics=False),
            True: self._families(self._get(gzipped=True, openmetrics=True), openmetrics=True),
        }
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.bad: list[str] = []
        self.answered_at: list[float] = []
        self.last_text = ""
        self._stop = threading.Event()
        self._threads = [
            # Prometheus-like: kept-alive connection, gzip, OpenMetrics; and a plain one-shot.
            threading.Thread(target=self._loop, args=(True, True), daemon=True),
            threading.Thread(target=self._loop, args=(False, False), daemon=True),
        ]

    def __enter__(self) -> Scrapers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _get(self, *, gzipped: bool, openmetrics: bool) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            return self._read(connection, gzipped=gzipped, openmetrics=openmetrics)[1]
        finally:
            connection.close()

    @staticmethod
    def _read(
        connection: http.client.HTTPConnection, *, gzipped: bool, openmetrics: bool
    ) -> tuple[int, str]:
        headers = {"Accept": OPENMETRICS if openmetrics else "text/plain"}
        if gzipped:
            headers["Accept-Encoding"] = "gzip"
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        body = response.read()  # a body cut short raises IncompleteRead
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)  # a cut gzip stream raises EOFError
        return response.status, body.decode()

    @staticmethod
    def _families(text: str, *, openmetrics: bool) -> set[str]:
        parse = openmetrics_families if openmetrics else text_string_to_metric_families
        return {family.name for family in parse(text)}  # OpenMetrics needs its `# EOF`

    def _loop(self, keep_alive: bool, openmetrics: bool) -> None:
        connection: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                status, text = self._read(connection, gzipped=keep_alive, openmetrics=openmetrics)
            except ConnectionRefusedError:
                self.outcomes["refused"] += 1
                connection = None
                time.sleep(0.01)
                continue
            except (http.client.IncompleteRead, EOFError) as error:
                self.bad.append(f"cut short: {error!r}")
                connection = None
                continue
            except (ConnectionError, http.client.BadStatusLine) as error:
                # No answer at all (a kept-alive connection closed under the request).
                self.outcomes[type(error).__name__] += 1
                connection = None
                continue
            if not keep_alive:
                connection.close()
                connection = None
            self._check(status, text, openmetrics=openmetrics)

    def _check(self, status: int, text: str, *, openmetrics: bool) -> None:
        if status != 200:
            self.bad.append(f"status {status}: {text[:200]}")
            return
        try:
            families = self._families(text, openmetrics=openmetrics)
        except Exception as error:
            self.bad.append(f"unparseable: {error!r}: ...{text[-200:]!r}")
            return
        missing = self.reference[openmetrics] - families
        if missing:
            self.bad.append(f"families missing: {sorted(missing)[:5]}")
            return
        self.outcomes["complete"] += 1
        self.answered_at.append(time.monotonic())
        if not openmetrics:
            self.last_text = text


def load_the_queue(daemon: Daemon) -> None:
    """Fill the scoring queue with more than the grace period can score."""
    batch = [conversation(id=f"q{n}") for n in range(1000)]
    status, answer = post(f"{daemon.url}/v1/conversations", batch)
    assert status == 202
    assert answer["sampled"] > 300


class TestScrapeDuringShutdown:
    def test_every_answer_is_a_whole_exposition(self, tmp_path: Path) -> None:
        """Tight-loop scrapers through drain and exit: whole answers, then refused connections."""
        with running_daemon(tmp_path, slow_config()) as daemon:
            load_the_queue(daemon)
            with Scrapers(daemon) as scrapers:
                wait_for(lambda: scrapers.outcomes["complete"] > 20)
                signalled = time.monotonic()
                daemon.process.send_signal(signal.SIGTERM)
                assert daemon.process.wait(GRACE + 10) == 0
                wait_for(lambda: scrapers.outcomes["refused"] > 10)
        assert scrapers.bad == [], scrapers.bad[:3]
        during = [t for t in scrapers.answered_at if t > signalled]
        assert len(during) > 20, scrapers.outcomes  # the drain period was scraped
        assert "queue not drained" in daemon.log()
        check = subprocess.run(
            ["promtool", "check", "metrics"],
            input=scrapers.last_text.encode(),
            capture_output=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()

    @pytest.mark.slow
    def test_prometheus_scrapes_whole_expositions(self, tmp_path: Path) -> None:
        """Prometheus scraping every 100 ms: each successful scrape has every sample."""
        with running_daemon(tmp_path, slow_config()) as daemon:
            target = f"127.0.0.1:{daemon.port}"
            with running_prometheus(tmp_path, targets=[target], interval="100ms") as prometheus:
                wait_for(lambda: bool(prometheus.query("up == 1")), timeout=20)
                load_the_queue(daemon)
                time.sleep(0.5)
                signalled = time.time()
                daemon.process.send_signal(signal.SIGTERM)
                assert daemon.process.wait(GRACE + 10) == 0
                # Until Prometheus has scraped the daemon that is gone.
                wait_for(lambda: bool(prometheus.query("up == 0")), timeout=30)
                up = series(prometheus.query("up[30s]"))
                scraped = dict(series(prometheus.query("scrape_samples_scraped[30s]")))
                took = dict(series(prometheus.query("scrape_duration_seconds[30s]")))
                target_state = prometheus.get_json("/api/v1/targets")["data"]["activeTargets"]
        # Up until the daemon went away, down after. A scrape may fail in between only by
        # running out of time (the timeout is the 100 ms interval, which a busy machine can
        # exceed), never refused or cut short; the count below shows the drain was scraped.
        last_up = max(at for at, value in up if value == 1)
        failed = {at: took[at] for at, value in up if value == 0 and at < last_up}
        assert all(seconds >= 0.09 for seconds in failed.values()), failed
        assert up[-1][1] == 0
        during = [at for at, value in up if value == 1 and at > signalled]
        assert len(during) >= 10, up  # scraped through the drain period
        # The series set only grows: a scrape cut at a line boundary would show fewer samples.
        samples = max(scraped[at] for at, value in up if value == 1 and at < signalled)
        short = {at: scraped[at] for at, value in up if value == 1 and scraped[at] < samples}
        assert short == {}, samples
        assert "refused" in target_state[0]["lastError"]


def series(result: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Return a range vector's one series as (time, value) pairs."""
    (only,) = result
    return [(float(at), float(value)) for at, value in only["values"]]
