"""Run the suite against rule files and print the report."""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from exporter.config.model import Config, Dimension
from exporter.exceptions import GenerateError
from exporter.scenarios._promtool import prune_rule_files
from exporter.scenarios._suite import Outcome, Scenario, default_suite, run_scenario

__all__ = ["choose_dimension", "format_report", "run_suite"]


def choose_dimension(config: Config, name: str | None) -> Dimension:
    """Return the dimension called ``name``, else the first on a 0-1 scale with an SLO."""
    if name is not None:
        found = config.dimension(name)
        if found is None:
            known = ", ".join(d.name for d in config.dimensions)
            raise GenerateError(f"no dimension {name!r} in {config.source} (it has {known})")
        return found
    for dimension in config.dimensions:
        unit = (dimension.scale_min, dimension.scale_max) == (0.0, 1.0)
        if unit and dimension.alerting.objective is not None:
            return dimension
    return config.dimensions[0]


def run_suite(
    config: Config,
    *,
    rule_files: Sequence[Path],
    dimension: Dimension,
    interval: float,
    only: Sequence[str] = (),
    seeds: int = 1,
    workers: int = 2,
) -> list[Outcome]:
    """Run the default suite (or the scenarios named in ``only``) against ``rule_files``.

    With ``seeds`` above 1 every scenario runs that many times with other random draws.
    """
    suite: list[Scenario] = list(default_suite(config, dimension))
    if only:
        unknown = set(only) - {s.name for s in suite}
        if unknown:
            known = ", ".join(s.name for s in suite)
            raise GenerateError(f"unknown scenario {sorted(unknown)}; the suite has {known}")
        suite = [s for s in suite if s.name in only]
    scenarios = [
        dataclasses.replace(s, seed=s.seed + 1000 * draw) for draw in range(seeds) for s in suite
    ]
    with tempfile.TemporaryDirectory(prefix="agent-quality-scenarios-") as tmp:
        workdir = Path(tmp)
        pruned = prune_rule_files(rule_files, workdir)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            runs = pool.map(
                lambda s: run_scenario(s, rule_files=pruned, interval=interval, workdir=workdir),
                scenarios,
            )
            return [outcome for outcomes in runs for outcome in outcomes]


def _delay(outcome: Outcome) -> str:
    if not outcome.case.real:
        return "-"
    if outcome.delay is None:
        return "MISSED"
    what = [outcome.case.detect or "", "ticket" if outcome.case.severity == "warning" else ""]
    shown = ", ".join(part for part in what if part)
    return f"{outcome.delay:g}m" + (f" ({shown})" if shown else "")


def format_report(outcomes: Sequence[Outcome]) -> str:
    """Return the outcomes as a Markdown table with a summary line (one row per case).

    Over several seeds a row sums the false alerts and gives the delay's median and 90th
    percentile with how many draws paged at all.
    """
    runs = Counter((o.scenario, o.case.agent) for o in outcomes)
    draws = max(runs.values(), default=1)
    if draws > 1:
        return "\n".join([_format_many(outcomes, draws), "", _summary(outcomes)])
    rows = [
        "| scenario | agent | traffic | change | false pages | false warnings | alerted after |",
        "|---|---|---|---|---|---|---|",
    ]
    rows.extend(
        f"| {o.scenario} | {o.case.agent} | {o.case.traffic} | {o.case.change} | "
        f"{o.false_pages} | {o.false_warnings} | {_delay(o)} |"
        for o in outcomes
    )
    return "\n".join([*rows, "", _summary(outcomes)])


def _summary(outcomes: Sequence[Outcome]) -> str:
    real = [o for o in outcomes if o.case.real]
    delays = [o.delay for o in real if o.delay is not None]
    summary = (
        f"false pages: {sum(o.false_pages for o in outcomes)}, "
        f"false warnings: {sum(o.false_warnings for o in outcomes)}, "
        f"incidents alerted: {len(delays)} of {len(real)}"
    )
    if delays:
        summary += f", median delay {statistics.median(delays):g}m, longest {max(delays):g}m"
    return summary


def _format_many(outcomes: Sequence[Outcome], draws: int) -> str:
    rows = [
        f"| scenario | agent | traffic | change | false pages ({draws} draws) | false warnings | "
        "alerted | delay median | delay p90 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cases: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in outcomes:
        cases.setdefault((outcome.scenario, outcome.case.agent), []).append(outcome)
    for (scenario, agent), runs in cases.items():
        case = runs[0].case
        delays = sorted(o.delay for o in runs if o.delay is not None)
        paged, median, p90 = "-", "-", "-"
        if case.real:
            paged = f"{len(delays)} of {len(runs)}"
        if delays:
            median = f"{statistics.median(delays):g}m"
            p90 = f"{delays[min(len(delays) - 1, round(0.9 * (len(delays) - 1)))]:g}m"
        rows.append(
            f"| {scenario} | {agent} | {case.traffic} | {case.change} | "
            f"{sum(o.false_pages for o in runs)} | {sum(o.false_warnings for o in runs)} | "
            f"{paged} | {median} | {p90} |"
        )
    return "\n".join(rows)
