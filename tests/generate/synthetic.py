"""Synthetic exporter series for ``promtool test rules``: scores drawn minute by minute.

Each stream is one (agent, dimension): a Poisson number of scored conversations per minute,
each score drawn from the dimension's healthy distribution (or a degraded one), accumulated
into exactly the counters the daemon exports: ``_count``, ``_sum``, ``_squares_total`` (the
squares of the same scores) and the ``_bucket`` at every threshold (inclusive ``le``).
"""

from __future__ import annotations

import math
import random
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exporter.config.model import Dimension
from exporter.generate.conventions import le_value

Draw = Callable[[random.Random], float]
Rate = Callable[[int], float]
Shift = Callable[[int], float]

JOB = "agent-quality-exporter"
INSTANCE = "exporter-0:10340"

#: Healthy score distributions of the default dimensions (mean, sd in comments).
HEALTHY: Mapping[str, Draw] = {
    # mean 0.80, sd 0.20; ~10% at or below 0.5 (the SLO objective 0.8 allows 20%)
    "task_completion": lambda rng: rng.betavariate(2.4, 0.6),
    # integers 1-5: mean 4.14, sd 0.88; 5% at or below 2
    "coherence": lambda rng: float(rng.choices((1, 2, 3, 4, 5), (1, 4, 15, 40, 40))[0]),
    # mostly every tool call fine: mean 0.95; 5% at or below 0.5
    "tool_success": lambda rng: 1.0 if rng.random() < 0.9 else rng.random(),
    # 3% of conversations end without an answer
    "final_answer": lambda rng: 0.0 if rng.random() < 0.03 else 1.0,
    # 5% thumbs down or escalation
    "user_feedback": lambda rng: 0.0 if rng.random() < 0.05 else 1.0,
}


def constant(value: float) -> Rate:
    """Return a rate of ``value`` scored conversations a minute."""
    return lambda minute: value


def diurnal(average: float, swing: float = 0.6) -> Rate:
    """Return a rate swinging +-``swing`` around ``average`` once a day (night: low)."""
    return lambda minute: average * (1 + swing * math.sin(2 * math.pi * minute / 1440))


def step(at: int, size: float, *, until: int | None = None) -> Shift:
    """Return a drop of ``size`` from minute ``at`` (to ``until``, exclusive)."""
    return lambda minute: size if at <= minute and (until is None or minute < until) else 0.0


def ramp(at: int, size: float, over: int) -> Shift:
    """Return a drop growing linearly from 0 at ``at`` to ``size`` ``over`` minutes later."""
    return lambda minute: size * min(max(minute - at, 0) / over, 1.0)


@dataclass(frozen=True)
class Stream:
    """One agent's scores on one dimension."""

    agent: str
    dimension: Dimension
    rate: Rate
    shift: Shift = lambda minute: 0.0

    def score(self, rng: random.Random, minute: int) -> float:
        """Draw one score: healthy, moved ``shift(minute)`` towards bad, kept on the scale."""
        value = HEALTHY[self.dimension.name](rng)
        drop = self.shift(minute)
        value = value - drop if self.dimension.higher_is_better else value + drop
        return self.dimension.clamp(value)


def poisson(rng: random.Random, mean: float) -> int:
    """Draw a Poisson count (Knuth; means here stay far below where it underflows)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _labels(stream: Stream, **extra: str) -> str:
    pairs = {"agent": stream.agent, "dimension": stream.dimension.name, **extra}
    pairs |= {"instance": INSTANCE, "job": JOB}
    return ",".join(f'{key}="{value}"' for key, value in pairs.items())


def _values(points: list[float]) -> str:
    return " ".join(f"{value:.12g}" for value in points)


def input_series(streams: Iterable[Stream], *, minutes: int, seed: int) -> list[dict[str, str]]:
    """Return promtool ``input_series`` for ``minutes`` one-minute steps of every stream."""
    rng = random.Random(seed)
    series = [{"series": f'up{{instance="{INSTANCE}",job="{JOB}"}}', "values": f"1x{minutes}"}]
    for stream in streams:
        bounds = stream.dimension.thresholds.values()
        count, total, squares = [0.0], [0.0], [0.0]
        buckets: dict[float, list[float]] = {bound: [0.0] for bound in bounds}
        for minute in range(minutes):
            scores = [stream.score(rng, minute) for _ in range(poisson(rng, stream.rate(minute)))]
            count.append(count[-1] + len(scores))
            total.append(total[-1] + sum(scores))
            squares.append(squares[-1] + sum(score * score for score in scores))
            for bound, points in buckets.items():
                points.append(points[-1] + sum(1 for score in scores if score <= bound))
        name = "agent_quality_score"
        series.append({"series": f"{name}_count{{{_labels(stream)}}}", "values": _values(count)})
        series.append({"series": f"{name}_sum{{{_labels(stream)}}}", "values": _values(total)})
        series.append(
            {"series": f"{name}_squares_total{{{_labels(stream)}}}", "values": _values(squares)}
        )
        for bound, points in buckets.items():
            labels = _labels(stream, le=le_value(bound))
            series.append({"series": f"{name}_bucket{{{labels}}}", "values": _values(points)})
    return series


def write_test_file(path: Path, *, rule_files: Iterable[Path], tests: list[dict[str, Any]]) -> Path:
    """Write a promtool unit-test file evaluating rules every minute."""
    document = {
        "rule_files": [str(file) for file in rule_files],
        "evaluation_interval": "1m",
        "tests": tests,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=1_000_000))
    return path


def promtool_test(path: Path, *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``promtool test rules`` on ``path``; give up after ``timeout`` seconds.

    The caller's pytest timeout must be longer, so that a slow run fails here, saying which
    command took too long, and not as a bare pytest timeout.
    """
    return subprocess.run(
        ["promtool", "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def prune_rule_files(files: Iterable[Path], out: Path) -> list[Path]:
    """Copy rule files keeping the alerts and only the recording rules they depend on.

    promtool evaluates every rule at every step; dropping the dashboard-only recording
    rules halves a two-day test without changing what any alert sees.
    """
    documents = [(path, yaml.safe_load(path.read_text())) for path in files]
    rules = [rule for _, doc in documents for group in doc["groups"] for rule in group["rules"]]
    needed: set[str] = set()
    for rule in rules:
        if "alert" in rule:
            needed.update(_NAME.findall(rule["expr"]))
            needed.update(_NAME.findall(" ".join(rule.get("annotations", {}).values())))
    for rule in reversed(rules):  # a rule only reads rules recorded before it
        if rule.get("record") in needed:
            needed.update(_NAME.findall(rule["expr"]))
    written = []
    for path, doc in documents:
        for group in doc["groups"]:
            group["rules"] = [
                rule for rule in group["rules"] if "alert" in rule or rule["record"] in needed
            ]
        doc["groups"] = [group for group in doc["groups"] if group["rules"]]
        target = out / path.name
        target.write_text(yaml.safe_dump(doc, sort_keys=False, width=1_000_000))
        written.append(target)
    return written
