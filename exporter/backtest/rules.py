"""The rules a config generates, as the backtest needs them: in dependency order, with inputs.

The rules are read back from the files ``agent-quality-exporter generate`` writes (Prometheus'
own rule-file format), so the backtest follows whatever the generator produces. Recording
rules are kept only when an alert needs them, and sorted into levels: a rule reads only
series recorded at lower levels, so each level can be evaluated over the whole period once
the levels below it are stored.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from exporter.backtest.promql import PromQLError, Selector, selectors
from exporter.config.duration import parse_duration
from exporter.config.model import Config
from exporter.exceptions import BacktestError
from exporter.generate import generate
from exporter.generate.conventions import RULES_DIR

__all__ = ["AlertRule", "RecordingRule", "RulePlan", "generated_rules", "plan_rules"]

#: Series Prometheus' rule manager writes itself; a rule reading them cannot be replayed.
_ALERT_SERIES = frozenset({"ALERTS", "ALERTS_FOR_STATE"})


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, str]:
    return MappingProxyType({str(k): str(v) for k, v in (mapping or {}).items()})


@dataclass(frozen=True, slots=True)
class RecordingRule:
    """A recording rule as written in a rule file."""

    record: str
    expr: str
    labels: Mapping[str, str]
    reads: tuple[Selector, ...]

    @property
    def name(self) -> str:
        """Return the series name the rule records."""
        return self.record


@dataclass(frozen=True, slots=True)
class AlertRule:
    """An alerting rule as written in a rule file; durations in seconds."""

    alert: str
    expr: str
    for_: float
    keep_firing_for: float
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    reads: tuple[Selector, ...]

    @property
    def name(self) -> str:
        """Return the alert's name."""
        return self.alert


@dataclass(frozen=True, slots=True)
class RulePlan:
    """What to evaluate, in which order, from which raw series, with how much history."""

    levels: tuple[tuple[RecordingRule, ...], ...]
    alerts: tuple[AlertRule, ...]
    #: Distinct selectors of series no rule records: what to fetch.
    raw: tuple[Selector, ...]
    #: Seconds of history the alerts need before the first evaluation to see what a
    #: Prometheus running all along would have seen (longest window chain, plus ``for``).
    warmup: float
    #: The rule groups' own ``interval``, when they set one (all the same).
    interval: float | None = None
    recorded: frozenset[str] = field(default_factory=frozenset)

    @property
    def recording_rules(self) -> int:
        """Return how many recording rules the plan evaluates."""
        return sum(len(level) for level in self.levels)


def _reads(expr: str, where: str) -> tuple[Selector, ...]:
    try:
        return tuple(selectors(expr))
    except PromQLError as error:
        raise BacktestError(f"{where}: cannot read the expression: {error}") from None


def _duration(value: Any, where: str) -> float:
    if value in (None, "", 0):
        return 0.0
    try:
        return parse_duration(str(value))
    except ValueError as error:
        raise BacktestError(f"{where}: {error}") from None


def load_rule_files(
    paths: Iterable[Path],
) -> tuple[list[RecordingRule], list[AlertRule], float | None]:
    """Read Prometheus rule files; return recording rules, alerts and the groups' interval."""
    recording: list[RecordingRule] = []
    alerts: list[AlertRule] = []
    intervals: set[float] = set()
    for path in paths:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in document.get("groups") or []:
            where = f"{path.name}: group {group.get('name')!r}"
            if group.get("interval"):
                intervals.add(_duration(group["interval"], where))
            for rule in group.get("rules") or []:
                expr = str(rule["expr"])
                if "record" in rule:
                    name = str(rule["record"])
                    reads = _reads(expr, f"{where}: {name}")
                    recording.append(RecordingRule(name, expr, _frozen(rule.get("labels")), reads))
                    continue
                name = str(rule["alert"])
                alerts.append(
                    AlertRule(
                        alert=name,
                        expr=expr,
                        for_=_duration(rule.get("for"), f"{where}: {name}"),
                        keep_firing_for=_duration(rule.get("keep_firing_for"), f"{where}: {name}"),
                        labels=_frozen(rule.get("labels")),
                        annotations=_frozen(rule.get("annotations")),
                        reads=_reads(expr, f"{where}: {name}"),
                    )
                )
    if len(intervals) > 1:
        raise BacktestError(
            f"the rule groups set different evaluation intervals ({sorted(intervals)} s): "
            "the backtest evaluates every rule on one interval"
        )
    return recording, alerts, (intervals.pop() if intervals else None)


def generated_rules(
    config: Config, *, workdir: Path
) -> tuple[list[RecordingRule], list[AlertRule], float | None]:
    """Run ``generate`` for ``config`` into ``workdir`` and read back the rule files."""
    out = Path(tempfile.mkdtemp(prefix="generate-", dir=workdir))
    written = generate(config, out=out)  # GenerateError: nothing to alert on
    files = sorted(p for p in written if p.parent.name == RULES_DIR and p.name.endswith(".yml"))
    return load_rule_files(files)


