"""Quality alerts: degradation against the baseline, absolute thresholds, SLO burn rates.

docs/alerting.md explains the design and its evidence; exporter/generate/timing.py derives the
windows and holds. Every alert here reads recording rules of its own dimension's group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType

from exporter.config.alerting import AlertingConfig
from exporter.config.duration import format_duration
from exporter.config.model import Dimension
from exporter.generate.conventions import BASELINE, Alert, Record, window_name
from exporter.generate.model import AlertingRule
from exporter.generate.recording import matcher, reads_for, window_count
from exporter.generate.timing import (
    BURN_ZSCORE,
    EDGE_ZSCORE,
    HOLD_END_ZSCORE,
    BurnTiming,
    Persistence,
    TierTiming,
    Timing,
)

__all__ = ["bad_share", "quality_alerts"]

_BASELINE_MEAN = (
    "{{ with printf `" + Record.mean(BASELINE) + '{agent="%s",dimension="%s"}` '
    '$labels.agent $labels.dimension | query }}{{ . | first | value | printf "%.3g" }}'
    "{{ else }}unknown{{ end }}"
)


def bad_share(factor: float, objective: float) -> float:
    """Return the share of bad conversations a burn-rate pair fires at: factor x budget."""
    return factor * (1 - objective)


def _duration(seconds: float) -> str:
    return format_duration(seconds) if seconds else "0s"


def _links(alerting: AlertingConfig, alert: str, value: str = "%.3g") -> dict[str, str]:
    """Return the value, runbook and dashboard annotations every quality alert carries."""
    dashboard = (
        f"{alerting.dashboard_url}?var-agent={{{{ $labels.agent }}}}"
        "&var-dimension={{ $labels.dimension }}"
    )
    shown = f'{{{{ $value | printf "{value}" }}}}' if value.startswith("%") else value
    return {
        "value": shown,
        "runbook_url": f"{alerting.runbook_url}#{alert.lower()}",
        "dashboard_url": dashboard,
    }


def _labels(alerting: AlertingConfig, dimension: str, **labels: str) -> Mapping[str, str]:
    # `dimension` repeats the expression's label: it keeps the rules of several dimensions
    # distinct for readers and for promtool's duplicate-rule lint.
    return MappingProxyType({**alerting.extra_labels, "dimension": dimension, **labels})


def _edge_condition(persistence: Persistence, test: Callable[[str, str], str]) -> str:
    """Return ``test(edge, offset)`` on the window's last edge and, offset back, its first."""
    if persistence.edge is None:
        return ""
    edge = window_name(persistence.edge)
    earlier = f" offset {window_name(persistence.window - persistence.edge)}"
    return f"\nand {test(edge, '')}\nand {test(edge, earlier)}"


def _held(persistence: Persistence) -> str:
    """Describe how the alert proves the drop has lasted, for the description."""
    if persistence.held:
        return f"for {_duration(persistence.for_)}, and now at z >= {HOLD_END_ZSCORE:g}"
    if persistence.edge is None:
        return f"for {_duration(persistence.for_)}"
    edge = window_name(persistence.edge)
    held = f", for {_duration(persistence.for_)}" if persistence.for_ else ""
    return f"in its first and last {edge} too{held}"


def _hold(persistence: Persistence, name: str, match: str, tier: str, scrape: float) -> str:
    """Return the count of evaluations in a row a held tier's condition needs, if it is held."""
    if not persistence.held:
        return ""
    # Half an interval more than the hold: the same evaluations whether the range includes
    # its start (Prometheus 2) or not (3).
    seconds = persistence.for_ + scrape / 2
    span = window_name(seconds) if seconds == int(seconds) else f"{round(seconds * 1000)}ms"
    series = f'{name}{{dimension="{match}", tier="{tier}"}}'
    return (
        f"\nand on (agent, dimension) count_over_time({series}[{span}]) "
        f">= {persistence.evaluations(scrape)}"
    )


