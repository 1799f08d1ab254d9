"""The backtest's parts: PromQL selectors, rule levels, alert states, reports, CLI, HTTP.

The alert states are checked against ``promtool test rules`` on the same presence patterns;
the end-to-end runs against a real Prometheus are in tests/test_backtest_e2e.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from exporter.backtest.client import PrometheusAPI, Series
from exporter.backtest.evaluate import AlertTracker, Episode
from exporter.backtest.fetch import scoped
from exporter.backtest.promql import PromQLError, Selector, selectors
from exporter.backtest.report import compare, render, render_compare, rows, summarize
from exporter.backtest.request import Connection
from exporter.backtest.rules import AlertRule, RecordingRule, generated_rules, plan_rules
from exporter.backtest.run import Result
from exporter.cli import run
from exporter.config import load_config
from exporter.exceptions import BacktestError
from exporter.scenarios import promtool_test


def found(expr: str) -> list[tuple[str | None, str, float]]:
    return [(s.name, s.matchers, s.lookback) for s in selectors(expr)]


class TestSelectors:
    """Which series an expression reads, and how far back."""

    @pytest.mark.parametrize(
        ("expr", "expected"),
        [
            (
                "sum by (agent, dimension) (increase(agent_quality_score_count[3m]))",
                [("agent_quality_score_count", "", 180.0)],
            ),
            (
                "sum_over_time(a:b:c[1d:1h] offset 1h)",
                [("a:b:c", "", 90000.0)],
            ),
            ('up{job="x"} == 0', [("up", 'job="x"', 0.0)]),
            ('absent(up{job="x"})', [("up", 'job="x"', 0.0)]),
            (
                'sum(rate(x{a=~"b|c"}[5m])) by (a) / ignoring (a) group_left () sum(y) > bool 2',
                [("x", 'a=~"b|c"', 300.0), ("y", "", 0.0)],
            ),
            (
                'max_over_time(rate(x[5m])[1h:1m] offset 10m) and on (a) {__name__="y", b="c"}',
                [("x", "", 4500.0), ("y", '__name__="y", b="c"', 0.0)],
            ),
            ('label_replace(foo, "dst", "$1", "src", "(.*)")', [("foo", "", 0.0)]),
            ("vector(0.5) + Inf - NaN * 1e3", []),
            ('count_values("v", x) @ start()', [("x", "", 0.0)]),
            ('x{a="}", b="{"} # a comment with y', [("x", 'a="}", b="{"', 0.0)]),
        ],
    )
    def test_selectors(self, expr: str, expected: list[tuple[str | None, str, float]]) -> None:
        """Functions, keywords, label lists, strings and comments are not selectors."""
        assert found(expr) == expected

    def test_unbalanced(self) -> None:
        """An expression the lexer cannot follow is an error, not a guess."""
        with pytest.raises(PromQLError):
            selectors("sum(rate(x[5m])")

    @given(
        st.text(min_size=1, max_size=20),
        st.lists(st.text(max_size=12), min_size=1, max_size=3),
    )
    def test_scoped_matchers_read_back(self, job: str, agents: list[str]) -> None:
        """Any job and agent names, quoted and escaped, read back as the same selector."""
        text = scoped(Selector("up", 'job="ignored"'), job=job, agents=agents, dimensions=())
        (selector,) = selectors(text)
        assert selector.name == "up"
        assert selector.equalities() == {"job": "ignored"}  # the rule's own job matcher stays
        (regex,) = re.findall(r'agent=~("(?:[^"\\]|\\.)*")', selector.matchers)
        pattern = json.loads(regex)
        for agent in [*agents, ""]:  # "": series without an agent label
            assert re.fullmatch(pattern, agent, re.DOTALL)
        assert not re.fullmatch(pattern, max(agents, key=len) + "-", re.DOTALL)
        text = scoped(Selector("x"), job=job, agents=(), dimensions=())
        assert selectors(text)[0].equalities() == {"job": job}


def default_plan(**kwargs: Any) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as name:
        recording, alerts, interval = generated_rules(load_config(), workdir=Path(name))
    return recording, alerts, plan_rules(recording, alerts, interval=interval, **kwargs)


class TestPlan:
    """The default config's rules, in levels, with what they read."""

    def test_levels_read_only_below(self) -> None:
        """Every recorded series a rule reads is recorded at a lower level, and kept."""
        _, alerts, plan = default_plan()
        level_of = {rule.record: n for n, level in enumerate(plan.levels) for rule in level}
        for n, level in enumerate(plan.levels):
            for rule in level:
                for read in rule.reads:
                    if read.name in plan.recorded:
                        assert level_of[read.name] < n, (rule.record, read.name)
        for alert in plan.alerts:
            for read in alert.reads:
                assert read.name not in plan.recorded or read.name in level_of
        assert len(plan.alerts) == len(alerts)

    def test_raw_series_are_the_daemons(self) -> None:
        """What to fetch: only series no rule records, bare names subsuming narrower ones."""
        _, _, plan = default_plan()
        names = [s.name for s in plan.raw]
        assert all(name == "up" or (name or "").startswith("agent_quality_") for name in names)
        assert not set(names) & plan.recorded
        bare = {s.name for s in plan.raw if not s.matchers}
        assert not [s for s in plan.raw if s.matchers and s.name in bare]
        # At least the longest window of any rule kept, plus the alert's hold.
        rules = [*(r for level in plan.levels for r in level), *plan.alerts]
        longest = max(read.lookback for rule in rules for read in rule.reads)
        assert plan.warmup >= longest > 0

    def test_dimension_filter(self) -> None:
        """--dimension keeps that dimension's alerts and the rules feeding them."""
        _, _, everything = default_plan()
        _, _, one = default_plan(dimensions=("coherence",))
        assert one.recording_rules < everything.recording_rules
        assert {a.labels.get("dimension") for a in one.alerts} <= {"coherence", None}

    def test_alerts_reading_alerts_cannot_be_replayed(self) -> None:
        """ALERTS is written by the rule manager itself."""
        alert = AlertRule("A", "ALERTS > 0", 0, 0, {}, {}, tuple(selectors("ALERTS > 0")))
        with pytest.raises(BacktestError, match="ALERTS"):
            plan_rules([], [alert])

    def test_cycle(self) -> None:
        """Rules reading each other cannot be put in levels."""
        a = RecordingRule("a", "b", {}, tuple(selectors("b")))
        b = RecordingRule("b", "a", {}, tuple(selectors("a")))
        alert = AlertRule("A", "a > 0", 0, 0, {}, {}, tuple(selectors("a > 0")))
        with pytest.raises(BacktestError, match="cycle"):
            plan_rules([a, b], [alert])


