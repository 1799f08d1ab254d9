"""Weeks of the daemon's series as a Prometheus would hold them, for backtests and benches.

Every series the daemon exports for a config (the label sets come from its own metrics
registry), scraped every ``scrape`` seconds: per agent a Poisson number of scored
conversations per scrape, each scored on every dimension from that dimension's healthy
distribution (exporter/scenarios/_synthetic.py), or a degraded one during an incident; the
counters around them move with it (received, sampled, scored, scorer runs). Written as
OpenMetrics, a day per file, for ``promtool tsdb create-blocks-from openmetrics``.
"""

from __future__ import annotations

import bisect
import math
import random
import subprocess
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from exporter.config.model import Config, Dimension
from exporter.generate.conventions import le_value
from exporter.metrics import Metrics
from exporter.scenarios import HEALTHY, poisson

JOB = "agent-quality-exporter"
INSTANCE = "exporter-0:10340"
#: Conversations received per scored one (the default base sampling rate is 5%).
RECEIVED_PER_SCORED = 20
_TABLE = 4096

Rate = Callable[[int], float]
#: Gauges the daemon sets once it runs, at their healthy value.
_SET_AT_START = {"agent_quality_config_last_reload_successful": 1.0}


def _factor(name: str, labels: Mapping[str, str]) -> int:
    """Return how much a series moves per scored conversation of its agent."""
    if name == "agent_quality_conversations_total":
        return RECEIVED_PER_SCORED
    if name == "agent_quality_not_sampled_total":
        return RECEIVED_PER_SCORED - 1
    if name == "agent_quality_scored_total":
        return 1
    if name == "agent_quality_sampled_total":
        return int(labels.get("reason") == "base")
    if name == "agent_quality_evaluations_total":
        return int(labels.get("outcome") == "ok")
    return 0


@dataclass(frozen=True)
class Incident:
    """Scores of ``agent`` on ``dimension`` worse by ``drop`` from minute ``start`` to ``end``."""

    agent: str
    dimension: str
    start: int
    end: int
    drop: float

    def covers(self, agent: str, dimension: str, minute: int) -> bool:
        """Say whether the incident degrades this agent's dimension at ``minute``."""
        return (agent, dimension) == (
            self.agent,
            self.dimension,
        ) and self.start <= minute < self.end


@dataclass
class _Scores:
    """One dimension's score draws: a sorted table per shift, and its bucket of each entry."""

    dimension: Dimension
    bounds: tuple[float, ...]
    rng: random.Random
    tables: dict[float, tuple[list[float], list[float], list[int]]] = field(default_factory=dict)

    def table(self, shift: float) -> tuple[list[float], list[float], list[int]]:
        if shift not in self.tables:
            draw = HEALTHY[self.dimension.name]
            sign = -1.0 if self.dimension.higher_is_better else 1.0
            values = sorted(
                self.dimension.clamp(draw(self.rng) + sign * shift) for _ in range(_TABLE)
            )
            squares = [value * value for value in values]
            # Index of the first bound each score is at or below (len(bounds): only +Inf).
            buckets = [bisect.bisect_left(self.bounds, value) for value in values]
            self.tables[shift] = (values, squares, buckets)
        return self.tables[shift]


def _labels(pairs: Mapping[str, str], job: str) -> str:
    merged = {**pairs, "instance": INSTANCE, "job": job}
    return ",".join(f'{key}="{value}"' for key, value in sorted(merged.items()))