def _degraded(
    dimension: Dimension, timed: TierTiming, alerting: AlertingConfig, scrape: float
) -> AlertingRule:
    tier, persistence = timed.tier, timed.persistence
    match, suffix = matcher(dimension), window_name(timed.window)
    delta = dimension.alerting.min_delta * tier.min_delta_factor
    direction = "below" if dimension.higher_is_better else "above"
    zscore = max(tier.min_zscore, HOLD_END_ZSCORE) if persistence.held else tier.min_zscore
    held = _hold(persistence, Record.held(suffix), dimension.name, tier.name, scrape)
    edges = _edge_condition(
        persistence,
        lambda edge, shift: (
            f"{Record.degradation(edge)}{match}{shift} >= {delta:.6g}\n"
            f"and {Record.zscore(edge)}{match}{shift} >= {EDGE_ZSCORE:g}"
        ),
    )
    return AlertingRule(
        alert=Alert.DEGRADED,
        # The value is the window's mean, so the description can print it.
        expr=(
            f"{Record.mean(suffix)}{match}\n"
            f"and {Record.degradation(suffix)}{match} >= {delta:.6g}\n"
            f"and {Record.zscore(suffix)}{match} >= {zscore:.6g}\n"
            f"and {Record.count(suffix)}{match} >= {tier.min_samples}"
            f"{edges}{held}"
        ),
        for_=0.0 if persistence.held else persistence.for_,
        labels=_labels(
            alerting, dimension.name, severity=tier.severity, tier=tier.name, window=suffix
        ),
        annotations=MappingProxyType(
            {
                "summary": (
                    f"{{{{ $labels.agent }}}}: {dimension.name} degraded ({tier.name}, "
                    f"{suffix} window)"
                ),
                "description": (
                    f"The mean {dimension.name} score of agent {{{{ $labels.agent }}}} over the "
                    f'last {suffix} is {{{{ $value | printf "%.3g" }}}}, {direction} its '
                    f"baseline of {_BASELINE_MEAN} (the {window_name(alerting.baseline_window)} "
                    f"before the last {window_name(alerting.current_window)}) by at least "
                    f"{delta:.6g}, significantly (z >= {tier.min_zscore:g}), "
                    f"{_held(persistence)}."
                ),
                **_links(alerting, Alert.DEGRADED),
            }
        ),
    )


def _threshold(
    dimension: Dimension, level: str, value: float, alerting: AlertingConfig, timing: Timing
) -> AlertingRule:
    settings, suffix = alerting.absolute, window_name(alerting.current_window)
    match, persistence = matcher(dimension), timing.absolute
    worse = "<" if dimension.higher_is_better else ">"
    sign = "+" if dimension.higher_is_better else "-"

    def past(window: str, shift: str = "") -> str:
        # The optimistic end of the window's confidence interval, still past the level.
        error = (
            f"{settings.confidence_zscore:.6g} * clamp_min({Record.stddev(window)}{match}{shift}, "
            f"{dimension.alerting.min_stddev!r}) / sqrt({Record.count(window)}{match}{shift})"
        )
        return f"({Record.mean(window)}{match}{shift} {sign} {error} {worse} {value!r})"

    edges = _edge_condition(persistence, past)
    direction = "below" if dimension.higher_is_better else "above"
    return AlertingRule(
        alert=Alert.THRESHOLD,
        expr=(
            f"{Record.mean(suffix)}{match}\nand {past(suffix)}\n"
            f"and {Record.count(suffix)}{match} >= {settings.min_samples}"
            f"{edges}"
        ),
        for_=persistence.for_,
        labels=_labels(alerting, dimension.name, severity=level),
        annotations=MappingProxyType(
            {
                "summary": (
                    f"{{{{ $labels.agent }}}}: mean {dimension.name} {direction} its "
                    f"{level} level {value:g}"
                ),
                "description": (
                    f"The mean {dimension.name} score of agent {{{{ $labels.agent }}}} over the "
                    f'last {suffix} is {{{{ $value | printf "%.3g" }}}}, confidently {direction} '
                    f"the {level} level {value:g} (baseline {_BASELINE_MEAN}), "
                    f"{_held(persistence)}."
                ),
                **_links(alerting, Alert.THRESHOLD),
            }
        ),
    )