def rule(for_: float = 0.0, keep: float = 0.0) -> AlertRule:
    return AlertRule(
        "X",
        "x > 0",
        for_,
        keep,
        {"severity": "critical"},
        {"dashboard_url": "http://g/d?var-a={{ $labels.a }}"},
        tuple(selectors("x > 0")),
    )


def tracked(pattern: str, alert: AlertRule, *, split: int | None = None) -> list[Episode]:
    """Run the tracker over a 0/1 presence pattern, one evaluation a minute from 0."""
    present = [(60.0 * m, "1") for m, bit in enumerate(pattern.split()) if bit == "1"]
    tracker = AlertTracker(alert, 60_000)
    chunks = [present] if split is None else [present[: split + 1], present[split:]]
    for chunk in chunks:  # chunks repeat their edge evaluation, as range queries do
        tracker.observe(Series(metric={"__name__": "x", "a": "1"}, values=chunk))
    tracker.finish(60.0 * (len(pattern.split()) - 1))
    return tracker.episodes


PATTERNS = [
    "1 1 1 1 1 0 0 1 1 1 1 1 1 1 0 1 1 1 1 1 1 0 0 0 0 0 1 1 1 1",
    "0 1 1 1 0 1 1 1 1 1 1 0 1 0 1 1 1 1 1 0 0 0 1 1 1 1 1 1 1 1",
    "1 0 1 0 1 1 1 1 1 1 1 1 0 0 0 1 1 0 0 0 0 0 0 0 1 1 1 1 0 1",
]


