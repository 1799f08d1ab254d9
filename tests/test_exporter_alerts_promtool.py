"""The scorer and judge error alerts, proven with ``promtool test rules``: fast, not noisy.

A scorer or judge that fails every call is an outage of the quality signal: its alert fires
within 5 minutes (issue 16). A low error rate, or a few minutes of trouble, stays silent; a
sustained one still fires after ``alerting.exporter.for`` (15m). The series are the daemon's
own counters, scraped every 15 s; the rules are what ``generate`` writes for a config with a
tier-1 and a confirmation judge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import parse_config
from exporter.generate import generate
from exporter.scenarios import INSTANCE, JOB, promtool_test, write_test_file

ALERTS = ("AgentQualityScorerErrors", "AgentQualityJudgeErrors")
#: Scrapes a minute (every 15 s) and minutes of series: 2 hours.
SCRAPES, MINUTES = 4, 120
#: The minute the trouble starts: the windows before it are full of healthy traffic.
ONSET = 30


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generate the rules for two judges; keep only the scorer and judge error alerts."""
    config = parse_config(
        {
            "alerting": {"scrape_interval": "15s"},  # as the series below are scraped
            "judges": {
                "fast": {"base_url": "http://127.0.0.1:1/v1", "model": "small"},
                "careful": {"base_url": "http://127.0.0.1:1/v1", "model": "large"},
            },
            "scorers": [{"type": "llm_judge", "judge": "fast", "dimensions": ["coherence"]}],
            "confirmation": {"judge": "careful"},
        }
    )
    out = tmp_path_factory.mktemp("rules")
    written = generate(config, out=out)
    (alerts,) = [path for path in written if path.name.endswith(".rules.yml")]
    document = yaml.safe_load(alerts.read_text())
    rules = [
        rule
        for group in document["groups"]
        for rule in group["rules"]
        if rule.get("alert") in ALERTS
    ]
    assert [rule["alert"] for rule in rules] == list(ALERTS)
    kept = out / "errors.rules.yml"
    kept.write_text(yaml.safe_dump({"groups": [{"name": "errors", "rules": rules}]}))
    return kept


def counter(name: str, per_minute: list[float], **labels: str) -> dict[str, str]:
    """Return a counter series scraped every 15 s, rising by ``per_minute[m]`` in minute m."""
    points, value = [0.0], 0.0
    for rate in per_minute:
        for _ in range(SCRAPES):
            value += rate / SCRAPES
            points.append(value)
    pairs = {**labels, "instance": INSTANCE, "job": JOB}
    selector = ",".join(f'{key}="{val}"' for key, val in pairs.items())
    return {"series": f"{name}{{{selector}}}", "values": " ".join(f"{p:.6g}" for p in points)}


def gauge(name: str, values: list[float], **labels: str) -> dict[str, str]:
    """Return a gauge series scraped every 15 s, ``values[m]`` during minute m."""
    points = [values[0]] + [value for value in values for _ in range(SCRAPES)]
    pairs = {**labels, "instance": INSTANCE, "job": JOB}
    selector = ",".join(f'{key}="{val}"' for key, val in pairs.items())
    return {"series": f"{name}{{{selector}}}", "values": " ".join(f"{p:g}" for p in points)}


def minutes(
    healthy: float, trouble: float, *, start: int = ONSET, end: int = MINUTES
) -> list[float]:
    """Return a rate per minute: ``healthy`` outside [start, end), ``trouble`` inside."""
    return [trouble if start <= minute < end else healthy for minute in range(MINUTES)]


def judge_calls(
    judge: str, *, ok: list[float], failed: list[float], outcome: str = "failed"
) -> list[dict[str, str]]:
    """Return judge_calls_total series (all outcomes present) and a closed breaker."""
    series = [
        counter("agent_quality_judge_calls_total", ok, judge=judge, outcome="ok"),
        counter("agent_quality_judge_calls_total", failed, judge=judge, outcome=outcome),
    ]
    for other in ("invalid_output", "failed", "breaker_open", "over_budget"):
        if other != outcome:
            zero = [0.0] * MINUTES
            series.append(
                counter("agent_quality_judge_calls_total", zero, judge=judge, outcome=other)
            )
    series.append(gauge("agent_quality_judge_breaker_open", [0.0] * MINUTES, judge=judge))
    return series


def scorer_runs(scorer: str, *, ok: list[float], error: list[float]) -> list[dict[str, str]]:
    """Return evaluations_total series of one agent's runs of ``scorer``."""
    labels = {"agent": "support-bot", "scorer": scorer}
    return [
        counter("agent_quality_evaluations_total", ok, outcome="ok", **labels),
        counter("agent_quality_evaluations_total", error, outcome="error", **labels),
        counter("agent_quality_evaluations_total", [0.0] * MINUTES, outcome="timeout", **labels),
    ]