def _keeps(alert: AlertRule, dimensions: Collection[str]) -> bool:
    """Say whether an alert concerns one of ``dimensions`` (or no dimension at all)."""
    dimension = alert.labels.get("dimension")
    return not dimensions or dimension is None or dimension in dimensions


def plan_rules(
    recording: Sequence[RecordingRule],
    alerts: Sequence[AlertRule],
    *,
    interval: float | None = None,
    dimensions: Collection[str] = (),
) -> RulePlan:
    """Return the recording rules the alerts need, in levels, and the raw series to fetch.

    With ``dimensions``, alerts labelled with another dimension are left out.
    """
    kept_alerts = tuple(alert for alert in alerts if _keeps(alert, dimensions))
    for alert in kept_alerts:
        for read in alert.reads:
            if read.name in _ALERT_SERIES:
                raise BacktestError(
                    f"alert {alert.alert} reads {read.name}, which Prometheus writes while it "
                    "evaluates alerts: it cannot be replayed"
                )
    graph = _Graph(recording)
    needed = graph.needed(kept_alerts)
    levels = graph.levels(needed)
    reach: dict[str, float] = {}
    for level in levels:
        for rule in level:
            seconds = _read_reach(rule.reads, reach)
            reach[rule.record] = max(reach.get(rule.record, 0.0), seconds)
    raw: dict[str, Selector] = {}
    reads = [read for rule in needed for read in rule.reads]
    reads += [read for alert in kept_alerts for read in alert.reads]
    for read in reads:
        if read.name not in graph.producers:
            raw.setdefault(read.text(), Selector(read.name, read.matchers))
    warmup = max(
        (_read_reach(a.reads, reach) + a.for_ + a.keep_firing_for for a in kept_alerts),
        default=0.0,
    )
    return RulePlan(
        levels=tuple(tuple(level) for level in levels),
        alerts=kept_alerts,
        raw=_without_subsumed(raw.values()),
        warmup=warmup,
        interval=interval,
        recorded=frozenset(graph.producers),
    )


def _without_subsumed(found: Iterable[Selector]) -> tuple[Selector, ...]:
    """Drop selectors a bare ``name`` selector of the same metric already covers."""
    found = list(found)
    bare = {selector.name for selector in found if not selector.matchers}
    return tuple(s for s in found if not s.matchers or s.name not in bare)


def _read_reach(reads: Iterable[Selector], reach: Mapping[str, float]) -> float:
    return max((read.lookback + reach.get(read.name or "", 0.0) for read in reads), default=0.0)


class _Graph:
    """Which recording rules can produce the series a selector reads."""

    def __init__(self, recording: Sequence[RecordingRule]) -> None:
        self.producers: dict[str, list[RecordingRule]] = {}
        for rule in recording:
            self.producers.setdefault(rule.record, []).append(rule)

    def sources(self, read: Selector) -> list[RecordingRule]:
        """Return the rules whose output ``read`` can select.

        A rule's static labels overwrite its output's: a rule labelled
        ``dimension="coherence"`` never feeds ``x{dimension="task_completion"}``.
        """
        wanted = read.equalities()
        return [
            rule
            for rule in self.producers.get(read.name or "", [])
            if all(rule.labels.get(key, value) == value for key, value in wanted.items())
        ]

    def needed(self, alerts: Sequence[AlertRule]) -> list[RecordingRule]:
        """Return the recording rules the alerts read, directly or through other rules."""
        seen: dict[int, RecordingRule] = {}
        todo = [rule for alert in alerts for read in alert.reads for rule in self.sources(read)]
        while todo:
            rule = todo.pop()
            if id(rule) in seen:
                continue
            seen[id(rule)] = rule
            todo.extend(source for read in rule.reads for source in self.sources(read))
        order = {id(rule): index for index, rule in enumerate(self._all())}
        return sorted(seen.values(), key=lambda rule: order[id(rule)])

    def levels(self, rules: Sequence[RecordingRule]) -> list[list[RecordingRule]]:
        """Sort rules into levels: a rule reads only series recorded at lower levels."""
        level: dict[int, int] = {}
        visiting: set[int] = set()

        def depth(rule: RecordingRule) -> int:
            key = id(rule)
            if key in level:
                return level[key]
            if key in visiting:
                raise BacktestError(f"recording rules read each other in a cycle ({rule.record})")
            visiting.add(key)
            sources = [source for read in rule.reads for source in self.sources(read)]
            level[key] = 1 + max((depth(source) for source in sources), default=-1)
            visiting.discard(key)
            return level[key]

        out: list[list[RecordingRule]] = []
        for rule in rules:
            index = depth(rule)
            while len(out) <= index:
                out.append([])
            out[index].append(rule)
        return out

    def _all(self) -> list[RecordingRule]:
        return [rule for rules in self.producers.values() for rule in rules]
