"""The scenario suite: traffic an agent sees, what the alerts should do, and what they did.

A ``Case`` is one agent's traffic on one dimension with the truth about it: nothing happens,
a dip that recovers (any page is false), or a real incident from ``onset`` (it should page;
the delay from the onset to the first page is measured). A ``Scenario`` puts cases that share
a timeline into one promtool run. ``run_scenario`` evaluates rule files over it with the real
promtool and counts, per case, false pages, false warnings and the detection delay.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from exporter.config.model import Config, Dimension
from exporter.generate.conventions import Alert
from exporter.scenarios._promtool import Answer, Observation, observe
from exporter.scenarios._sampling import sampled_day
from exporter.scenarios._synthetic import (
    Series,
    Stream,
    constant,
    diurnal,
    input_series,
    ramp,
    step,
)

__all__ = ["WARM", "Case", "Outcome", "Scenario", "default_suite", "run_scenario"]

#: Minutes until the baseline (the 24h before the current hour) is full, with a margin.
WARM = 25 * 60 + 10


@dataclass(frozen=True)
class Case:
    """One agent's traffic and the truth about it.

    ``onset`` None: nothing happens, every alert is false. ``real`` False: a dip (or nothing)
    that must not page. ``detect`` names the alert whose delay is reported (any if None), and
    ``severity`` which alerts count: pages, or tickets for a slow drift.
    """

    agent: str
    traffic: str
    change: str
    stream: Stream | None = None
    onset: float | None = None
    real: bool = False
    detect: str | None = None
    severity: str = "critical"


@dataclass(frozen=True)
class Scenario:
    """Cases on one timeline of ``minutes``, evaluated together."""

    name: str
    minutes: float
    cases: tuple[Case, ...]
    seed: int = 1
    #: Series built by the real daemon parts rather than drawn (the sampler's busy day).
    #: Called with the scrape interval and the seed.
    extra: Callable[[float, int], list[Series]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Outcome:
    """What the alerts did to one case."""

    scenario: str
    case: Case
    false_pages: int
    false_warnings: int
    delay: float | None  # minutes from the onset to the first page, None: none (or n/a)
    seed: int = 0

    @property
    def missed(self) -> bool:
        """Say whether a real incident never paged."""
        return self.case.real and self.delay is None


def _scaled(dimension: Dimension, fraction: float) -> float:
    """Return ``fraction`` of the dimension's scale (drops are quoted on a 0-1 scale)."""
    return fraction * (dimension.scale_max - dimension.scale_min)


def default_suite(config: Config, dimension: Dimension) -> tuple[Scenario, ...]:
    """Return the scenarios every config should pass, on ``dimension``."""
    busy, quiet = 20.0, 0.4

    def drop(size: float, rate: float = busy, agent: str = "") -> Case:
        name = agent or f"drop-{size:g}"
        stream = Stream(name, dimension, constant(rate), step(WARM, _scaled(dimension, size)))
        return Case(name, f"{rate:g}/min", f"drop {size:g}", stream, WARM, real=True)

    def dip(size: float, minutes: float, rate: float = busy) -> Case:
        name = f"dip-{size:g}-{minutes:g}m-{rate:g}"
        shift = step(WARM, _scaled(dimension, size), until=WARM + minutes)
        stream = Stream(name, dimension, constant(rate), shift)
        return Case(name, f"{rate:g}/min", f"{minutes:g}m dip of {size:g}", stream, WARM)

    def steady(name: str, rate: float, daily: bool = False) -> Case:
        traffic = diurnal(rate) if daily else constant(rate)
        label = f"{rate:g}/min" + (" +-60% daily" if daily else "")
        return Case(name, label, "none", Stream(name, dimension, traffic))

    scenarios = [
        Scenario(
            "steady",
            2 * 24 * 60,
            (
                steady("steady", busy),
                steady("diurnal", busy, daily=True),
                steady("medium", 3.0),
                steady("low-traffic", quiet),
                steady("low-diurnal", quiet, daily=True),
            ),
            seed=11,
        ),
        Scenario(
            "drops",
            WARM + 3 * 60,
            (
                *(drop(size) for size in (0.1, 0.15, 0.2, 0.3, 0.5)),
                drop(0.2, 3.0, "medium-drop-0.2"),
                drop(0.5, quiet, "quiet-drop-0.5"),
            ),
            seed=5,
        ),
        Scenario(
            "short dips",
            WARM + 3 * 60,
            (
                dip(0.12, 10),
                dip(0.3, 10),
                dip(0.6, 10),
                dip(0.6, 5),
                dip(0.6, 10, 3.0),
                dip(0.6, 10, quiet),
            ),
            seed=7,
        ),
        Scenario(
            "drift",
            WARM + 8 * 60,
            (
                Case(
                    "drift-0.2-12h",
                    f"{busy:g}/min",
                    "0.2 over 12h",
                    Stream(
                        "drift-0.2-12h",
                        dimension,
                        constant(busy),
                        ramp(WARM, _scaled(dimension, 0.2), 12 * 60),
                    ),
                    WARM,
                    real=True,
                    severity="warning",
                ),
            ),
            seed=3,
        ),
    ]
    objective = dimension.alerting.objective
    if objective is not None and dimension.thresholds.bad is not None:
        budget = 1 - objective
        shares = sorted({round(min(2 * budget, 0.9), 3), round(min(2.5 * budget, 0.95), 3)})
        scenarios.append(
            Scenario(
                "error budget",
                WARM + 2 * 60,
                tuple(
                    Case(
                        f"bad-{share:g}",
                        f"{busy:g}/min",
                        f"{share:.0%} bad (objective {objective:g})",
                        Stream(
                            f"bad-{share:g}", dimension, constant(busy), bad_share=step(WARM, share)
                        ),
                        WARM,
                        real=True,
                        detect=Alert.BURN,
                    )
                    for share in shares
                ),
                seed=13,
            )
        )
    if config.sampling.max_daily_samples is not None:
        maximum, base = config.sampling.max_daily_samples, config.sampling.base_rate
        # Enough traffic that the base rate alone would spend the budget by 16:00 UTC.
        per_minute = math.ceil(maximum / (base * 16 * 60)) if base > 0 else 1000
        agent = "busy-day"
        scenarios.append(
            Scenario(
                "sampling budget",
                2 * 24 * 60,
                (
                    Case(
                        agent,
                        f"{per_minute}/min, {base:g} sampled",
                        f"budget of {maximum} spent by 16:00 unpaced",
                    ),
                ),
                seed=17,
                extra=lambda interval, seed: sampled_day(
                    config,
                    dimension,
                    agent=agent,
                    per_minute=per_minute,
                    minutes=2 * 24 * 60,
                    interval=interval,
                    seed=seed,
                ),
            )
        )
    return tuple(scenarios)