def firing(alert: str, minute: int, **labels: str) -> dict[str, Any]:
    """Expect ``alert`` to be firing at ``minute``, with ``labels`` (or not, without)."""
    matchers = f'alertname="{alert}",alertstate="firing"'
    expr = f"group by ({', '.join(labels) or 'alertname'}) (ALERTS{{{matchers}}})"
    samples = [
        {"labels": "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "value": 1}
    ]
    return {"expr": expr, "eval_time": f"{minute}m", "exp_samples": samples if labels else []}


def silent(alert: str, minute: int) -> dict[str, Any]:
    """Expect ``alert`` not to have fired at any evaluation up to ``minute``."""
    expr = f'count_over_time(ALERTS{{alertname="{alert}",alertstate="firing"}}[{minute}m])'
    return {"expr": expr, "eval_time": f"{minute}m", "exp_samples": []}


def run(rule_file: Path, tmp_path: Path, series: list[dict[str, str]], checks: list[Any]) -> None:
    test = {"interval": "15s", "input_series": series, "promql_expr_test": checks}
    path = write_test_file(tmp_path / "test.yml", rule_files=[rule_file], tests=[test])
    result = promtool_test(path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


class TestEveryCallFails:
    def test_judge_answering_garbage_to_every_call(self, rule_file: Path, tmp_path: Path) -> None:
        """10 verdicts a minute, every one invalid from minute 30 (its breaker stays closed)."""
        series = judge_calls(
            "fast",
            ok=minutes(10, 0),
            failed=minutes(0, 10),
            outcome="invalid_output",
        )
        checks = [
            silent("AgentQualityJudgeErrors", ONSET),
            firing("AgentQualityJudgeErrors", ONSET + 5, judge="fast"),
        ]
        run(rule_file, tmp_path, series, checks)

    def test_rarely_asked_judge_with_its_breaker_open(
        self, rule_file: Path, tmp_path: Path
    ) -> None:
        """The confirmation judge, asked twice an hour, answers 400: its breaker opens."""
        calls = [1.0 if minute % 30 == 10 else 0.0 for minute in range(MINUTES)]
        series = judge_calls(
            "careful",
            ok=[rate if minute < ONSET else 0.0 for minute, rate in enumerate(calls)],
            failed=[rate if minute >= ONSET else 0.0 for minute, rate in enumerate(calls)],
        )
        # The daemon opens the breaker after breaker.failures (5) requests in a row, here
        # at minute 40 (the first failed call and its retries would not do, but 4xx do now).
        breaker = [1.0 if minute >= 40 else 0.0 for minute in range(MINUTES)]
        series[-1] = gauge("agent_quality_judge_breaker_open", breaker, judge="careful")
        checks = [
            silent("AgentQualityJudgeErrors", 40),
            firing("AgentQualityJudgeErrors", 45, judge="careful"),
        ]
        run(rule_file, tmp_path, series, checks)

    def test_scorer_failing_every_run(self, rule_file: Path, tmp_path: Path) -> None:
        """A scorer run 6 times a minute that errors on each from minute 30."""
        series = scorer_runs("llm_judge", ok=minutes(6, 0), error=minutes(0, 6))
        checks = [
            silent("AgentQualityScorerErrors", ONSET),
            firing("AgentQualityScorerErrors", ONSET + 5, scorer="llm_judge"),
        ]
        run(rule_file, tmp_path, series, checks)


class TestNoise:
    def test_low_error_rates_stay_silent(self, rule_file: Path, tmp_path: Path) -> None:
        """2% of verdicts and runs failing, for an hour and a half: no alert."""
        series = [
            *judge_calls("fast", ok=minutes(9.8, 9.8), failed=minutes(0.2, 0.2)),
            *scorer_runs("llm_judge", ok=minutes(5.88, 5.88), error=minutes(0.12, 0.12)),
        ]
        checks = [silent(alert, MINUTES) for alert in ALERTS]
        run(rule_file, tmp_path, series, checks)

    def test_a_few_bad_minutes_stay_silent(self, rule_file: Path, tmp_path: Path) -> None:
        """30% failing for 5 minutes, or everything for 2 minutes: no alert."""
        series = [
            *judge_calls(
                "fast",
                ok=minutes(10, 7, end=ONSET + 5),
                failed=minutes(0, 3, end=ONSET + 5),
            ),
            *scorer_runs(
                "llm_judge", ok=minutes(6, 0, end=ONSET + 2), error=minutes(0, 6, end=ONSET + 2)
            ),
        ]
        checks = [silent(alert, MINUTES) for alert in ALERTS]
        run(rule_file, tmp_path, series, checks)

    def test_a_sustained_error_rate_fires_after_the_quarter_hour(
        self, rule_file: Path, tmp_path: Path
    ) -> None:
        """20% of verdicts failing from minute 30: quiet at first, firing by minute 50."""
        series = judge_calls("fast", ok=minutes(10, 8), failed=minutes(0, 2))
        checks = [
            silent("AgentQualityJudgeErrors", ONSET + 12),
            firing("AgentQualityJudgeErrors", ONSET + 20, judge="fast"),
        ]
        run(rule_file, tmp_path, series, checks)
