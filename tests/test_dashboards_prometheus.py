"""Every dashboard query, run against a real Prometheus that scraped the real daemon.

The daemon (a subprocess) scores traffic with built-in scorers, an LLM judge (the fake OpenAI
server) and a plugin that always fails; Prometheus scrapes it every second and evaluates the
rules generated for the same config. The config shrinks the alerting windows to seconds so
that baselines, z-scores, burn rates and firing alerts all exist within a minute. Then every
expression found in the generated dashboards' JSON runs as Grafana would run it, with the
template variables filled in from the variable queries' own answers.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.config import parse_config
from exporter.generate import generate
from exporter.generate.conventions import BASELINE, Record
from exporter.names import AGENT_UID, OVERVIEW_UID
from tests.conftest import conversation
from tests.support.daemon import Daemon, running_daemon
from tests.support.dashboards import COMMITTED, label_values, load, panels, queries, substitute
from tests.support.fake_openai import FakeOpenAI, running_fake_openai
from tests.support.promstack import Prometheus, running_prometheus

pytestmark = pytest.mark.slow

AGENTS = ("support-bot", "billing-bot")
#: Long enough for the shrunken baseline (2m offset 20s) to hold two scrapes of traffic.
RANGE = "2m"


def config_document(fake: FakeOpenAI) -> dict[str, Any]:
    """Return the test config: two agents, everything sampled, a judge, windows of seconds."""
    price = {"input_per_million": 1000, "output_per_million": 2000}
    return {
        "agents": list(AGENTS),
        "sampling": {"base_rate": 1.0, "daily_budget": {"max_samples": None}},
        "judges": {
            "grader": {"base_url": fake.base_url, "model": "grader", "retries": 0, "price": price}
        },
        "scorers": [
            {"type": "tool_success"},
            {"type": "final_answer"},
            {"type": "user_feedback"},
            {"type": "refusal"},
            {"type": "llm_judge", "name": "judge", "judge": "grader", "dimension": "coherence"},
            {"type": "plugin", "name": "broken", "path": "tests.plugins.examples:returns_junk"},
            {"type": "passthrough"},
        ],
        "alerting": {
            "scrape_interval": "1s",
            "min_duration": "0s",
            "current_window": "20s",
            "baseline_window": "2m",
            "degradation": {
                "fast": {"window": "10s", "for": "0s", "min_samples": 1},
                "sharp": {"window": "20s", "for": "0s", "min_samples": 1},
                "sustained": {"window": "20s", "for": "0s", "min_samples": 1},
            },
            "absolute": {"for": "0s", "min_samples": 1},
            "slo": {
                "page_fast": {"long_window": "1m", "short_window": "10s", "min_samples": 1},
                "page_slow": None,
                "ticket_fast": None,
                "ticket_slow": {"long_window": "2m", "short_window": "20s", "min_samples": 1},
            },
            "exporter": {"for": "0s"},
        },
    }


def _batch(serial: Iterator[int], rng: random.Random) -> list[dict[str, Any]]:
    """Return conversations of both agents: some tool errors, thumbs-downs, mixed scores."""
    batch = []
    for agent in AGENTS:
        number = next(serial)
        document = conversation(id=f"e2e-{number}", agent=agent)
        document["messages"][2]["error"] = number % 4 == 0
        document["signals"]["user_thumbs_down"] = number % 5 == 0
        # The judge's prompt carries the transcript: every coherence score is bad (burns budget).
        document["messages"][0]["content"] = f"Where is my order? judge-score=1 ({number})"
        document["scores"] = {"task_completion": round(rng.uniform(0.3, 1.0), 2)}
        batch.append(document)
    return batch


def _api(prometheus: Prometheus, path: str, **params: str) -> Any:
    """Return ``data`` of an API answer; an error answer fails with Prometheus' message."""
    try:
        body = prometheus.get_json(f"/api/v1/{path}", **params)
    except urllib.error.HTTPError as error:
        with error:
            detail = json.load(error)
        raise AssertionError(f"{detail.get('errorType')}: {detail.get('error')}") from None
    assert body["status"] == "success", body
    return body["data"]


def _run(prometheus: Prometheus, expr: str, *, instant: bool, now: float) -> list[Any]:
    """Run ``expr`` as Grafana would: instant at ``now``, or over the last minute."""
    if instant:
        data = _api(prometheus, "query", query=expr, time=f"{now:.3f}")
    else:
        start, end = f"{now - 60:.3f}", f"{now:.3f}"
        data = _api(prometheus, "query_range", query=expr, start=start, end=end, step="2")
    result: list[Any] = data["result"] if data["resultType"] != "scalar" else [data["result"]]
    return result


def _wait_for(
    prometheus: Prometheus,
    expr: str,
    predicate: Callable[[list[dict[str, Any]]], bool] = bool,
    *,
    timeout: float = 60.0,
) -> None:
    """Poll ``expr`` until ``predicate(result)`` holds."""
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = prometheus.query(expr)
        if predicate(result):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{expr!r} still {result!r} after {timeout}s:\n{prometheus.log()[-2000:]}")


