"""``backtest`` against a real Prometheus holding two weeks of the daemon's series.

The history (tests/support/history.py) has three agents on two dimensions: two busy agents
with one incident each and a quiet one. It is written with ``promtool tsdb
create-blocks-from openmetrics`` and served by a real Prometheus. The backtest must find both
incidents, on the right agent and dimension, and nothing else; ``promtool test rules`` on
the same series must fire and resolve the same alerts within one evaluation interval.
Expectations come from the scenario and from promtool, never from today's alert names.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.backtest.tsdb import calibrated_grid, find_tools
from exporter.cli import run
from exporter.config import default_document, load_config
from exporter.generate import generate
from exporter.generate.conventions import Alert
from exporter.scenarios import (
    constant,
    diurnal,
    prune_rule_files,
    write_test_file,
)
from tests.support.history import JOB, History, Incident, import_history
from tests.support.promstack import Prometheus, serving_prometheus

# The two-config run over two weeks takes minutes on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DAY, MINUTE = 86400, 60
DAYS = 14
DIMENSIONS = ("task_completion", "coherence")
#: "quiet" is scored once every ten minutes. (At once every four, the default sharp tier,
#: 5 scores in 30 minutes, pages on the low tail of healthy scores about once a fortnight.)
RATES = {"a": diurnal(20), "b": diurnal(20), "quiet": constant(0.1)}
INCIDENTS = (
    # Mean 0.8 to 0.5 for two hours, mid-morning of the third day (a day of baseline before).
    Incident("a", "task_completion", start=2 * 1440 + 600, end=2 * 1440 + 720, drop=0.3),
    # Mean 4.1 to about 3 (on 1 to 5) for an hour and a half, that afternoon.
    Incident("b", "coherence", start=2 * 1440 + 840, end=2 * 1440 + 930, drop=1.2),
)
#: promtool evaluates every rule at every minute from the start: it checks each incident
#: until three hours after it, and the backtest alone covers the quiet ten days after.
ORACLE_AFTER = 180
#: Read by no rule: left out to keep the fixture small.
UNREAD = ("agent_quality_scorer_duration_seconds_bucket",)
OLD_JOB = "old-exporter"
OLD_MISSING = "agent_quality_score_squares_total"


def config_document(**alerting: Any) -> dict[str, Any]:
    """Return a config with the agents and two of the default dimensions."""
    default = default_document()
    document: dict[str, Any] = {
        "agents": sorted(RATES),
        "dimensions": [d for d in default["dimensions"] if d["name"] in DIMENSIONS],
    }
    if alerting:
        document["alerting"] = alerting
    return document


@dataclass
class Served:
    """The history on a running Prometheus, and the configs to backtest it with."""

    prometheus: Prometheus
    #: The UTC midnight the history starts at; scrapes are ``phase`` seconds past each minute.
    start: int
    phase: float
    config: Path
    tmp: Path

    def at(self, minute: int) -> str:
        moment = dt.datetime.fromtimestamp(self.start + minute * MINUTE, tz=dt.UTC)
        return moment.isoformat().replace("+00:00", "Z")

    def write_config(self, name: str, document: dict[str, Any]) -> Path:
        path = self.tmp / name
        path.write_text(yaml.safe_dump(document))
        return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("backtest")
    start = (int(time.time()) // DAY - DAYS - 2) * DAY  # a UTC midnight, two weeks back
    config_path = tmp / "config.yml"
    config_path.write_text(yaml.safe_dump(config_document()))
    config = load_config(config_path)
    # Scraped in phase with the backtest's evaluations, as promtool test rules evaluates at
    # its samples: the windows of both then hold the same samples (docs/backtest.md).
    grid = asyncio.run(calibrated_grid(find_tools(), interval=MINUTE, workdir=tmp))
    phase = grid.offset_ms / 1000
    files = History(config, RATES, INCIDENTS, seed=7, buckets="thresholds", omit=UNREAD).write(
        tmp / "history", start=start + phase, minutes=DAYS * 1440
    )
    # An older exporter, scraped as another job, without one family the rules read.
    files += History(
        config, {"a": constant(5)}, job=OLD_JOB, buckets="thresholds", omit=(*UNREAD, OLD_MISSING)
    ).write(tmp / "old", start=start + phase + 12 * DAY, minutes=120)
    import_history(files, tmp / "data")
    for path in files:
        path.unlink()
    with serving_prometheus(tmp, data=tmp / "data") as prometheus:
        yield Served(prometheus, start, phase, config_path, tmp)


def backtest(served: Served, *args: str, config: Path | None = None) -> tuple[int, str, str]:
    """Run the CLI in process; return its exit code, stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = [
        "backtest",
        f"--prometheus.url={served.prometheus.url}",
        f"--config.file={config or served.config}",
        *args,
    ]
    return run(argv, stdout, stderr), stdout.getvalue(), stderr.getvalue()


