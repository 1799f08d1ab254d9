"""One backtest: rules of each config, history from Prometheus, evaluation, alert episodes.

The steps and why they are exact are in docs/backtest.md: download the raw series the rules
read (with the history their longest windows need before the period), build a local TSDB
with promtool, evaluate the recording rules level by level and the alerts with a local
Prometheus, always stopped at the end.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from exporter.backtest.client import PrometheusAPI
from exporter.backtest.evaluate import Episode, evaluate_alerts
from exporter.backtest.fetch import FetchStats, Preflight, fetch_raw, preflight, scoped
from exporter.backtest.progress import Progress
from exporter.backtest.request import Connection, Request
from exporter.backtest.rules import (
    AlertRule,
    RecordingRule,
    RulePlan,
    generated_rules,
    plan_rules,
)
from exporter.backtest.tsdb import (
    Grid,
    LocalPrometheus,
    RuleBackfill,
    Tools,
    evaluate_levels,
    find_tools,
    import_openmetrics,
)
from exporter.config.duration import format_duration, parse_duration
from exporter.config.model import Config
from exporter.exceptions import BacktestError

__all__ = ["Result", "backtest"]

#: The rule evaluation interval when neither the rules nor the server say.
DEFAULT_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class Result:
    """The alerts one config's rules would have raised over the period."""

    source: str
    digest: str
    url: str
    job: str
    since: float
    until: float
    interval: float
    episodes: tuple[Episode, ...]
    #: The (agent, dimension) pairs with score series in the period.
    pairs: tuple[tuple[str, str], ...]
    recording_rules: int
    levels: int
    alerts: int
    warmup: float
    samples: int
    scrape_interval: float | None
    server_version: str | None
    engine_version: str | None
    notes: tuple[str, ...] = ()
    elapsed: float = 0.0
    #: Seconds per step: download (shared by compared configs), rules, alerts.
    stages: Mapping[str, float] = field(default_factory=dict)
    agents: tuple[str, ...] = field(default_factory=tuple)
    dimensions: tuple[str, ...] = field(default_factory=tuple)


async def _interval(api: PrometheusAPI, plans: Sequence[RulePlan], asked: float | None) -> float:
    """Return the evaluation interval: asked, the rule groups', or the server's global one."""
    if asked is not None:
        return asked
    own = {plan.interval for plan in plans if plan.interval is not None}
    if len(own) == 1:
        return own.pop()
    status = await api.status("config")
    if status is not None:
        try:
            document = yaml.safe_load(str(status.get("yaml", ""))) or {}
            configured = (document.get("global") or {}).get("evaluation_interval")
            if configured:
                return parse_duration(str(configured))
        except (yaml.YAMLError, ValueError, AttributeError):
            pass
    return DEFAULT_INTERVAL


def _link_tree(source: Path, target: Path) -> None:
    """Copy a TSDB directory by hard links (blocks are immutable files)."""
    for path in sorted(source.rglob("*")):
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, destination)


def _readers(plans: Sequence[RulePlan]) -> dict[str, list[str]]:
    """Return, per raw metric name, the rules that read it (for error messages)."""
    readers: dict[str, list[str]] = {}
    for plan in plans:
        rules: list[RecordingRule | AlertRule] = [
            *(rule for level in plan.levels for rule in level),
            *plan.alerts,
        ]
        for rule in rules:
            for read in rule.reads:
                if read.name is not None and read.name not in plan.recorded:
                    readers.setdefault(read.name, []).append(rule.name)
    return readers


@dataclass
class _History:
    """The downloaded raw series, as blocks, and what the download saw."""

    data: Path
    stats: FetchStats
    checked: Preflight
    start: float
    interval: float
    seconds: float


async def _download(
    request: Request,
    plans: Sequence[RulePlan],
    *,
    job: str,
    tools: Tools,
    workdir: Path,
    progress: Progress,
) -> _History:
    began = time.monotonic()
    since, until = request.since, request.until
    warmup = max(plan.warmup for plan in plans)
    start = math.floor((since - warmup) / 60) * 60
    selectors = {s.text(): s for plan in plans for s in plan.raw}
    queries = [
        scoped(s, job=job, agents=request.agents, dimensions=request.dimensions)
        for s in selectors.values()
    ]
    names = {s.name for s in selectors.values() if s.name is not None}
    data = workdir / "data-0"
    data.mkdir()
    async with PrometheusAPI.open(request.connection) as api:
        interval = await _interval(api, plans, request.interval)
        checked = await preflight(
            api,
            job=job,
            names=names,
            readers=_readers(plans),
            start=start,
            since=since,
            until=until,
        )

        async def store(path: Path) -> None:
            await import_openmetrics(tools, path, data)

        stats = await fetch_raw(
            api, queries, start=start, end=until, directory=workdir, store=store, progress=progress
        )
    if stats.samples == 0:
        raise BacktestError(
            f"no data for the job: Prometheus at {request.connection.url} returned no sample "
            f"of the series the rules read for job={job!r} in the period"
        )
    return _History(data, stats, checked, start, interval, time.monotonic() - began)