@dataclass
class History:
    """Counters of one replica, advanced one scrape at a time."""

    config: Config
    rates: Mapping[str, Rate]
    incidents: Sequence[Incident] = ()
    seed: int = 1
    #: ``all`` the daemon's buckets, or only those at thresholds (and +Inf): faster to build.
    buckets: str = "all"
    #: Metric names left out: as an older exporter would, or to keep a fixture small.
    omit: Collection[str] = ()
    job: str = JOB

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.scores = {}
        for dimension in self.config.dimensions:
            bounds = dimension.buckets if self.buckets == "all" else dimension.thresholds.values()
            self.scores[dimension.name] = _Scores(dimension, tuple(sorted(bounds)), self.rng)
        self.count = {(a, d.name): 0 for a in self.rates for d in self.config.dimensions}
        self.total = dict.fromkeys(self.count, 0.0)
        self.squares = dict.fromkeys(self.count, 0.0)
        self.hist = {key: [0] * (len(self.scores[key[1]].bounds) + 1) for key in self.count}
        self.scored = dict.fromkeys(self.rates, 0)
        self.others = self._other_series()

    def _other_series(self) -> list[tuple[str, str, float, str | None, int]]:
        """Return (name, labels, value, agent, scored factor) for every other series.

        A series moves by ``factor`` per conversation its agent has scored.
        """
        registry = CollectorRegistry()
        Metrics(self.config, registry)
        series: list[tuple[str, str, float, str | None, int]] = [
            ("up", _labels({}, self.job), 1.0, None, 0),
            # Callback gauges the running daemon adds (exporter/pipeline/_pipeline.py).
            ("agent_quality_queue_depth", _labels({}, self.job), 0.0, None, 0),
            (
                "agent_quality_queue_capacity",
                _labels({}, self.job),
                self.config.pipeline.queue_size,
                None,
                0,
            ),
        ]
        # The base rate each agent is sampled at (exporter/ingest/intake.py): the share of
        # received conversations scored here.
        series += [
            (
                "agent_quality_sampling_rate",
                _labels({"agent": agent}, self.job),
                1 / RECEIVED_PER_SCORED,
                None,
                0,
            )
            for agent in self.rates
        ]
        for family in registry.collect():
            for sample in family.samples:
                name, labels = sample.name, sample.labels
                if name.startswith("agent_quality_score_") or name.endswith("_created"):
                    continue
                value = _SET_AT_START.get(name, sample.value)
                factor = _factor(name, labels) if labels.get("agent") in self.rates else 0
                series.append((name, _labels(labels, self.job), value, labels.get("agent"), factor))
        return [entry for entry in series if entry[0] not in self.omit]

    def step(self, minute: int, seconds: float) -> None:
        """Score the conversations of the ``seconds`` of one scrape interval at ``minute``."""
        for agent, rate in self.rates.items():
            n = poisson(self.rng, rate(minute) * seconds / 60)
            self.scored[agent] += n
            if not n:
                continue
            for dimension in self.config.dimensions:
                key = (agent, dimension.name)
                shift = sum(
                    i.drop for i in self.incidents if i.covers(agent, dimension.name, minute)
                )
                values, squares, buckets = self.scores[dimension.name].table(shift)
                hist, total, square = self.hist[key], 0.0, 0.0
                for _ in range(n):
                    index = int(self.rng.random() * _TABLE)
                    total += values[index]
                    square += squares[index]
                    hist[buckets[index]] += 1
                self.count[key] += n
                self.total[key] += total
                self.squares[key] += square

    def lines(self, at: float) -> Iterator[str]:
        """Return the OpenMetrics lines of one scrape at Unix time ``at``."""
        stamp = f"{at:.3f}"
        for (agent, dimension), count in self.count.items():
            labels = _labels({"agent": agent, "dimension": dimension}, self.job)
            sums = {
                "agent_quality_score_count": count,
                "agent_quality_score_sum": self.total[agent, dimension],
                "agent_quality_score_squares_total": self.squares[agent, dimension],
            }
            for name, value in sums.items():
                if name not in self.omit:
                    yield f"{name}{{{labels}}} {value!r} {stamp}\n"
            if "agent_quality_score_bucket" in self.omit:
                continue
            cumulative = 0
            bounds = self.scores[dimension].bounds
            for index, bound in enumerate((*bounds, math.inf)):
                cumulative += self.hist[agent, dimension][index]
                le = "+Inf" if bound == math.inf else le_value(bound)
                bucket = _labels({"agent": agent, "dimension": dimension, "le": le}, self.job)
                yield f"agent_quality_score_bucket{{{bucket}}} {cumulative} {stamp}\n"
        for name, labels, value, owner, factor in self.others:
            if factor and owner is not None:
                value += factor * self.scored[owner]
            yield f"{name}{{{labels}}} {value!r} {stamp}\n"

    def write(self, directory: Path, *, start: float, minutes: int, scrape: int = 60) -> list[Path]:
        """Write ``minutes`` of scrapes from ``start`` (Unix seconds), a file per day."""
        return list(self.days(directory, start=start, minutes=minutes, scrape=scrape))

    def days(
        self, directory: Path, *, start: float, minutes: int, scrape: int = 60
    ) -> Iterator[Path]:
        """Write the files one day at a time, yielding each when it is complete."""
        directory.mkdir(parents=True, exist_ok=True)
        steps = minutes * 60 // scrape
        per_file = 86400 // scrape
        for number, first in enumerate(range(0, steps, per_file)):
            path = directory / f"history-{number:03d}.om"
            with path.open("w", encoding="utf-8") as out:
                for step in range(first, min(first + per_file, steps)):
                    if step:
                        self.step((step * scrape) // 60, scrape)
                    out.writelines(self.lines(start + step * scrape))
                out.write("# EOF\n")
            yield path


def import_history(files: Iterable[Path], data: Path, *, remove: bool = False) -> None:
    """Turn the OpenMetrics files into TSDB blocks in ``data`` with promtool, one by one."""
    data.mkdir(parents=True, exist_ok=True)
    for path in files:
        import_file(path, data)
        if remove:
            path.unlink()


def import_file(path: Path, data: Path) -> None:
    """Turn one OpenMetrics file into TSDB blocks in ``data``."""
    args = ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet"]
    # A day per file: one or two passes over it with 54h blocks.
    args += ["--max-block-duration=54h", str(path), str(data)]
    subprocess.run(args, check=True, capture_output=True, timeout=600)