class Traffic:
    """Post a batch to the daemon every 300 ms from a thread, until stopped."""

    def __init__(self, daemon: Daemon) -> None:
        self._url = f"{daemon.url}/v1/conversations"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.posted = 0
        self.errors: list[str] = []

    def _run(self) -> None:
        serial, rng = itertools.count(1), random.Random(7)
        while not self._stop.wait(0.3):
            body = json.dumps(_batch(serial, rng)).encode()
            request = urllib.request.Request(
                self._url, data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    self.posted += json.load(response)["accepted"]
            except OSError as error:
                self.errors.append(str(error))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Path]]:
    """Daemon, fake judge and Prometheus with the generated rules, fed until alerts fire."""
    tmp_path = tmp_path_factory.mktemp("dashboards-e2e")
    baseline = Record.mean(BASELINE)
    with running_fake_openai() as fake:
        document = config_document(fake)
        config = parse_config(document, source="e2e.yml")
        out = tmp_path / "out"
        written = generate(config, out=out)
        rules = [path for path in written if path.name.endswith(".rules.yml")]
        with (
            running_daemon(tmp_path, document) as daemon,
            running_prometheus(
                tmp_path, targets=[f"127.0.0.1:{daemon.port}"], rule_files=rules
            ) as prometheus,
        ):
            _wait_for(prometheus, 'up{job="agent-quality-exporter"} == 1', timeout=30)
            with Traffic(daemon) as traffic:
                # The baseline is the last thing to fill: it ends a current window (20s) ago.
                _wait_for(prometheus, f"count({baseline}) >= 10", timeout=90)
                _wait_for(
                    prometheus, 'count(count by (alertname) (ALERTS{alertstate="firing"})) >= 2'
                )
            assert traffic.posted > 100
            assert not traffic.errors, traffic.errors[:3]
            yield prometheus, out / "grafana"


def _titles(dashboard: dict[str, Any]) -> set[str]:
    """Return the panel titles, windows (which the test config shrinks) left out."""
    return {re.sub(r"\b([0-9]+[smhdw])+\b", "W", p["title"]) for p in panels(dashboard)}


def _values(prometheus: Prometheus, dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Answer the dashboard's variable queries in order, as Grafana fills the drop-downs."""
    chosen: dict[str, list[str]] = {"datasource": ["prometheus"]}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        parts = label_values(query["query"] if isinstance(query, dict) else query)
        assert parts is not None, f"{variable['name']}: not a label_values() query"
        selector, label = parts
        answer = _api(
            prometheus, f"label/{label}/values", **{"match[]": substitute(selector, chosen)}
        )
        assert answer, f"variable {variable['name']} has no values"
        # A multi-value variable shows everything ("All"); a single one its first value.
        chosen[variable["name"]] = answer if variable.get("multi") else answer[:1]
    return chosen


class TestEveryQuery:
    def test_generated_dashboards_cover_the_committed_panels(
        self, stack: tuple[Prometheus, Path]
    ) -> None:
        """The tested config's dashboards have every panel the committed ones have, and more."""
        _, grafana = stack
        tested, committed = load(grafana), load(COMMITTED)
        assert tested.keys() == committed.keys()
        for name, dashboard in committed.items():
            assert _titles(dashboard) <= _titles(tested[name]), name

    @pytest.mark.parametrize("uid", [OVERVIEW_UID, AGENT_UID])
    def test_every_query_returns_data(self, stack: tuple[Prometheus, Path], uid: str) -> None:
        """Each panel, variable and annotation query runs without error and returns data."""
        prometheus, grafana = stack
        (dashboard,) = [d for d in load(grafana).values() if d["uid"] == uid]
        values = _values(prometheus, dashboard)
        found = queries(dashboard)
        assert len(found) > 15
        now = time.time()
        empty = []
        for query in found:
            expr = substitute(query.expr, values, rate_interval="10s", range_=RANGE)
            assert "$" not in expr, f"{query.where}: unknown variable in {expr}"
            if query.kind == "variable":
                continue  # answered by _values above
            try:
                result = _run(prometheus, expr, instant=query.instant, now=now)
            except AssertionError as error:
                raise AssertionError(f"{query.where}: {expr}: {error}") from None
            if not result:
                empty.append(f"{query.where}: {expr}")
        assert not empty, "queries without data:\n" + "\n".join(empty)

    def test_panels_show_what_happened(self, stack: tuple[Prometheus, Path]) -> None:
        """Values match the traffic: alerts fire, every coherence score is bad, judging costs."""
        prometheus, grafana = stack
        (overview,) = [d for d in load(grafana).values() if d["uid"] == OVERVIEW_UID]
        values, now = _values(prometheus, overview), time.time()

        def last(title: str, ref: str | None = None) -> list[float]:
            (panel,) = [p for p in panels(overview) if p.get("title") == title]
            (target,) = [t for t in panel["targets"] if ref in (None, t["refId"])]
            expr = substitute(target["expr"], values, rate_interval="10s", range_=RANGE)
            result = _run(prometheus, expr, instant=True, now=now)
            return [float(sample["value"][1]) for sample in result]

        assert last("Firing quality alerts") >= [2.0]  # burn rate and threshold, at least
        assert min(last("Past the bad threshold, last 5m", "coherence")) == 1.0
        assert min(last("Burn rate, last 1m", "coherence")) == pytest.approx(10.0)
        assert min(last("Mean score, last 20s", "coherence")) == 1.0
        assert 0.0 < min(last("Mean score, last 20s", "task_completion")) < 1.0
        assert last("Judge cost")[0] > 0
        assert last("Eval cost / agent cost")[0] > 0