def _when(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return moment.isoformat(timespec="minutes").replace("+00:00", "Z")


def _notes(history: _History, request: Request, plan: RulePlan) -> tuple[str, ...]:
    notes = []
    oldest = history.checked.oldest
    if oldest - history.start > 3600:
        lookback = format_duration(max(round(plan.warmup / 60) * 60, 60))
        notes.append(
            f"the server holds no history before {_when(oldest)}, and the rules look back "
            f"{lookback}: until {_when(oldest + plan.warmup)} alerts over the longest windows "
            "saw less data than a Prometheus running all along would have"
        )
    if request.agents or request.dimensions:
        notes.append(
            "only the chosen agents and dimensions were read: alerts that add up every agent "
            "(about the exporter itself) saw only those"
        )
    templated = sorted({a.alert for a in plan.alerts if any("{{" in v for v in a.labels.values())})
    if templated:
        notes.append(f"labels with templates were kept as written: {', '.join(templated)}")
    return tuple(notes)


async def _evaluate(
    config: Config,
    plan: RulePlan,
    history: _History,
    data: Path,
    request: Request,
    *,
    tools: Tools,
    workdir: Path,
    progress: Progress,
) -> Result:
    began = time.monotonic()
    interval = history.interval
    local = LocalPrometheus(
        tools, data=data, lookback_ms=round(interval * 1000) - 1, workdir=workdir
    )
    async with local.running():
        if plan.levels:
            backfill = RuleBackfill(
                tools,
                data=data,
                workdir=workdir,
                interval=interval,
                # Before the first sample every rule is empty: no need to evaluate there.
                start=max(history.start, math.floor(history.stats.first / 60) * 60),
                end=request.until,
            )
            grid = await evaluate_levels(backfill, local, plan.levels, progress=progress)
        else:
            grid = Grid(interval, 0)
        evaluated = time.monotonic()
        async with PrometheusAPI.open(Connection(local.url, timeout=900)) as api:
            # Not before the first sample: before it the server knows nothing (absent()
            # alerts would fire on the gap, not on anything that happened).
            episodes = await evaluate_alerts(
                api,
                plan.alerts,
                grid=grid,
                start=max(history.start, history.stats.first),
                end=request.until,
                progress=progress,
            )
            build = await api.status("buildinfo") or {}
    stages = {
        "download": round(history.seconds, 1),
        "rules": round(evaluated - began, 1),
        "alerts": round(time.monotonic() - evaluated, 1),
    }
    shown = tuple(
        episode
        for episode in episodes
        if episode.fired_at < request.until
        and (episode.resolved_at is None or episode.resolved_at > request.since)
    )
    assert config.alerting is not None
    return Result(
        source=config.source,
        digest=config.digest,
        url=request.connection.url,
        job=config.alerting.job,
        since=request.since,
        until=request.until,
        interval=interval,
        episodes=shown,
        pairs=tuple(sorted(history.stats.pairs)),
        recording_rules=plan.recording_rules,
        levels=len(plan.levels),
        alerts=len(plan.alerts),
        warmup=plan.warmup,
        samples=history.stats.samples,
        scrape_interval=history.stats.scrape_interval,
        server_version=history.checked.version,
        engine_version=str(build["version"]) if build.get("version") else None,
        notes=_notes(history, request, plan),
        elapsed=time.monotonic() - began,
        stages=stages,
        agents=request.agents,
        dimensions=request.dimensions,
    )


async def backtest(
    configs: Sequence[Config], request: Request, *, progress: Progress
) -> list[Result]:
    """Return, per config, the alerts its rules would have raised on the server's history.

    Every config is evaluated on the same download. Raises ``BacktestError`` (and
    ``GenerateError`` for a config with nothing to alert on).
    """
    began = time.monotonic()
    tools = find_tools()
    jobs = {config.alerting.job if config.alerting else None for config in configs}
    if len(jobs) != 1:
        raise BacktestError("the configs compared scrape different jobs (alerting.job)")
    with tempfile.TemporaryDirectory(prefix="agent-quality-backtest-") as name:
        workdir = Path(name)
        plans = []
        for config in configs:
            recording, alerts, interval = generated_rules(config, workdir=workdir)
            plans.append(
                plan_rules(recording, alerts, interval=interval, dimensions=request.dimensions)
            )
        job = str(next(iter(jobs)))
        history = await _download(
            request, plans, job=job, tools=tools, workdir=workdir, progress=progress
        )
        directories = [history.data]
        for index in range(1, len(configs)):  # before any Prometheus compacts the raw blocks
            directories.append(workdir / f"data-{index}")
            _link_tree(history.data, directories[-1])
        results = []
        for index, (config, plan) in enumerate(zip(configs, plans, strict=True)):
            run_dir = workdir / f"run-{index}"
            run_dir.mkdir()
            results.append(
                await _evaluate(
                    config,
                    plan,
                    history,
                    directories[index],
                    request,
                    tools=tools,
                    workdir=run_dir,
                    progress=progress,
                )
            )
    elapsed = time.monotonic() - began
    return [_with_elapsed(result, elapsed) for result in results]


def _with_elapsed(result: Result, elapsed: float) -> Result:
    return replace(result, elapsed=elapsed)