class TestAlertStates:
    """Pending, firing, keep_firing_for: as Prometheus' rule manager steps them."""

    @pytest.mark.parametrize("pattern", PATTERNS)
    @pytest.mark.parametrize(("for_", "keep"), [(0, 0), (180, 0), (120, 120), (180, 90)])
    def test_promtool_agrees(self, tmp_path: Path, pattern: str, for_: int, keep: int) -> None:
        """At every minute, firing exactly when promtool test rules says so."""
        alert = rule(for_, keep)
        episodes = tracked(pattern, alert)
        rules = tmp_path / "rules.yml"
        document = {"alert": "X", "expr": "x > 0", "labels": {"severity": "critical"}}
        if for_:
            document["for"] = f"{for_}s"
        if keep:
            document["keep_firing_for"] = f"{keep}s"
        rules.write_text(json.dumps({"groups": [{"name": "g", "rules": [document]}]}))
        checks = []
        minutes = len(pattern.split())
        for minute in range(minutes):
            at = 60.0 * minute
            on = any(
                e.fired_at <= at and (e.resolved_at is None or at < e.resolved_at) for e in episodes
            )
            labels = 'ALERTS{a="1",alertname="X",alertstate="firing",severity="critical"}'
            checks.append(
                {
                    "expr": labels,
                    "eval_time": f"{minute}m",
                    "exp_samples": [{"labels": labels, "value": 1}] if on else [],
                }
            )
        test = {
            "rule_files": [str(rules)],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": [{"series": 'x{a="1"}', "values": pattern}],
                    "promql_expr_test": checks,
                }
            ],
        }
        path = tmp_path / "test.yml"
        path.write_text(json.dumps(test))
        result = promtool_test(path, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_chunk_edges_change_nothing(self) -> None:
        """A range query split in two repeats its edge evaluation: same episodes."""
        for pattern in PATTERNS:
            assert tracked(pattern, rule(120, 60)) == tracked(pattern, rule(120, 60), split=7)

    def test_episode_carries_value_and_link(self) -> None:
        """The value at firing and the dashboard link with the labels filled in."""
        (episode,) = tracked("1 1 1 1", rule(60))
        assert episode.fired_at == 60.0
        assert episode.resolved_at is None  # still firing at the last evaluation
        assert episode.value == 1.0
        assert episode.dashboard_url == "http://g/d?var-a=1"


def result(episodes: list[Episode], **changes: Any) -> Result:
    base = Result(
        source="cfg.yml",
        digest="abc",
        url="http://p:9090",
        job="agent-quality-exporter",
        since=0.0,
        until=14 * 86400.0,
        interval=60.0,
        episodes=tuple(episodes),
        pairs=(("a", "x"), ("a", "y"), ("b", "x")),
        recording_rules=3,
        levels=2,
        alerts=2,
        warmup=3600.0,
        samples=1000,
        scrape_interval=60.0,
        server_version="2.42.0",
        engine_version="2.42.0",
    )
    return dataclasses.replace(base, **changes)


def episode(
    agent: str, dimension: str, severity: str, fired: float, resolved: float | None
) -> Episode:
    labels = {"alertname": "Q", "agent": agent, "dimension": dimension, "severity": severity}
    return Episode(labels, fired - 60, fired, resolved, 0.5, "http://g/d?var-agent=" + agent)


class TestReport:
    """Summary, formats and comparison."""

    def test_summary(self) -> None:
        """Pages and warnings a week; noisy and quiet pairs ranked."""
        found = [
            episode("a", "x", "critical", 3600, 7200),
            episode("a", "x", "critical", 86400, 90000),
            episode("b", "x", "warning", 3600, None),
        ]
        summary = summarize(result(found))
        assert (summary.pages, summary.warnings) == (2, 1)
        assert summary.pages_per_week == pytest.approx(1.0)
        assert [(p.agent, p.dimension) for p in summary.noisiest] == [("a", "x"), ("b", "x")]
        assert (summary.quietest[0].agent, summary.quietest[0].dimension) == ("a", "y")
        assert summary.silent_pairs == 1

    def test_formats(self) -> None:
        """JSON is the data; Markdown has tables; text says when nothing fired."""
        found = [episode("a", "x", "critical", 3600, 7200)]
        data = json.loads(render(result(found), "json"))
        (row,) = data["alerts"]
        (shown,) = row["episodes"]
        assert shown["fired_at"] == "1970-01-01T01:00:00Z"
        assert shown["firing_seconds"] == 3600
        assert (shown["from_ms"], shown["to_ms"]) == (0, 3 * 3600 * 1000)
        assert shown["dashboard_url"].endswith("var-agent=a&from=0&to=10800000")
        assert "| alert | severity |" in render(result(found), "markdown")
        assert "No alert would have fired." in render(result([]), "text")

    def test_compare(self) -> None:
        """What B adds and removes: episodes with no overlapping one in the other."""
        kept = episode("a", "x", "critical", 3600, 7200)
        gone = episode("a", "x", "critical", 86400, 90000)
        new = episode("b", "x", "critical", 3600, 7200)
        moved = episode("a", "x", "critical", 5000, 9000)  # overlaps `kept`
        diffs = compare(result([kept, gone]), result([moved, new]))
        assert [d.removed for d in diffs if d.removed] == [(gone,)]
        assert [d.added for d in diffs if d.added] == [(new,)]
        text = render_compare(result([kept, gone]), result([moved, new]), "text")
        assert "Added by B" in text
        assert "Removed by B" in text
        data = json.loads(render_compare(result([kept]), result([kept]), "json"))
        assert data["diff"]["summary"]["added"] == data["diff"]["summary"]["removed"] == 0
        assert len(rows(result([kept, new]))) == 2


def cli(*args: str) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    return run(["backtest", *args], stdout, stderr), stderr.getvalue()


class TestCommandLine:
    """Usage and config errors exit 2 before anything is read."""

    URL = "--prometheus.url=http://127.0.0.1:1"

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--since", "yesterday"), "is not a time"),
            (("--since", "0s"), "is not before --until"),
            (("--since", "2026-01-02", "--until", "2026-01-01"), "is not before --until"),
            (("--prometheus.header", "nocolon"), "NAME=VALUE"),
            (("--prometheus.bearer-token-file", "/nonexistent"), "no file at /nonexistent"),
            (("--dimension", "nope"), "not a dimension of the config"),
            (("--compare", "/nonexistent.yml"), "config error"),
            (("--rules.evaluation-interval", "soon"), "not a duration"),
        ],
    )
    def test_usage_errors(self, args: tuple[str, ...], message: str) -> None:
        """Exit 2 and say what is wrong."""
        code, err = cli(self.URL, *args)
        assert code == 2
        assert message in err

    def test_url_required(self) -> None:
        """--prometheus.url is required."""
        assert cli()[0] == 2

    def test_config_without_alerts(self, tmp_path: Path) -> None:
        """A config that generates no alert: a config error, before connecting anywhere."""
        path = tmp_path / "c.yml"
        path.write_text(
            "alerting: {degradation: {fast: null, sharp: null, sustained: null}, slo: null}\n"
            "dimensions: [{name: d, scale: {min: 0, max: 1}, thresholds: {bad: 0.5}}]\n"
            "scorers: [{type: passthrough}]\n"
        )
        code, err = cli(self.URL, f"--config.file={path}")
        assert code == 2
        assert "no quality alert" in err


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """Return a self-signed certificate for 127.0.0.1 and its key (openssl)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def api_call(connection: Connection) -> Any:
    async with PrometheusAPI.open(connection) as api:
        return await api.query("1", at=0)


class TestClient:
    """What each failure of the server says, and the credentials it sends."""

    async def serve(self, aiohttp_server: Any, handler: Any, **kwargs: Any) -> Any:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        return await aiohttp_server(app, **kwargs)

    async def test_bearer_token_and_header(self, aiohttp_server: Any, tmp_path: Path) -> None:
        """The token from its file and the extra headers reach the server."""
        seen: dict[str, str] = {}

        async def handler(request: web.Request) -> web.Response:
            seen.update(request.headers)
            return web.json_response({"status": "success", "data": {"resultType": "scalar"}})

        server = await self.serve(aiohttp_server, handler)
        token = tmp_path / "token"
        token.write_text("s3cret\n")
        connection = Connection(
            str(server.make_url("/")), bearer_token_file=token, headers=(("X-Scope-OrgID", "t"),)
        )
        await api_call(connection)
        assert seen["Authorization"] == "Bearer s3cret"
        assert seen["X-Scope-OrgID"] == "t"

    @pytest.mark.parametrize(
        ("status", "body", "message"),
        [
            (401, b"no", "refused the request (HTTP 401)"),
            (404, b"404 page not found", "must be the base URL"),
            (200, b"<html>login</html>", "like a Prometheus API"),
            (422, b'{"status":"error","errorType":"execution","error":"boom"}', "execution: boom"),
        ],
    )
    async def test_failures(
        self, aiohttp_server: Any, status: int, body: bytes, message: str
    ) -> None:
        """Each answer a proxy or a server can give becomes a sentence."""

        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=status, body=body)

        server = await self.serve(aiohttp_server, handler)
        with pytest.raises(BacktestError, match=re.escape(message)):
            await api_call(Connection(str(server.make_url("/"))))

    async def test_tls(self, aiohttp_server: Any, certificate: tuple[Path, Path]) -> None:
        """A self-signed server: refused without its CA, accepted with it or when told."""
        cert, key = certificate
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        async def handler(request: web.Request) -> web.Response:
            return web.json_response({"status": "success", "data": {"resultType": "scalar"}})

        server = await self.serve(aiohttp_server, handler, ssl=context)
        url = f"https://127.0.0.1:{server.port}"
        with pytest.raises(BacktestError, match="not trusted"):
            await api_call(Connection(url))
        await api_call(Connection(url, ca_file=cert))
        await api_call(Connection(url, insecure_skip_verify=True))

    async def test_unreachable(self) -> None:
        """Nobody listening: say so, with the URL."""
        with pytest.raises(
            BacktestError, match=r"cannot reach Prometheus at http://127\.0\.0\.1:1"
        ):
            await api_call(Connection("http://127.0.0.1:1", timeout=5))


def test_the_daemon_does_not_load_the_backtest() -> None:
    """Every command builds the backtest's parser; none but backtest loads its machinery."""
    code = (
        "import contextlib, io, sys\n"
        "from exporter.cli import run\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"  # argparse prints --help there
        "    assert run(['--help'], io.StringIO(), io.StringIO()) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('exporter.backtest.', 'tqdm'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "['exporter.backtest.cli', 'exporter.backtest.request']"


def test_progress_is_quiet_off_a_terminal() -> None:
    """No progress bar when stderr is not a TTY (a file, a pipe, CI)."""
    from exporter.backtest.progress import TerminalProgress

    stream = io.StringIO()
    with TerminalProgress(stream).stage("download", total=10, unit="h") as advance:
        advance(5)
    assert stream.getvalue() == ""
