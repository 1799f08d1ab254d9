"""The defaults' promises, proven with ``promtool test rules`` over synthetic series.

Series come from tests/generate/synthetic.py: Poisson arrivals, scores drawn from each
dimension's healthy distribution or a degraded one, counters exactly as the daemon exports
them. The seeds are fixed; exporter/generate/alerts.py gives the Monte Carlo numbers behind
the defaults (how often these outcomes hold over many seeds).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from exporter.config import Config, load_config
from exporter.generate import generate
from tests.generate.synthetic import (
    Stream,
    constant,
    diurnal,
    input_series,
    promtool_test,
    prune_rule_files,
    ramp,
    step,
    write_test_file,
)

#: How long one ``promtool test rules`` may take. The two-day test takes about a minute alone
#: on 2 cores and twice that on a loaded machine: the bound is for a hang, not for speed.
PROMTOOL_SECONDS = 900

pytestmark = [pytest.mark.slow, pytest.mark.timeout(PROMTOOL_SECONDS + 60)]

#: The baseline (24h before the current hour) is full from here on.
WARM = 25 * 60 + 10


def rule_files(config: Config, tmp_path: Path) -> list[Path]:
    """Generate the rules for ``config`` and prune dashboard-only recording rules."""
    written = generate(config, out=tmp_path / "out")
    pruned = tmp_path / "pruned"
    pruned.mkdir()
    return prune_rule_files([p for p in written if p.name.endswith(".rules.yml")], pruned)


def firing(window: str, **match: str) -> str:
    """Return a query for alerts firing at any evaluation in the last ``window``."""
    matchers = ",".join(f'{key}="{value}"' for key, value in match.items())
    return (
        "group by (alertname, agent, dimension, severity) "
        f'(count_over_time(ALERTS{{alertstate="firing",{matchers}}}[{window}]))'
    )


def check(path: Path) -> None:
    result = promtool_test(path, timeout=PROMTOOL_SECONDS)
    assert result.returncode == 0, result.stdout + result.stderr


def expect(expr: str, minute: int, samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"expr": expr, "eval_time": f"{minute}m", "exp_samples": samples}


def degraded(agent: str, dimension: str, severity: str) -> dict[str, Any]:
    """Return the expected sample of ``firing`` for one degradation alert."""
    labels = (
        f'{{agent="{agent}",alertname="AgentQualityDegraded",'
        f'dimension="{dimension}",severity="{severity}"}}'
    )
    return {"labels": labels, "value": 1}


def page(agent: str, dimension: str) -> dict[str, Any]:
    return degraded(agent, dimension, "critical")


def ticket(agent: str, dimension: str) -> dict[str, Any]:
    return degraded(agent, dimension, "warning")


class TestDefaults:
    """The default config's alerts on traffic a deployment sees."""

    # promtool evaluates ~130 rules at each of 2,880 minutes: about a minute on 2 cores.
    def test_stationary_two_days(self, tmp_path: Path) -> None:
        """Two days of noisy, diurnal, unchanged traffic, busy and quiet agents: no alert."""
        config = load_config()
        minutes = 2 * 24 * 60
        streams = [
            Stream(agent, dimension, rate)
            for agent, rate in (("busy", diurnal(20)), ("quiet", diurnal(0.4)))
            for dimension in config.dimensions
        ]
        test = {
            "interval": "1m",
            "input_series": input_series(streams, minutes=minutes, seed=11),
            "promql_expr_test": [expect(firing(f"{minutes}m"), minutes, [])],
        }
        path = write_test_file(
            tmp_path / "test.yml", rule_files=rule_files(config, tmp_path), tests=[test]
        )
        check(path)

    def test_drops_dips_and_drifts(self, tmp_path: Path) -> None:
        """Each agent shows one change after a day of health: pages come when promised."""
        base = load_config()
        by_name = {dimension.name: dimension for dimension in base.dimensions}
        task, coherence = by_name["task_completion"], by_name["coherence"]
        config = dataclasses.replace(base, dimensions=(task, coherence))
        onset = WARM
        streams = [
            # 0.6 standard deviations (sd 0.2) at ~20 scored conversations a minute.
            Stream("drop", task, constant(20), step(onset, 0.12)),
            # The same drop for ten minutes only.
            Stream("dip", task, constant(20), step(onset, 0.12, until=onset + 10)),
            # One scored conversation every 2.5 minutes; a clear drop (mean 0.8 to ~0.35).
            Stream("quiet", task, constant(0.4), step(onset, 0.5)),
            # 0.2 over 12 hours, linearly.
            Stream("drift", task, constant(20), ramp(onset, 0.2, 12 * 60)),
            # 1-5 scale: 0.7 lower.
            Stream("coherent", coherence, constant(20), step(onset, 0.7)),
        ]
        minutes = onset + 6 * 60
        checks = [
            # Nothing fires anywhere before the changes.
            expect(firing(f"{onset}m"), onset, []),
            expect(
                firing("15m", agent="drop", severity="critical"),
                onset + 15,
                [page("drop", "task_completion")],
            ),
            expect(
                firing("15m", agent="coherent", severity="critical"),
                onset + 15,
                [page("coherent", "coherence")],
            ),
            expect(
                firing("30m", agent="quiet", severity="critical"),
                onset + 30,
                [page("quiet", "task_completion")],
            ),
            expect(firing("60m", agent="dip"), onset + 60, []),
            # Caught as both a page and a ticket well before the 12 hours are over.
            expect(
                firing("6h", agent="drift", alertname="AgentQualityDegraded"),
                onset + 6 * 60,
                [page("drift", "task_completion"), ticket("drift", "task_completion")],
            ),
        ]
        test = {
            "interval": "1m",
            "input_series": input_series(streams, minutes=minutes, seed=5),
            "promql_expr_test": checks,
        }
        path = write_test_file(
            tmp_path / "test.yml", rule_files=rule_files(config, tmp_path), tests=[test]
        )
        check(path)
