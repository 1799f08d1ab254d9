"""Faults around the real daemon: a judge that is down, slow or flapping.

Each test runs the daemon as a subprocess, keeps conversations flowing from concurrent posters
while the fault lasts, then checks from real scrapes that ingest kept answering 202 and
``/-/healthy`` 200, that the fault shows in the metrics, and that the accounting identity holds
once the daemon is quiet. The helpers here (``Traffic``, ``Scrape``, ``assert_accounting``)
serve the dataset and shutdown fault tests too (``tests/test_faults_*.py``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.logs import FailureLog, Throttle
from exporter.scoring.judge import JudgeFailed
from tests.conftest import conversation
from tests.support.daemon import Daemon, free_port, running_daemon
from tests.support.fake_openai import FakeOpenAI
from tests.test_daemon import wait_for

#: An agent from the config and one that is not (labelled ``other``).
AGENTS = ("support-bot", "unlisted-bot")
MODEL = "grader"
#: The slowest ingest answer tolerated while a fault lasts: a daemon that stalls, not one that
#: is slow on a busy machine. That scoring never holds a sender is shown by order instead: the
#: slow judge's queue overflows while every POST is answered (TestJudgeSlow), and each answer
#: arrives before its conversation's judge run ends (tests/test_judge_daemon.py).
MAX_INGEST_SECONDS = 5.0


def plain(conversation_id: str, agent: str) -> dict[str, Any]:
    """Return the example conversation of docs/api.md under a new id and agent."""
    return conversation(id=conversation_id, agent=agent)


def thumbs_down(conversation_id: str, agent: str) -> dict[str, Any]:
    """Return a conversation the feedback dataset keeps once it is scored."""
    return conversation(id=conversation_id, agent=agent, signals={"user_thumbs_down": True})


class Traffic:
    """Concurrent posters and a ``/-/healthy`` poller, in a thread with its own event loop.

    Every answer is tallied. With ``stop_on_refusal`` a poster stops at its first answer other
    than 202 (a draining daemon's 503), so that the conversations the daemon took are exactly
    those the 202 answers accepted.
    """

    def __init__(
        self,
        url: str,
        *,
        posters: int = 4,
        batch: int = 5,
        pause: float = 0.02,
        health: bool = True,
        stop_on_refusal: bool = False,
        make: Callable[[str, str], dict[str, Any]] = plain,
    ) -> None:
        self.url = url
        self.posters, self.batch, self.pause = posters, batch, pause
        self.stop_on_refusal = stop_on_refusal
        self.make = make
        self.statuses: collections.Counter[int] = collections.Counter()
        self.health: collections.Counter[int] = collections.Counter()
        self.failures: list[str] = []
        self.accepted = 0
        self.slowest = 0.0
        self._health = health
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop posting and polling; wait for the thread."""
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "traffic did not stop"

    @property
    def running(self) -> bool:
        """Say whether any poster or the poller is still going."""
        return self._thread.is_alive()

    def wait_accepted(self, count: int, *, timeout: float = 30.0) -> None:
        """Wait until the daemon has accepted ``count`` conversations in total."""
        wait_for(lambda: self.accepted >= count or bool(self.failures), timeout)
        assert not self.failures, self.failures[:3]

    def assert_served(self) -> None:
        """Assert that every POST got 202 and every health check 200, without errors."""
        assert self.failures == [], self.failures[:3]
        assert set(self.statuses) == {202}, self.statuses
        assert not self._health or set(self.health) == {200}, self.health
        assert self.slowest < MAX_INGEST_SECONDS, self.slowest

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as error:  # surfaced through `failures`, never a thread crash
            self.failures.append(f"traffic thread: {error!r}")

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            tasks = [self._post(session, n) for n in range(self.posters)]
            if self._health:
                tasks.append(self._poll_health(session))
            await asyncio.gather(*tasks)

    async def _post(self, session: aiohttp.ClientSession, poster: int) -> None:
        while not self._stop.is_set():
            batch = [
                self.make(f"p{poster}-{n}", AGENTS[n % len(AGENTS)])
                for n in itertools.islice(self._ids, self.batch)
            ]
            started = time.monotonic()
            try:
                async with session.post(f"{self.url}/v1/conversations", json=batch) as response:
                    answer = await response.json(content_type=None)
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                self.failures.append(f"POST: {error!r}")
                return
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.statuses[status] += 1
            if status == 202:
                self.accepted += answer["accepted"]
            elif self.stop_on_refusal:
                return
            await asyncio.sleep(self.pause)

    async def _poll_health(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            try:
                async with session.get(f"{self.url}/-/healthy") as response:
                    self.health[response.status] += 1
            except (aiohttp.ClientError, TimeoutError) as error:
                self.failures.append(f"GET /-/healthy: {error!r}")
                return
            await asyncio.sleep(0.02)


class Scrape:
    """One parsed /metrics exposition."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    @classmethod
    def of(cls, daemon: Daemon) -> Scrape:
        """Scrape the daemon once."""
        with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=5) as response:
            return cls(response.read().decode())

    def total(self, name: str, **labels: str) -> float:
        """Return the sum of ``agent_quality_<name>`` samples whose labels include ``labels``."""
        full = f"agent_quality_{name}"
        return sum(
            value
            for sample, found, value in self.samples
            if sample == full and labels.items() <= found.items()
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """Return ``agent_quality_<name>`` summed per value of ``label``."""
        sums: dict[str, float] = {}
        for sample, found, value in self.samples:
            if sample == f"agent_quality_{name}":
                sums[found[label]] = sums.get(found[label], 0.0) + value
        return sums

    @property
    def quiet(self) -> bool:
        """Say whether nothing is queued or being scored."""
        return self.total("queue_depth") == 0 and self.total("in_flight") == 0


def accounting(scrape: Scrape) -> tuple[float, dict[str, float]]:
    """Return received and where it went (judge_budget is no fate of its own: README)."""
    dropped = scrape.by_label("dropped_total", "reason")
    fates = {
        "not_sampled": scrape.total("not_sampled_total"),
        "late_buffer": scrape.total("late_buffer_conversations"),
        "scored": scrape.total("scored_total"),
        **{f"dropped:{k}": v for k, v in dropped.items() if k != "judge_budget" and v},
    }
    return scrape.total("conversations_total"), fates


def assert_accounting(daemon: Daemon, *, timeout: float = 30.0) -> Scrape:
    """Wait for a quiet moment, then assert received == the sum of the fates; return the scrape."""
    scrapes: list[Scrape] = []

    def quiet() -> bool:
        scrapes.append(Scrape.of(daemon))
        return scrapes[-1].quiet

    wait_for(quiet, timeout)
    scrape = scrapes[-1]
    received, fates = accounting(scrape)
    assert received > 0
    assert received == sum(fates.values()), (received, fates)
    return scrape


def judged_config(base_url: str, **judge: Any) -> dict[str, Any]:
    """Half the traffic sampled; two deterministic scorers and judge ``grader`` on coherence."""
    return {
        "agents": ["support-bot"],
        "sampling": {"base_rate": 0.5, "boost_rate": 0.5},
        "pipeline": {"workers": 4, "drain_grace_period": "2s"},
        "judges": {"grader": {"base_url": base_url, "model": MODEL, "backoff": "10ms", **judge}},
        "scorers": [
            {"type": "tool_success"},
            {"type": "final_answer"},
            {"type": "llm_judge", "name": "judge", "judge": "grader", "dimension": "coherence"},
        ],
    }


def judge_runs(scrape: Scrape) -> dict[str, float]:
    """Return the judge scorer's runs by outcome."""
    return {
        outcome: scrape.total("evaluations_total", scorer="judge", outcome=outcome)
        for outcome in ("ok", "error", "timeout")
    }


class TestJudgeDown:
    def test_nothing_listening(self, tmp_path: Path) -> None:
        """Connection errors open the breaker; deterministic scores and ingest go on."""
        base_url = f"http://127.0.0.1:{free_port()}/v1"
        config = judged_config(base_url, retries=1, breaker={"failures": 3, "cooldown": "1h"})
        with running_daemon(tmp_path, config) as daemon:
            with Traffic(daemon.url) as traffic:
                traffic.wait_accepted(300)
            traffic.assert_served()
            scrape = assert_accounting(daemon)
            log = daemon.log()
        runs = judge_runs(scrape)
        assert runs["ok"] == runs["timeout"] == 0
        # One line for the outage, not one per conversation: the counters have every failure.
        assert log.count("scorer judge failed") == 1, log[-2000:]
        assert runs["error"] == scrape.total("scored_total") > 0
        # Requests already in flight when the breaker opened still fail; then it refuses.
        requests = scrape.total("judge_requests_total", outcome="connection_error")
        assert 3 <= requests <= 3 + 4  # at most one more per worker
        assert scrape.total("judge_requests_total") == requests
        assert scrape.total("judge_breaker_open", judge="grader") == 1
        assert scrape.total("judge_breaker_opened_total") == 1
        failed = scrape.total("judge_calls_total", outcome="failed")
        refused = scrape.total("judge_calls_total", outcome="breaker_open")
        assert failed + refused == runs["error"]
        assert refused > failed
        tool_success = scrape.total("score_count", dimension="tool_success")
        assert tool_success == scrape.total("scored_total")
        assert scrape.total("score_count", dimension="coherence") == 0


class TestJudgeSlow:
    def test_beyond_its_timeout(self, tmp_path: Path, fake: FakeOpenAI) -> None:
        """Requests time out, the scorer times out, the small queue overflows: all counted."""
        fake.behave(MODEL, {"delay": 3})
        config = judged_config(
            fake.base_url, timeout="300ms", retries=1, breaker={"failures": 1000}
        )
        config["pipeline"] |= {"workers": 2, "queue_size": 10}
        config["scorers"][2]["timeout"] = "500ms"
        with running_daemon(tmp_path, config) as daemon:
            with Traffic(daemon.url) as traffic:
                traffic.wait_accepted(300)
                wait_for(lambda: Scrape.of(daemon).total("dropped_total", reason="queue_full") > 0)
            traffic.assert_served()
            scrape = assert_accounting(daemon)
        runs = judge_runs(scrape)
        assert runs["ok"] == 0
        assert runs["timeout"] > 0
        assert runs["timeout"] + runs["error"] == scrape.total("scored_total")
        assert scrape.total("judge_requests_total", outcome="timeout") >= runs["timeout"]
        assert scrape.total("judge_requests_total", outcome="ok") == 0
        assert scrape.total("dropped_total", reason="queue_full") > 0
        assert scrape.total("score_count", dimension="coherence") == 0


def breaker_opens(daemon: Daemon) -> Callable[[], bool]:
    """Return a condition: the judge's breaker opened again since now."""
    before = Scrape.of(daemon).total("judge_breaker_opened_total")
    return lambda: Scrape.of(daemon).total("judge_breaker_opened_total") > before


def breaker_closes(daemon: Daemon) -> Callable[[], bool]:
    """Return a condition: the breaker is closed and the judge answered since now."""
    before = judge_runs(Scrape.of(daemon))["ok"]

    def closed() -> bool:
        scrape = Scrape.of(daemon)
        return scrape.total("judge_breaker_open") == 0 and judge_runs(scrape)["ok"] > before

    return closed


class TestJudgeFlapping:
    def test_alternating_errors_and_answers(self, tmp_path: Path, fake: FakeOpenAI) -> None:
        """Phases of 500s and good answers: the breaker opens and closes again, both counted."""
        config = judged_config(
            fake.base_url, retries=0, breaker={"failures": 3, "cooldown": "200ms"}
        )
        with running_daemon(tmp_path, config) as daemon:
            with Traffic(daemon.url) as traffic:
                # Each phase lasts until it had its effect, however slowly traffic flows.
                for _ in range(3):
                    fake.behave(MODEL, {"status": 500})
                    wait_for(breaker_opens(daemon), timeout=60)
                    fake.behave(MODEL, {"score": 4})
                    # The breaker's trial after the cooldown closes it; judging resumes.
                    wait_for(breaker_closes(daemon), timeout=60)
                opened = Scrape.of(daemon).total("judge_breaker_opened_total")
            traffic.assert_served()
            scrape = assert_accounting(daemon)
        assert opened >= 3  # once per bad phase at least
        runs = judge_runs(scrape)
        assert runs["ok"] > 0
        assert runs["error"] > 0
        assert runs["ok"] + runs["error"] == scrape.total("scored_total")
        assert scrape.total("judge_requests_total", outcome="server_error") > 0
        assert scrape.total("judge_calls_total", outcome="breaker_open") > 0
        assert scrape.total("score_count", dimension="coherence") == runs["ok"]


class TestThrottle:
    def test_one_line_per_interval_counting_the_rest(self) -> None:
        """The first passes; repeats within the interval are held back and counted, per key."""
        now = [0.0]
        throttle = Throttle(interval=60.0, clock=lambda: now[0])
        assert throttle.allow("scorer judge") == 0
        assert [throttle.allow("scorer judge") for _ in range(3)] == [None] * 3
        assert throttle.allow("confirmer careful") == 0
        now[0] = 60.0
        assert throttle.allow("scorer judge") == 3
        assert throttle.allow("scorer judge") is None


class TestFailureLog:
    def test_first_of_each_kind_at_once_then_one_a_minute(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A new kind of failure is logged at once, even inside another kind's interval."""
        now = [0.0]
        failures = FailureLog(
            logging.getLogger("test.failures"), interval=60.0, clock=lambda: now[0]
        )
        timeout = JudgeFailed("no answer within 20s (4 attempts)", judge="fast", kind="timeout")
        refused = JudgeFailed("HTTP 401: Incorrect API key provided", judge="fast", kind="HTTP 401")
        with caplog.at_level(logging.WARNING, logger="test.failures"):
            for _ in range(5):
                failures.failed("scorer judge", timeout, where=" on 'c-1'")
            failures.failed("scorer judge", refused, where=" on 'c-2'")
            failures.failed("scorer judge", refused, where=" on 'c-3'")
            now[0] = 61.0
            failures.failed("scorer judge", timeout, where=" on 'c-4'")
        assert [record.getMessage() for record in caplog.records] == [
            "scorer judge failed on 'c-1': judge fast: no answer within 20s (4 attempts)",
            "scorer judge failed on 'c-2': judge fast: HTTP 401: Incorrect API key provided",
            "scorer judge failed on 'c-4': judge fast: no answer within 20s (4 attempts) "
            "(4 more failures of this kind since the last report)",
        ]
        assert all(record.levelno == logging.WARNING for record in caplog.records)

    def test_kind_is_the_class_name_for_other_errors(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A plugin's own exception is a kind of its own."""
        failures = FailureLog(logging.getLogger("test.failures"), interval=60.0)
        with caplog.at_level(logging.WARNING, logger="test.failures"):
            failures.failed("scorer plugin", ValueError("bad"))
            failures.failed("scorer plugin", KeyError("x"))
            failures.failed("scorer plugin", ValueError("bad again"))
        assert len(caplog.records) == 2
