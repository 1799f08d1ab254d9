"""Recording rules of one dimension: windowed moments, the baseline, drops and SLO ratios.

Every rule sums ``by (agent, dimension)`` over the raw counters first, so any number of
daemon replicas (each with its own counters) add up before a mean or ratio is taken, and
every raw selector carries ``job`` from ``alerting.job``, so other jobs of a shared
Prometheus never mix in. Windows of a day or more are added up from recorded hourly (or
shorter) increases through a subquery instead of reading every raw sample again at each
evaluation: 24 points instead of 5,760 at a 15s scrape interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from exporter.config.alerting import AlertingConfig
from exporter.config.model import Dimension
from exporter.generate.conventions import BASELINE, SCORE, Record, le_value, window_name
from exporter.generate.model import RecordingRule
from exporter.generate.timing import HOUR, Timing

__all__ = ["dimension_recording", "matcher", "raw_selector", "reads_for", "window_count"]

BY = "sum by (agent, dimension)"

Range = Callable[[str], str]


def matcher(dimension: Dimension) -> str:
    """Return the label matcher of one dimension's recorded series."""
    return f'{{dimension="{dimension.name}"}}'


def raw_selector(dimension: Dimension, job: str, **extra: str) -> str:
    """Return the label matcher of one dimension's raw series, scoped to the exporter's job."""
    pairs = {"job": job, "dimension": dimension.name, **extra}
    return "{" + ", ".join(f'{key}="{value}"' for key, value in pairs.items()) + "}"


def _labels(dimension: Dimension, **extra: str) -> Mapping[str, str]:
    """Static labels of a per-dimension rule.

    ``dimension`` repeats what the expression yields; it tells readers (and promtool's
    duplicate-rule lint) that the rules of several dimensions under one name are distinct.
    """
    return MappingProxyType({"dimension": dimension.name, **extra})


def _step(window: float, timing: Timing) -> float | None:
    """Return the recorded window to add ``window`` up from, or None to read raw samples."""
    if window >= 12 * HOUR and window % HOUR == 0:
        return HOUR
    if window > HOUR and window % timing.step == 0:
        return timing.step
    return None


class _Reads:
    """How one dimension's rules read raw counters and their own recorded increases."""

    def __init__(self, dimension: Dimension, alerting: AlertingConfig, timing: Timing) -> None:
        self.dimension = dimension
        self.job = alerting.job
        self.timing = timing
        self.match = matcher(dimension)

    def increase(self, metric: str, **extra: str) -> Range:
        selector = raw_selector(self.dimension, self.job, **extra)
        return lambda range_: f"{BY} (increase({metric}{selector}{range_}))"

    def recorded(self, name: Callable[[str], str]) -> Callable[[str], str]:
        return lambda step: f"{name(step)}{self.match}"

    def total(
        self, window: float, offset: str, *, raw: Range, recorded: Callable[[str], str]
    ) -> str:
        """Return the increase over ``window`` ending ``offset`` ago (``""``: now)."""
        suffix, shift = window_name(window), f" offset {offset}" if offset else ""
        step = _step(window, self.timing)
        if step is None:
            return raw(f"[{suffix}]{shift}")
        return f"sum_over_time({recorded(window_name(step))}[{suffix}:{window_name(step)}]{shift})"

    def past(self, value: float, range_: str) -> str:
        """Return how many scored conversations are past ``value``: from its ``le`` bucket."""
        bucket = self.increase(f"{SCORE}_bucket", le=le_value(value))(range_)
        if self.dimension.higher_is_better:
            return bucket
        return f"{self.increase(f'{SCORE}_count')(range_)}\n- {bucket}"


def window_count(window: float, reads: _Reads) -> str:
    """Return an expression for the dimension's scored conversations over ``window``."""
    if window in reads.timing.moment_windows():
        return f"{Record.count(window_name(window))}{reads.match}"
    return reads.total(
        window,
        "",
        raw=reads.increase(f"{SCORE}_count"),
        recorded=reads.recorded(Record.count),
    )


def _moments(reads: _Reads, suffix: str, window: float, offset: str = "") -> list[RecordingRule]:
    """Return count, sum, squares, mean and standard deviation over one window."""
    count, total, squares = Record.count(suffix), Record.sum(suffix), Record.squares(suffix)
    mean, match, labels = Record.mean(suffix), reads.match, _labels(reads.dimension)
    raws = (f"{SCORE}_count", f"{SCORE}_sum", f"{SCORE}_squares_total")
    names = (Record.count, Record.sum, Record.squares)
    rules = [
        RecordingRule(
            name(suffix),
            reads.total(window, offset, raw=reads.increase(raw), recorded=reads.recorded(name)),
            labels,
        )
        for raw, name in zip(raws, names, strict=True)
    ]
    rules.append(RecordingRule(mean, f"{total}{match} / ({count}{match} > 0)", labels))
    rules.append(
        RecordingRule(
            Record.stddev(suffix),
            # E[x^2] - E[x]^2 can dip a hair below zero in floating point: clamp before sqrt.
            f"sqrt(clamp_min({squares}{match} / ({count}{match} > 0) - {mean}{match} ^ 2, 0))",
            labels,
        )
    )
    return rules


