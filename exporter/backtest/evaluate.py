"""Alerts over the period: each expression as range queries, then the rule manager's states.

Prometheus evaluates the expression (a range query at the evaluation interval is the rule
manager's instant query at each evaluation). The pending/firing states follow
``rules/alerting.go`` of Prometheus: an alert is pending from the first evaluation its
labels appear at, fires at the first evaluation at least ``for`` later while it stays, keeps
firing ``keep_firing_for`` after it disappears, and resolves at the first evaluation after
that. The states only need the evaluations a series is present at, so each series is
followed through its present steps and the gaps between them.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.backtest.client import PrometheusAPI, Series
from exporter.backtest.progress import Advance, Progress
from exporter.backtest.rules import AlertRule
from exporter.backtest.tsdb import Grid
from exporter.exceptions import BacktestError

__all__ = ["AlertTracker", "Episode", "evaluate_alerts"]

_TEMPLATE = re.compile(r"{{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*}}")
_CONCURRENCY = 2
#: Evaluations per range query of an alert (two days at 1m): bounded memory per query.
ALERT_STEPS = 3000


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert from the evaluation it fired at to the one it resolved at (None: still on)."""

    labels: Mapping[str, str]
    active_at: float
    fired_at: float
    resolved_at: float | None
    value: float
    dashboard_url: str | None = None

    @property
    def alertname(self) -> str:
        """Return the alert's name."""
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        """Return the ``severity`` label ("none" without one)."""
        return self.labels.get("severity", "none")

    def duration(self, *, until: float) -> float:
        """Return the seconds it fired for (up to ``until`` while still firing)."""
        return (self.resolved_at if self.resolved_at is not None else until) - self.fired_at


@dataclass
class _State:
    """One alert's state between the evaluations its series is present at."""

    active_at: int
    last: int
    fired_at: int | None = None
    value: float = math.nan


def _link(template: str | None, labels: Mapping[str, str]) -> str | None:
    """Fill ``{{ $labels.x }}`` in a URL annotation; None if other templating remains."""
    if not template:
        return None
    filled = _TEMPLATE.sub(lambda match: labels.get(match.group(1), ""), template)
    return None if "{{" in filled else filled


@dataclass
class AlertTracker:
    """Follows one alerting rule's alerts through the evaluation grid."""

    rule: AlertRule
    step_ms: int
    episodes: list[Episode] = field(default_factory=list)
    _states: dict[tuple[tuple[str, str], ...], _State] = field(default_factory=dict)

    def labels(self, series: Series) -> dict[str, str]:
        """Return the alert's labels for one series of its expression."""
        labels = {key: value for key, value in series.metric.items() if key != "__name__"}
        labels.update(self.rule.labels)
        labels["alertname"] = self.rule.alert
        return labels

    def _hold(self, seconds: float) -> int:
        """Return a duration rounded up to whole evaluations, in ms."""
        return math.ceil(round(seconds * 1000) / self.step_ms) * self.step_ms

    def _close(self, key: tuple[tuple[str, str], ...], state: _State, resolved: int | None) -> None:
        if state.fired_at is None:
            return
        labels = dict(key)
        self.episodes.append(
            Episode(
                labels=MappingProxyType(labels),
                active_at=state.active_at / 1000,
                fired_at=state.fired_at / 1000,
                resolved_at=None if resolved is None else resolved / 1000,
                value=state.value,
                dashboard_url=_link(self.rule.annotations.get("dashboard_url"), labels),
            )
        )

    def _resolution(self, state: _State) -> int:
        """Return when a state last present at ``state.last`` resolves if it stays absent."""
        gone = state.last + self.step_ms
        if state.fired_at is None or not self.rule.keep_firing_for:
            return gone
        return gone + self._hold(self.rule.keep_firing_for)

    def observe(self, series: Series) -> None:
        """Take one series' present evaluations from a range query (in time order)."""
        key = tuple(sorted(self.labels(series).items()))
        hold = round(self.rule.for_ * 1000)
        for timestamp, text in series.values:
            at = round(timestamp * 1000)
            state = self._states.get(key)
            if state is not None and at <= state.last:
                continue  # chunk edges repeat an evaluation
            if state is not None and at > state.last + self.step_ms:
                # Absent in between: a pending alert is dropped; a firing one resolves,
                # unless keep_firing_for lasts until it is back.
                resolved = self._resolution(state)
                if state.fired_at is None or at > resolved:
                    self._close(key, state, resolved)
                    state = None
            if state is None:
                state = _State(active_at=at, last=at)
                self._states[key] = state
            state.last = at
            if state.fired_at is None and at - state.active_at >= hold:
                state.fired_at, state.value = at, float(text)

    def finish(self, end: float) -> None:
        """Close every alert at the last evaluation ``end``: resolved, or still firing."""
        last = round(end * 1000)
        for key, state in self._states.items():
            resolved = self._resolution(state)
            self._close(key, state, resolved if resolved <= last else None)
        self._states.clear()


def _merged(rule: AlertRule, tracker: AlertTracker, result: Sequence[Series]) -> list[Series]:
    """Merge series that share labels once the rule's labels apply (``__name__`` dropped).

    Prometheus fails an evaluation where two of them are present at once.
    """
    by_key: dict[tuple[tuple[str, str], ...], list[Series]] = {}
    for series in result:
        by_key.setdefault(tuple(sorted(tracker.labels(series).items())), []).append(series)
    merged = []
    for group in by_key.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        values = sorted(value for series in group for value in series.values)
        times = [at for at, _ in values]
        if len(set(times)) != len(times):
            raise BacktestError(
                f"alert {rule.alert}: two series have the same labels once the rule's labels "
                "apply, at the same evaluation; Prometheus fails that evaluation"
            )
        merged.append(Series(metric=group[0].metric, values=values))
    return merged


async def _track(
    api: PrometheusAPI, rule: AlertRule, grid: Grid, start: float, end: float, advance: Advance
) -> list[Episode]:
    tracker = AlertTracker(rule, round(grid.interval * 1000))
    chunk = grid.interval * ALERT_STEPS
    low = start
    while low <= end:
        high = min(low + chunk - grid.interval, end)
        result = await api.query_range(rule.expr, start=low, end=high, step=grid.interval)
        for series in _merged(rule, tracker, result):
            tracker.observe(series)
        low = high + grid.interval
        advance(1)
    tracker.finish(end)
    return tracker.episodes


async def evaluate_alerts(
    api: PrometheusAPI,
    alerts: Sequence[AlertRule],
    *,
    grid: Grid,
    start: float,
    end: float,
    progress: Progress,
) -> list[Episode]:
    """Return every alert episode of ``alerts`` evaluated on ``grid`` from ``start`` to ``end``."""
    first, last = grid.first(start), grid.last(end)
    chunks = math.ceil((last - first + grid.interval) / (grid.interval * ALERT_STEPS))
    limit = asyncio.Semaphore(_CONCURRENCY)
    with progress.stage("alerts", total=len(alerts) * chunks, unit="queries") as advance:

        async def one(rule: AlertRule) -> list[Episode]:
            async with limit:
                return await _track(api, rule, grid, first, last, advance)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(rule)) for rule in alerts]
    episodes = [episode for task in tasks for episode in task.result()]
    return sorted(episodes, key=lambda e: (e.fired_at, sorted(e.labels.items())))
