"""Recording rules: per-window counts, means, spreads, the baseline, degradation and SLO ratios.

Every rule sums ``by (agent, dimension)`` over the raw counters first, so any number of
daemon replicas (each with its own counters) add up before a mean or ratio is taken.
Windows of a day or more are added up from recorded hourly (or 5-minute) increases through a
subquery instead of reading every raw sample again at each evaluation: 24 points instead of
5,760 at a 15s scrape interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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

__all__ = ["recorded_windows", "recording_groups", "selector", "slo_windows", "window_count"]

BY = "sum by (agent, dimension)"
HOUR, FIVE_MINUTES = 3600.0, 300.0


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


def _step(window: float) -> float | None:
    """Return the recorded window to add ``window`` up from, or None to read raw samples."""
    if window >= 12 * HOUR and window % HOUR == 0:
        return HOUR
    if window > HOUR and window % FIVE_MINUTES == 0:
        return FIVE_MINUTES
    return None


def _total(
    window: float, offset: str, *, raw: Callable[[str], str], recorded: Callable[[str], str]
) -> str:
    """Return the increase over ``window`` ending ``offset`` ago (``""``: now)."""
    suffix, shift = window_name(window), f" offset {offset}" if offset else ""
    step = _step(window)
    if step is None:
        return raw(f"[{suffix}]{shift}")
    return f"sum_over_time({recorded(window_name(step))}[{suffix}:{window_name(step)}]{shift})"


def _increase(metric: str, matcher: str = "") -> Callable[[str], str]:
    return lambda range_: f"{BY} (increase({metric}{matcher}{range_}))"


def window_count(window: float, dimension: Dimension, alerting: AlertingConfig) -> str:
    """Return an expression for one dimension's scored conversations over ``window``."""
    match = selector(dimension)
    if window in recorded_windows(alerting):
        return f"{Record.count(window_name(window))}{match}"
    return _total(
        window,
        "",
        raw=_increase(f"{SCORE}_count", match),
        recorded=lambda step: f"{Record.count(step)}{match}",
    )


def _moments(suffix: str, window: float, offset: str = "") -> list[RecordingRule]:
    """Return count, sum, squares, mean and standard deviation over one window."""
    count, total, squares = Record.count(suffix), Record.sum(suffix), Record.squares(suffix)
    mean = Record.mean(suffix)
    return [
        RecordingRule(
            count,
            _total(window, offset, raw=_increase(f"{SCORE}_count"), recorded=Record.count),
        ),
        RecordingRule(
            total, _total(window, offset, raw=_increase(f"{SCORE}_sum"), recorded=Record.sum)
        ),
        RecordingRule(
            squares,
            _total(
                window, offset, raw=_increase(f"{SCORE}_squares_total"), recorded=Record.squares
            ),
        ),
        RecordingRule(mean, f"{total} / ({count} > 0)"),
        RecordingRule(
            Record.stddev(suffix),
            # E[x^2] - E[x]^2 can dip a hair below zero in floating point: clamp before sqrt.
            f"sqrt(clamp_min({squares} / ({count} > 0) - {mean} ^ 2, 0))",
        ),
    ]


def _levels(dimension: Dimension) -> list[tuple[str, float]]:
    levels = dimension.thresholds
    pairs = (("bad", levels.bad), ("warning", levels.warning), ("critical", levels.critical))
    return [(name, value) for name, value in pairs if value is not None]


def _past(dimension: Dimension, value: float, range_: str) -> str:
    """Return how many scored conversations are past ``value``: from its ``le`` bucket."""
    match = f'{{dimension="{dimension.name}", le="{le_value(value)}"}}'
    bucket = f"{BY} (increase({SCORE}_bucket{match}{range_}))"
    if dimension.higher_is_better:
        return bucket
    count = f"{BY} (increase({SCORE}_count{selector(dimension)}{range_}))"
    return f"{count}\n- {bucket}"


def _dimension_rules(dimension: Dimension, alerting: AlertingConfig) -> list[RecordingRule]:
    """Thresholds as series, shares past them, each degradation window's drop and z-score."""
    match = selector(dimension)
    rules = [
        RecordingRule(Record.THRESHOLD, f"vector({value!r})", _labels(dimension, threshold=level))
        for level, value in _levels(dimension)
    ]
    for window in DASHBOARD_WINDOWS:
        suffix = window_name(window)
        rules.extend(
            RecordingRule(
                Record.past_threshold(suffix),
                f"(\n  {_past(dimension, value, f'[{suffix}]')}\n)\n"
                f"/ ({Record.count(suffix)}{match} > 0)",
                _labels(dimension, threshold=level),
            )
            for level, value in _levels(dimension)
        )
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
    return rules


def _slo_rules(dimension: Dimension, alerting: AlertingConfig) -> list[RecordingRule]:
    objective, bad = dimension.alerting.objective, dimension.thresholds.bad
    if objective is None or bad is None:
        return []
    match = selector(dimension)
    rules = [RecordingRule(Record.OBJECTIVE, f"vector({objective!r})", _labels(dimension))]
    for window in (FIVE_MINUTES, HOUR):  # what longer windows are added up from
        suffix = window_name(window)
        rules.append(
            RecordingRule(
                Record.bad(suffix), _past(dimension, bad, f"[{suffix}]"), _labels(dimension)
            )
        )
    budget = 1 - objective
    for window in slo_windows(alerting):
        suffix = window_name(window)
        if window in (FIVE_MINUTES, HOUR):
            ratio = f"{Record.bad(suffix)}{match}\n/ ({Record.count(suffix)}{match} > 0)"
        else:
            bad_total = _total(
                window,
                "",
                raw=lambda range_: _past(dimension, bad, range_),
                recorded=lambda step: f"{Record.bad(step)}{match}",
            )
            count_total = _total(
                window,
                "",
                raw=_increase(f"{SCORE}_count", match),
                recorded=lambda step: f"{Record.count(step)}{match}",
            )
            ratio = f"(\n  {bad_total}\n)\n/ ({count_total} > 0)"
        rules.append(RecordingRule(Record.error_ratio(suffix), ratio, _labels(dimension)))
        rules.append(
            RecordingRule(
                Record.burn_rate(suffix),
                f"{Record.error_ratio(suffix)}{match} / {budget:.6g}",
                _labels(dimension),
            )
        )
    return rules


def recording_groups(config: Config, alerting: AlertingConfig) -> tuple[RuleGroup, ...]:
    """Return the recording rule groups for ``config``."""
    rules: list[RecordingRule] = []
    for window in recorded_windows(alerting):
        rules.extend(_moments(window_name(window), window))
    # The baseline ends where the current window starts, so a drop does not dilute it.
    rules.extend(_moments(BASELINE, alerting.baseline_window, window_name(alerting.current_window)))
    for dimension in config.dimensions:
        rules.extend(_dimension_rules(dimension, alerting))
    slo = [rule for dimension in config.dimensions for rule in _slo_rules(dimension, alerting)]
    groups = [RuleGroup(Group.WINDOWS, tuple(rules))]
    if slo:
        groups.append(RuleGroup(Group.SLO, tuple(slo)))
    return tuple(groups)