def _levels(dimension: Dimension) -> list[tuple[str, float]]:
    levels = dimension.thresholds
    pairs = (("bad", levels.bad), ("warning", levels.warning), ("critical", levels.critical))
    return [(name, value) for name, value in pairs if value is not None]


def _shares(reads: _Reads) -> list[RecordingRule]:
    """Thresholds as series and the shares of conversations past them, for the dashboards."""
    dimension, match = reads.dimension, reads.match
    rules = [
        RecordingRule(Record.THRESHOLD, f"vector({value!r})", _labels(dimension, threshold=level))
        for level, value in _levels(dimension)
    ]
    for window in reads.timing.dashboard:
        suffix = window_name(window)
        rules.extend(
            RecordingRule(
                Record.past_threshold(suffix),
                f"(\n  {reads.past(value, f'[{suffix}]')}\n)\n"
                f"/ ({Record.count(suffix)}{match} > 0)",
                _labels(dimension, threshold=level),
            )
            for level, value in _levels(dimension)
        )
    return rules


def _drops(reads: _Reads) -> list[RecordingRule]:
    """Each degradation window's (and edge's) drop against the baseline, and its z-score."""
    dimension, match, timing = reads.dimension, reads.match, reads.timing
    base_mean, base_count = Record.mean(BASELINE), Record.count(BASELINE)
    floor = dimension.alerting.min_stddev
    rules = []
    for window in timing.degradation_windows():
        suffix = window_name(window)
        mean = Record.mean(suffix)
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
                f"  * sqrt(1 / {Record.count(suffix)}{match} + 1 / {base_count}{match})\n)",
                _labels(dimension),
            )
        )
    return rules


def _held(reads: _Reads) -> list[RecordingRule]:
    """Each held tier's condition, recorded so its alert can count how long it held."""
    dimension, match = reads.dimension, reads.match
    rules = []
    for timed in reads.timing.tiers:
        if not timed.persistence.held:
            continue
        tier, suffix = timed.tier, window_name(timed.window)
        delta = dimension.alerting.min_delta * tier.min_delta_factor
        rules.append(
            RecordingRule(
                Record.held(suffix),
                f"{Record.degradation(suffix)}{match} >= {delta:.6g}\n"
                f"and {Record.zscore(suffix)}{match} >= {tier.min_zscore:.6g}\n"
                f"and {Record.count(suffix)}{match} >= {tier.min_samples}",
                _labels(dimension, tier=tier.name),
            )
        )
    return rules


def _slo(reads: _Reads) -> list[RecordingRule]:
    """The objective, bad counts to add up, and each burn-rate window's error ratio."""
    dimension, match, timing = reads.dimension, reads.match, reads.timing
    objective, bad = dimension.alerting.objective, dimension.thresholds.bad
    if objective is None or bad is None or not timing.burns:
        return []
    rules = [RecordingRule(Record.OBJECTIVE, f"vector({objective!r})", _labels(dimension))]
    for window in sorted({timing.step, HOUR}):  # what longer windows are added up from
        suffix = window_name(window)
        rules.append(
            RecordingRule(Record.bad(suffix), reads.past(bad, f"[{suffix}]"), _labels(dimension))
        )
    budget = 1 - objective
    for window in timing.slo_windows():
        suffix = window_name(window)
        if window in (timing.step, HOUR):
            ratio = f"{Record.bad(suffix)}{match}\n/ ({Record.count(suffix)}{match} > 0)"
        else:
            bad_total = reads.total(
                window,
                "",
                raw=lambda range_: reads.past(bad, range_),
                recorded=reads.recorded(Record.bad),
            )
            ratio = f"(\n  {bad_total}\n)\n/ ({window_count(window, reads)} > 0)"
        rules.append(RecordingRule(Record.error_ratio(suffix), ratio, _labels(dimension)))
        rules.append(
            RecordingRule(
                Record.burn_rate(suffix),
                f"{Record.error_ratio(suffix)}{match} / {budget:.6g}",
                _labels(dimension),
            )
        )
    return rules


def dimension_recording(
    dimension: Dimension, alerting: AlertingConfig, timing: Timing
) -> tuple[RecordingRule, ...]:
    """Return one dimension's recording rules, each after every rule it reads."""
    reads = _Reads(dimension, alerting, timing)
    rules: list[RecordingRule] = []
    for window in timing.moment_windows():
        rules.extend(_moments(reads, window_name(window), window))
    # The baseline ends where the current window starts, so a drop does not dilute it.
    current = window_name(alerting.current_window)
    rules.extend(_moments(reads, BASELINE, alerting.baseline_window, current))
    rules.extend(_shares(reads))
    rules.extend(_drops(reads))
    rules.extend(_held(reads))
    rules.extend(_slo(reads))
    return tuple(rules)


def reads_for(dimension: Dimension, alerting: AlertingConfig, timing: Timing) -> _Reads:
    """Return the reader alerts use to count a dimension's conversations over any window."""
    return _Reads(dimension, alerting, timing)