#: Subquery points per observation: promtool refuses queries that load too many samples.
CHUNK_STEPS = 120


def _rising(step_: str, severity: str) -> str:
    firing = f'ALERTS{{alertstate="firing", severity="{severity}"}}'
    return f"({firing} unless {firing} offset {step_})"


def _span(start: float, end: float, step_: str) -> str:
    # Points after start up to end: a range one second short of the gap has the same points
    # whether it includes its start (Prometheus 2) or not (3).
    return f"[{round(end - start) - 1}s:{step_}]"


def _sum_for(answer: Answer, agent: str) -> int:
    # Alerts without an agent label (the exporter's own) count against every case.
    return round(sum(v for labels, v in answer if labels.get("agent", agent) == agent))


def _chunks(scenario: Scenario, interval: float) -> list[tuple[float, float]]:
    """Return ``(start, end]`` spans covering the scenario, split at every onset."""
    end, size = scenario.minutes * 60, CHUNK_STEPS * interval
    cuts = {0.0, end, *(case.onset * 60 for case in scenario.cases if case.onset is not None)}
    cuts.update(size * index for index in range(1, int(end // size) + 1))
    points = sorted(cut for cut in cuts if cut <= end)
    return list(itertools.pairwise(points))


def run_scenario(
    scenario: Scenario,
    *,
    rule_files: Sequence[Path],
    interval: float,
    workdir: Path,
) -> list[Outcome]:
    """Evaluate ``rule_files`` over ``scenario`` with promtool; return an outcome per case.

    Alerts are counted where they start firing (a false alert that flaps counts each time);
    the delay is from the onset to the first critical alert of the case's agent after it.
    """
    step_ = f"{round(interval)}s"
    streams = [case.stream for case in scenario.cases if case.stream is not None]
    series = input_series(streams, minutes=scenario.minutes, seed=scenario.seed, interval=interval)
    if scenario.extra is not None:
        series.extend(scenario.extra(interval, scenario.seed))
    chunks = _chunks(scenario, interval)
    observations: list[Observation] = []
    for start, end in chunks:
        span = _span(start, end, step_)
        for severity in ("critical", "warning"):
            firing = f'ALERTS{{alertstate="firing", severity="{severity}"}}'
            rising = f"sum_over_time({_rising(step_, severity)}{span})"
            first = f"min_over_time(timestamp({firing}){span})"
            observations.append(Observation(f"{severity} {end:g}", rising, end))
            observations.append(Observation(f"first {severity} {end:g}", first, end))
    answers = observe(
        workdir / f"{scenario.name.replace(' ', '-')}-{scenario.seed}.test.yml",
        rule_files=rule_files,
        input_series=series,
        interval=step_,
        observations=observations,
    )
    outcomes = []
    for case in scenario.cases:
        onset = math.inf if case.onset is None else case.onset * 60
        counts = {
            severity: sum(
                _sum_for(answers[f"{severity} {end:g}"], case.agent)
                for _, end in chunks
                if end <= onset or not case.real
            )
            for severity in ("critical", "warning")
        }
        delay = None
        if case.real:
            firsts = [
                value
                for start, end in chunks
                if start >= onset
                for labels, value in answers[f"first {case.severity} {end:g}"]
                if labels.get("agent") == case.agent
                and (case.detect is None or labels.get("alertname") == case.detect)
            ]
            delay = (min(firsts) - onset) / 60 if firsts else None
        outcomes.append(
            Outcome(
                scenario.name, case, counts["critical"], counts["warning"], delay, scenario.seed
            )
        )
    return outcomes