def whole_history(served: Served) -> list[str]:
    return ["--since", served.at(0), "--until", served.at(DAYS * 1440), "--format", "json"]


def min_delta_config(served: Served) -> Path:
    """Return the config with task_completion's min_delta raised to 0.4 (above the drop)."""
    document = config_document()
    for dimension in document["dimensions"]:
        if dimension["name"] == "task_completion":
            dimension["alerting"] = {**dimension.get("alerting", {}), "min_delta": 0.4}
    return served.write_config("min-delta.yml", document)


@pytest.fixture(scope="module")
def compared(served: Served) -> dict[str, Any]:
    """The whole history through the config (``base``) and the min_delta one (``compare``)."""
    other = min_delta_config(served)
    code, out, err = backtest(served, *whole_history(served), "--compare", str(other))
    assert code == 0, err
    return dict(json.loads(out))


@pytest.fixture(scope="module")
def plain(compared: dict[str, Any]) -> dict[str, Any]:
    """The config's own backtest: the first half of the comparison."""
    return dict(compared["base"])


def episodes(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [episode for row in result["alerts"] for episode in row["episodes"]]


def seconds(iso: str | None) -> float | None:
    return None if iso is None else dt.datetime.fromisoformat(iso).timestamp()


class TestIncidents:
    """Two incidents and a quiet agent over two weeks."""

    def test_both_incidents_and_nothing_else(self, served: Served, plain: dict[str, Any]) -> None:
        """Each incident raises a quality alert on its own agent and dimension, while it lasts."""
        found = episodes(plain)
        for incident in INCIDENTS:
            mine = [
                e
                for e in found
                if (e["labels"].get("agent"), e["labels"].get("dimension"))
                == (incident.agent, incident.dimension)
            ]
            assert mine, f"no alert on {incident}"
            onset = served.start + incident.start * MINUTE
            first = min(seconds(e["fired_at"]) or 0 for e in mine)
            assert onset < first < served.start + incident.end * MINUTE, (incident, mine)
            for episode in mine:  # long windows may fire later, never before the incident
                fired = seconds(episode["fired_at"]) or 0
                assert onset < fired < onset + DAY, episode
        pairs = {(i.agent, i.dimension) for i in INCIDENTS}
        elsewhere = [
            e
            for e in found
            if (e["labels"].get("agent"), e["labels"].get("dimension")) not in pairs
        ]
        assert [(e["labels"], e["fired_at"]) for e in elsewhere] == []
        assert plain["summary"]["pages"] >= 1
        quiet = {(p["agent"], p["dimension"]) for p in plain["summary"]["quietest"]}
        assert ("quiet", "task_completion") in quiet

    def test_reports_the_history_it_read(self, served: Served, plain: dict[str, Any]) -> None:
        """Every pair with scores is listed; the rules ran every minute over the period."""
        expected = [[agent, dim] for agent in sorted(RATES) for dim in sorted(DIMENSIONS)]
        assert sorted(plain["data"]["pairs"]) == expected
        assert plain["data"]["scrape_interval_seconds"] == 60
        assert plain["evaluation"]["interval_seconds"] == 60
        assert plain["period"]["days"] == DAYS
        # The history starts at the period: the note says the long windows start empty.
        assert any("holds no history before" in note for note in plain["notes"])

    def test_promtool_agrees(self, served: Served, plain: dict[str, Any]) -> None:
        """promtool test rules on the same series fires and resolves within a minute of it."""
        config = load_config(served.config)
        processes = []
        for incident in INCIDENTS:
            where = served.tmp / f"oracle-{incident.agent}"
            where.mkdir()
            rules = oracle_rules(config, incident.dimension, where)
            minutes = incident.end + ORACLE_AFTER
            series = oracle_series(
                served.prometheus,
                served.start + served.phase,
                incident.agent,
                incident.dimension,
                minutes=minutes,
            )
            mine = [
                e
                for e in episodes(plain)
                if (e["labels"].get("agent"), e["labels"].get("dimension"))
                == (incident.agent, incident.dimension)
            ]
            checks = oracle_checks(served.start, mine, minutes=minutes)
            test = {"interval": "1m", "input_series": series, "promql_expr_test": checks}
            path = write_test_file(where / "test.yml", rule_files=rules, tests=[test])
            processes.append(
                subprocess.Popen(
                    ["promtool", "test", "rules", str(path)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        # Every process waited for before any assertion: none is left with an open pipe.
        outputs = [(process.communicate(timeout=380)[0], process) for process in processes]
        for output, process in outputs:
            assert process.returncode == 0, output[-4000:]


def oracle_rules(config: Any, dimension: str, where: Path) -> list[Path]:
    """Return the generated rules reduced to the alerts on ``dimension`` and what they read."""
    written = generate(config, out=where / "generated")
    kept = where / "kept"
    kept.mkdir()
    files = []
    for path in written:
        if not path.name.endswith(".rules.yml"):
            continue
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            group["rules"] = [
                rule
                for rule in group["rules"]
                if "record" in rule or rule.get("labels", {}).get("dimension") == dimension
            ]
        (kept / path.name).write_text(yaml.safe_dump(document, sort_keys=False, width=10**6))
        files.append(kept / path.name)
    pruned = where / "pruned"
    pruned.mkdir()
    return prune_rule_files(files, pruned)


def oracle_series(
    prometheus: Prometheus, first: float, agent: str, dimension: str, *, minutes: int
) -> list[dict[str, str]]:
    """Return one pair's score series, scrape by scrape from ``first``, as promtool input."""
    selector = (
        f'{{__name__=~"agent_quality_score_.*", agent="{agent}", dimension="{dimension}", '
        f'job="{JOB}"}}'
    )
    body = prometheus.get_json(
        "/api/v1/query_range",
        query=selector,
        start=f"{first:.3f}",
        end=f"{first + (minutes - 1) * MINUTE:.3f}",
        step="60",
    )
    series = []
    for found in body["data"]["result"]:
        by_minute = {round((float(t) - first) / MINUTE): v for t, v in found["values"]}
        values = [by_minute.get(m, "_") for m in range(minutes)]
        labels = ",".join(
            f'{k}="{v}"' for k, v in sorted(found["metric"].items()) if k != "__name__"
        )
        series.append(
            {"series": f"{found['metric']['__name__']}{{{labels}}}", "values": " ".join(values)}
        )
    assert series
    return series


def alerts_selector(labels: dict[str, str]) -> str:
    pairs = {**labels, "alertstate": "firing"}
    return "ALERTS{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs.items())) + "}"


def oracle_checks(start: int, mine: list[dict[str, Any]], *, minutes: int) -> list[dict[str, Any]]:
    """Return promtool expectations: each episode starts and ends within a minute there too.

    The backtest's evaluations fall some seconds into each minute of the history; promtool's
    fall on the minute: minute m of one is minute m of the other. Within a minute, not to
    the minute: a subquery (``x[2h:5m]``) reads a recorded series at whole 5 minutes, where
    promtool has just recorded it and the backtest, like a Prometheus evaluating at that
    offset, recorded it a minute before (docs/backtest.md).
    """
    last = minutes - 1
    checks = []

    def check(expr: str, minute: int, *, expected: list[dict[str, Any]]) -> None:
        checks.append({"expr": expr, "eval_time": f"{minute}m", "exp_samples": expected})

    def around(selector: str) -> list[str]:
        """Return ``selector`` at the minute checked, the one before and the one after."""
        return [selector, f"{selector} offset 1m", f"{selector} offset 2m"]

    shown = []
    for episode in mine:
        labels = episode["labels"]
        selector = alerts_selector(labels)
        fired = int(((seconds(episode["fired_at"]) or 0) - start) // MINUTE)
        resolved_at = seconds(episode["resolved_at"])
        resolved = None if resolved_at is None else int((resolved_at - start) // MINUTE)
        assert abs(fired - last) > 2, "an alert fires at the end of promtool's span"
        if fired > last:
            continue
        shown.append(labels)
        neighbours = [other for other in mine if other is not episode and other["labels"] == labels]
        if not any(
            abs((seconds(o["resolved_at"]) or 0) - (seconds(episode["fired_at"]) or 0)) < 5 * MINUTE
            for o in neighbours
        ):
            check(selector, fired - 2, expected=[])  # not firing before
        # Firing at fired - 1, fired or fired + 1.
        firing = {"labels": selector, "value": 1}
        check(" or ".join(around(selector)), fired + 1, expected=[firing])
        if resolved is not None and resolved + 1 <= last:
            # Not firing at one of resolved - 1, resolved, resolved + 1.
            together = " and ".join(around(selector))
            check(f"absent({together})", resolved + 1, expected=[{"labels": "{}", "value": 1}])
    unique = {tuple(sorted(labels.items())): labels for labels in shown}
    checks.append(
        {
            "expr": f'group without () (count_over_time(ALERTS{{alertstate="firing"}}[{last}m]))',
            "eval_time": f"{last}m",
            "exp_samples": [
                {"labels": alerts_selector(labels).removeprefix("ALERTS"), "value": 1}
                for labels in unique.values()
            ],
        }
    )
    return checks


def pair(episode: dict[str, Any]) -> tuple[str | None, str | None]:
    return episode["labels"].get("agent"), episode["labels"].get("dimension")


class TestCompare:
    """``--compare``: two configs over one download."""

    def test_a_larger_min_delta_removes_the_degradation_alerts(
        self, compared: dict[str, Any]
    ) -> None:
        """A drop of 0.3 is below a min_delta of 0.4: B removes those pages, adds nothing."""
        a, b = episodes(compared["base"]), episodes(compared["compare"])
        degraded = [
            e
            for e in a
            if pair(e) == ("a", "task_completion") and e["labels"]["alertname"] == Alert.DEGRADED
        ]
        assert degraded
        assert not [
            e
            for e in b
            if pair(e)[1] == "task_completion" and e["labels"]["alertname"] == Alert.DEGRADED
        ]
        # The other dimension's rules did not change: nor did its alerts.
        untouched = [e for e in a if pair(e)[1] != "task_completion"]
        assert untouched
        assert untouched == [e for e in b if pair(e)[1] != "task_completion"]
        rows = compared["diff"]["rows"]
        removed = [e for row in rows for e in row["removed"]]
        assert [e for e in degraded if e not in removed] == []
        assert {e["labels"]["dimension"] for e in removed} == {"task_completion"}
        assert [e for row in rows for e in row["added"]] == []
        summary = compared["diff"]["summary"]
        assert summary["removed"] == len(removed)
        assert summary["pages_per_week"][1] < summary["pages_per_week"][0]

    def test_text_is_a_table_of_what_changes(self, served: Served) -> None:
        """The text report: pages a week under each config, then what B removes."""
        args = ["--since", served.at(2 * 1440), "--until", served.at(3 * 1440), "--agent", "a"]
        other = str(min_delta_config(served))
        code, out, err = backtest(
            served, *args, "--dimension", "task_completion", "--compare", other
        )
        assert code == 0, err
        assert "pages a week" in out
        head, _, removed = out.partition("Removed by B")
        assert Alert.DEGRADED in removed
        assert "Added by B" not in head


def free_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestErrors:
    """What a user gets when the backtest cannot run: exit 1 and what to do."""

    def test_unreachable_prometheus(self, served: Served) -> None:
        """A port nobody listens on."""
        code, out, err = backtest(
            served,
            *whole_history(served)[:4],
            f"--prometheus.url=http://127.0.0.1:{free_tcp_port()}",
        )
        assert code == 1
        assert "cannot reach Prometheus at http://127.0.0.1:" in err
        assert out == ""

    def test_no_data_for_the_job(self, served: Served) -> None:
        """alerting.job names a job the server never scraped: the jobs it has are listed."""
        other = served.write_config("nobody.yml", config_document(job="nobody"))
        code, _, err = backtest(served, *whole_history(served)[:4], config=other)
        assert code == 1
        assert "no data for the job: " in err
        assert 'job="nobody"' in err
        assert JOB in err
        assert OLD_JOB in err

    def test_period_longer_than_the_history(self, served: Served) -> None:
        """--since before the oldest sample: the message says when that is and what to ask."""
        code, _, err = backtest(served, "--since", "30d", "--until", served.at(DAYS * 1440))
        assert code == 1
        assert "the period is longer than" in err
        oldest = dt.datetime.fromtimestamp(served.start, tz=dt.UTC).date().isoformat()
        assert f'oldest sample of job="{JOB}" is from {oldest}' in err
        assert "--since 14d" in err

    def test_series_of_an_older_exporter(self, served: Served) -> None:
        """A metric family the rules read is missing: named, with the rules that read it."""
        other = served.write_config("old.yml", config_document(job=OLD_JOB))
        since, until = served.at(12 * 1440), served.at(12 * 1440 + 120)
        code, _, err = backtest(served, "--since", since, "--until", until, config=other)
        assert code == 1
        assert "older agent-quality-exporter" in err
        assert OLD_MISSING in err


def children(pid: int) -> set[int]:
    """Return the pids of ``pid``'s children (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.update(int(p) for p in (task / "children").read_text().split())
    return found


def command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


class TestInterruption:
    """Ctrl-C or SIGTERM mid-run: the local Prometheus is stopped, the exit code is 1."""

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    def test_local_prometheus_is_stopped(self, served: Served, signum: signal.Signals) -> None:
        """The signal arrives while the local Prometheus evaluates the rules."""
        args = [
            sys.executable,
            "-m",
            "exporter",
            "backtest",
            f"--prometheus.url={served.prometheus.url}",
            f"--config.file={served.config}",
            "--since",
            served.at(10 * 1440),
            "--until",
            served.at(DAYS * 1440),
        ]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            local = None
            deadline = time.monotonic() + 120
            while local is None and time.monotonic() < deadline and process.poll() is None:
                local = next(
                    (p for p in children(process.pid) if "--storage.tsdb.path" in command(p)), None
                )
                time.sleep(0.05)
            assert local is not None, "the backtest never started its local Prometheus"
            time.sleep(0.5)
            process.send_signal(signum)
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 1, err
        assert "interrupted" in err
        assert (
            not Path(f"/proc/{local}").exists()
            or "zombie" in Path(f"/proc/{local}/status").read_text()
        )