def _burn_condition(
    dimension: Dimension, timed: BurnTiming, alerting: AlertingConfig, timing: Timing
) -> str:
    objective = dimension.alerting.objective
    assert objective is not None  # callers only pass dimensions with an SLO
    share = bad_share(timed.burn.factor, objective)  # check-config keeps it below 1
    budget = 1 - objective
    match = matcher(dimension)
    long, short = window_name(timed.long_window), window_name(timed.short_window)
    count = window_count(timed.long_window, reads_for(dimension, alerting, timing))

    def burning(shift: str) -> str:
        # Past the pair's share, and significantly past the budget on its own scores.
        ratio, scored = Record.error_ratio(short), Record.count(short)
        spread = f"{BURN_ZSCORE:g} * sqrt({budget * (1 - budget):.6g} / {scored}{match}{shift})"
        return (
            f"  and {ratio}{match}{shift} >= {share:.6g}\n"
            f"  and {ratio}{match}{shift} - {spread} >= {budget:.6g}\n"
        )

    earlier = burning(f" offset {window_name(timed.gap)}") if timed.gap else ""
    return (
        f"(\n  {Record.error_ratio(long)}{match} >= {share:.6g}\n"
        f"{burning('')}{earlier}"
        f"  and {count} >= {timed.burn.min_samples}\n)"
    )


def _burn_alerts(
    dimension: Dimension, alerting: AlertingConfig, timing: Timing
) -> Iterator[AlertingRule]:
    objective = dimension.alerting.objective
    if objective is None or dimension.thresholds.bad is None:
        return
    for severity in ("critical", "warning"):
        pairs = [timed for timed in timing.burns if timed.burn.severity == severity]
        if not pairs:
            continue
        longest = window_name(max(timed.long_window for timed in pairs))
        conditions = "\nor\n".join(
            _burn_condition(dimension, timed, alerting, timing) for timed in pairs
        )
        shares = ", ".join(
            f"{bad_share(timed.burn.factor, objective):.3g} over {window_name(timed.long_window)}"
            for timed in pairs
        )
        yield AlertingRule(
            alert=Alert.BURN,
            # The value is the error ratio over the longest window of the alert's pairs.
            expr=(
                f"{Record.error_ratio(longest)}{matcher(dimension)}\nand on (agent, dimension)\n"
                f"(\n{conditions}\n)"
            ),
            for_=0.0,  # the short windows, now and earlier, already show it lasting
            # A burn near the tier's share wavers across it minute by minute (short windows,
            # a significance test): one page per burn, resolved once it stayed off this long.
            keep_firing_for=timing.min_duration,
            labels=_labels(alerting, dimension.name, severity=severity),
            annotations=MappingProxyType(
                {
                    "summary": (
                        f"{{{{ $labels.agent }}}}: {dimension.name} quality SLO "
                        f"({objective:.4g} not bad) burning its error budget"
                    ),
                    "description": (
                        f"{{{{ $value | humanizePercentage }}}} of agent {{{{ $labels.agent }}}}'s "
                        f"scored conversations over the last {longest} had a bad "
                        f"{dimension.name} score; the objective allows {1 - objective:.4g}, "
                        f"and this alert fires at a bad share of {shares}."
                    ),
                    **_links(alerting, Alert.BURN, "{{ $value | humanizePercentage }}"),
                }
            ),
        )


def quality_alerts(
    dimension: Dimension, alerting: AlertingConfig, timing: Timing
) -> tuple[AlertingRule, ...]:
    """Return one dimension's alerts."""
    rules = [_degraded(dimension, timed, alerting, timing.scrape) for timed in timing.tiers]
    for level in ("critical", "warning"):
        value = getattr(dimension.thresholds, level)
        if value is not None:
            rules.append(_threshold(dimension, level, value, alerting, timing))
    rules.extend(_burn_alerts(dimension, alerting, timing))
    return tuple(rules)
