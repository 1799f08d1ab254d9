"""Recording rules: per-window counts, means, spreads, the baseline, degradation and SLO ratios.

Every rule sums ``by (agent, dimension)`` over the raw counters first, so any number of
daemon replicas (each with its own counters) add up before a mean or ratio is taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from exporter.config.alerting import AlertingConfig
from exporter.config.model import Config, Dimension
from exporter.generate.conventions import (
    BASELINE,
    DASHBOARD_WINDOWS,
    SCORE,
    Group,
    Record,
    le_value,
    window_name,
)
from exporter.generate.model import RecordingRule, RuleGroup

__all__ = ["recorded_windows", "recording_groups", "selector", "slo_windows"]

BY = "sum by (agent, dimension)"


def selector(dimension: Dimension) -> str:
    """Return the label matcher of one dimension's series."""
    return f'{{dimension="{dimension.name}"}}'


def _labels(dimension: Dimension, **extra: str) -> Mapping[str, str]:
    """Static labels of a per-dimension rule.

    ``dimension`` repeats what the expression yields; it tells readers (and promtool's
    duplicate-rule lint) that the rules of several dimensions under one name are distinct.
    """
    return MappingProxyType({"dimension": dimension.name, **extra})


def recorded_windows(alerting: AlertingConfig) -> tuple[float, ...]:
    """Return every window that gets count/mean/stddev rules, shortest first."""
    tiers = (tier.window for tier in alerting.degradation)
    return tuple(sorted({*DASHBOARD_WINDOWS, alerting.current_window, *tiers}))


def slo_windows(alerting: AlertingConfig) -> tuple[float, ...]:
    """Return every window a burn-rate alert reads, shortest first."""
    pairs = ((burn.long_window, burn.short_window) for burn in alerting.burn_rates)
    return tuple(sorted({window for pair in pairs for window in pair}))


def _moments(suffix: str, range_: str) -> list[RecordingRule]:
    """Return count, mean and standard deviation rules over ``range_`` (``[5m]``)."""
    count, mean = Record.count(suffix), Record.mean(suffix)
    return [
        RecordingRule(count, f"{BY} (increase({SCORE}_count{range_}))"),
        RecordingRule(mean, f"{BY} (increase({SCORE}_sum{range_}))\n/\n({count} > 0)"),
        RecordingRule(
            Record.stddev(suffix),
            # E[x^2] - E[x]^2 can dip a hair below zero in floating point: clamp before sqrt.
            f"sqrt(clamp_min(\n  {BY} (increase({SCORE}_squares_total{range_}))\n"
            f"  / ({count} > 0)\n  - {mean} ^ 2,\n  0\n))",
        ),
    ]


def _dimension_rules(dimension: Dimension, alerting: AlertingConfig) -> list[RecordingRule]:
    """Thresholds as series, and each degradation window's drop and its z-score."""
    match = selector(dimension)
    rules = [
        RecordingRule(Record.THRESHOLD, f"vector({value!r})", _labels(dimension, threshold=level))
        for level, value in _levels(dimension)
    ]
    base_mean, base_count = Record.mean(BASELINE), Record.count(BASELINE)
    floor = dimension.alerting.min_stddev
    for window in sorted({tier.window for tier in alerting.degradation}):
        suffix = window_name(window)
        mean, count = Record.mean(suffix), Record.count(suffix)
        worse = (
            f"{base_mean}{match} - {mean}{match}"
            if dimension.higher_is_better
            else f"{mean}{match} - {base_mean}{match}"
        )
        rules.append(RecordingRule(Record.degradation(suffix), worse, _labels(dimension)))
        rules.append(
            RecordingRule(
                Record.zscore(suffix),
                # The standard error under "nothing changed": the baseline's spread (floored,
                # so identical or rare 0/1 scores are not infinitely significant) over both
                # sample sizes.
                f"{Record.degradation(suffix)}{match}\n/ (\n"
                f"  clamp_min({Record.stddev(BASELINE)}{match}, {floor!r})\n"
                f"  * sqrt(1 / {count}{match} + 1 / {base_count}{match})\n)",
                _labels(dimension),
            )
        )
    for window in DASHBOARD_WINDOWS:
        rules.extend(_past_threshold(dimension, window_name(window)))
    return rules


def _levels(dimension: Dimension) -> list[tuple[str, float]]:
    levels = dimension.thresholds
    pairs = (("bad", levels.bad), ("warning", levels.warning), ("critical", levels.critical))
    return [(name, value) for name, value in pairs if value is not None]


def _past_share(dimension: Dimension, value: float, range_: str, count: str) -> str:
    """Share past ``value``: the ``le`` bucket at it, counted from the bad side."""
    bucket = (
        f'{BY} (increase({SCORE}_bucket{{dimension="{dimension.name}", '
        f'le="{le_value(value)}"}}{range_}))'
    )
    if dimension.higher_is_better:
        return f"{bucket}\n/\n({count} > 0)"
    return f"1 - (\n  {bucket}\n  /\n  ({count} > 0)\n)"


def _past_threshold(dimension: Dimension, suffix: str) -> list[RecordingRule]:
    count = f"{Record.count(suffix)}{selector(dimension)}"
    return [
        RecordingRule(
            Record.past_threshold(suffix),
            _past_share(dimension, value, f"[{suffix}]", count),
            _labels(dimension, threshold=level),
        )
        for level, value in _levels(dimension)
    ]


def _slo_rules(dimension: Dimension, alerting: AlertingConfig) -> list[RecordingRule]:
    objective, bad = dimension.alerting.objective, dimension.thresholds.bad
    if objective is None or bad is None:
        return []
    rules = [RecordingRule(Record.OBJECTIVE, f"vector({objective!r})", _labels(dimension))]
    budget = 1 - objective
    for window in slo_windows(alerting):
        suffix = window_name(window)
        count = f'{BY} (increase({SCORE}_count{{dimension="{dimension.name}"}}[{suffix}]))'
        rules.append(
            RecordingRule(
                Record.error_ratio(suffix),
                _past_share(dimension, bad, f"[{suffix}]", count),
                _labels(dimension),
            )
        )
        rules.append(
            RecordingRule(
                Record.burn_rate(suffix),
                f"{Record.error_ratio(suffix)}{selector(dimension)} / {budget:.6g}",
                _labels(dimension),
            )
        )
    return rules


def recording_groups(config: Config, alerting: AlertingConfig) -> tuple[RuleGroup, ...]:
    """Return the recording rule groups for ``config``."""
    rules: list[RecordingRule] = []
    for window in recorded_windows(alerting):
        suffix = window_name(window)
        rules.extend(_moments(suffix, f"[{suffix}]"))
    # The baseline ends where the current window starts, so a drop does not dilute it.
    baseline = (
        f"[{window_name(alerting.baseline_window)}] offset {window_name(alerting.current_window)}"
    )
    rules.extend(_moments(BASELINE, baseline))
    for dimension in config.dimensions:
        rules.extend(_dimension_rules(dimension, alerting))
    slo = [rule for dimension in config.dimensions for rule in _slo_rules(dimension, alerting)]
    groups = [RuleGroup(Group.WINDOWS, tuple(rules))]
    if slo:
        groups.append(RuleGroup(Group.SLO, tuple(slo)))
    return tuple(groups)
