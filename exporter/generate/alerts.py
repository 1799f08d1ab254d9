"""Quality alerts: degradation against the baseline, absolute thresholds, SLO burn rates.

Why the defaults look the way they do. tests/test_generate_promtool.py proves each case with
promtool on fixed seeds; the rates below come from a Monte Carlo of the same arithmetic over
100 seeds per case (Poisson arrivals, skewed score distributions, diurnal traffic):

* Degradation compares a recent window's mean with the mean of the 24 hours before the
  current hour. It needs all three of: a practical size (``min_delta``, in the dimension's
  units), significance (a z-score whose standard error comes from the *baseline's* spread,
  floored by ``min_stddev`` because a handful of 0/1 or 1-5 scores is far from normal) and a
  minimum number of scored conversations.
* A window's mean cannot tell a ten-minute dip from the first ten minutes of a lasting drop;
  only time can. The ``fast`` tier therefore watches 3m windows and asks that the drop hold
  for 12 minutes: at ~20 scored conversations a minute a 0.6 standard-deviation drop pages
  in 14 minutes (median; 90% within 15), a 10-minute dip of the same size pages 2% of the
  time, a 10-minute dip of 1 standard deviation 10%. Deeper dips page, as incidents should.
* Low traffic (one conversation every few minutes) leaves a 3m window nearly empty; the
  ``sharp`` tier reads 30m windows and, to stay quiet on noise, asks for twice ``min_delta``
  and a z-score of 4. A clear drop (0.8 to ~0.35) of an agent scored every 2.5 minutes pages
  in 21 minutes (median; 90% within 30).
* The ``sustained`` tier (1h windows, a ticket) catches drifts: 0.2 over 12 hours on a 0-1
  scale is reported after about 4 hours (and paged by ``fast`` at about 4.5).
* Stationary traffic over two days: no page from ``fast``; ``sharp`` pages 0-2% of quiet
  agents per dimension (skewed 1-5 and 0/1 scores); ``sustained`` tickets 0-2%.
* Absolute thresholds fire when even the optimistic end of the current mean's confidence
  interval is past the level, so a quiet agent's noisy hour does not cross 0.7 by chance.
* Quality SLOs use the SRE workbook's multi-window, multi-burn-rate pairs, with a minimum of
  scored conversations in the long window; a threshold that a budget cannot reach
  (factor x budget > 1) becomes "every conversation bad".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType

from exporter.config.alerting import AlertingConfig, BurnRate, DegradationTier
from exporter.config.model import Config, Dimension
from exporter.generate.conventions import BASELINE, Alert, Record, window_name
from exporter.generate.model import AlertingRule
from exporter.generate.recording import selector, window_count

__all__ = ["quality_alerts"]

_BASELINE_MEAN = (
    "{{ with printf `" + Record.mean(BASELINE) + '{agent="%s",dimension="%s"}` '
    '$labels.agent $labels.dimension | query }}{{ . | first | value | printf "%.3g" }}'
    "{{ else }}unknown{{ end }}"
)


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


def _degraded(
    dimension: Dimension, tier: DegradationTier, alerting: AlertingConfig
) -> AlertingRule:
    match, suffix = selector(dimension), window_name(tier.window)
    delta = dimension.alerting.min_delta * tier.min_delta_factor
    direction = "below" if dimension.higher_is_better else "above"
    return AlertingRule(
        alert=Alert.DEGRADED,
        # The value is the window's mean, so the description can print it.
        expr=(
            f"{Record.mean(suffix)}{match}\n"
            f"and {Record.degradation(suffix)}{match} >= {delta:.6g}\n"
            f"and {Record.zscore(suffix)}{match} >= {tier.min_zscore:.6g}\n"
            f"and {Record.count(suffix)}{match} >= {tier.min_samples}"
        ),
        for_=tier.for_,
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
                    f"{delta:.6g}, significantly (z >= {tier.min_zscore:g}), for "
                    f"{window_name(tier.for_) if tier.for_ else 'now'}."
                ),
                **_links(alerting, Alert.DEGRADED),
            }
        ),
    )


def _threshold(
    dimension: Dimension, level: str, value: float, alerting: AlertingConfig
) -> AlertingRule:
    settings, suffix = alerting.absolute, window_name(alerting.current_window)
    match = selector(dimension)
    error = (
        f"{settings.confidence_zscore:.6g} * clamp_min({Record.stddev(suffix)}{match}, "
        f"{dimension.alerting.min_stddev!r}) / sqrt({Record.count(suffix)}{match})"
    )
    past = (
        f"{Record.mean(suffix)}{match} + {error} < {value!r}"
        if dimension.higher_is_better
        else f"{Record.mean(suffix)}{match} - {error} > {value!r}"
    )
    direction = "below" if dimension.higher_is_better else "above"
    return AlertingRule(
        alert=Alert.THRESHOLD,
        expr=(
            f"{Record.mean(suffix)}{match}\nand ({past})\n"
            f"and {Record.count(suffix)}{match} >= {settings.min_samples}"
        ),
        for_=settings.for_,
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
                    f"the {level} level {value:g} (baseline {_BASELINE_MEAN})."
                ),
                **_links(alerting, Alert.THRESHOLD),
            }
        ),
    )


def _burn_condition(dimension: Dimension, burn: BurnRate, alerting: AlertingConfig) -> str:
    objective = dimension.alerting.objective
    assert objective is not None  # callers only pass dimensions with an SLO
    # A factor the budget cannot reach (14.4 x a 10% budget) becomes "every conversation bad".
    ratio = min(burn.factor * (1 - objective), 1.0)
    match = selector(dimension)
    long, short = window_name(burn.long_window), window_name(burn.short_window)
    count = window_count(burn.long_window, dimension, alerting)
    return (
        f"(\n  {Record.error_ratio(long)}{match} >= {ratio:.6g}\n"
        f"  and {Record.error_ratio(short)}{match} >= {ratio:.6g}\n"
        f"  and {count} >= {burn.min_samples}\n)"
    )


def _burn_alerts(dimension: Dimension, alerting: AlertingConfig) -> Iterator[AlertingRule]:
    if dimension.alerting.objective is None or dimension.thresholds.bad is None:
        return
    objective = dimension.alerting.objective
    for severity in ("critical", "warning"):
        burns = [burn for burn in alerting.burn_rates if burn.severity == severity]
        if not burns:
            continue
        longest = window_name(max(burn.long_window for burn in burns))
        conditions = "\nor\n".join(_burn_condition(dimension, burn, alerting) for burn in burns)
        yield AlertingRule(
            alert=Alert.BURN,
            # The value is the error ratio over the longest window of the alert's pairs.
            expr=(
                f"{Record.error_ratio(longest)}{selector(dimension)}\nand on (agent, dimension)\n"
                f"(\n{conditions}\n)"
            ),
            for_=0.0,  # the short window already confirms it is still burning
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
                        f"{dimension.name} score; the objective allows "
                        f"{1 - objective:.4g}."
                    ),
                    **_links(alerting, Alert.BURN, "{{ $value | humanizePercentage }}"),
                }
            ),
        )


def quality_alerts(config: Config, alerting: AlertingConfig) -> tuple[AlertingRule, ...]:
    """Return every per-dimension alert for ``config``."""
    rules: list[AlertingRule] = []
    for dimension in config.dimensions:
        rules.extend(_degraded(dimension, tier, alerting) for tier in alerting.degradation)
        for level in ("critical", "warning"):
            value = getattr(dimension.thresholds, level)
            if value is not None:
                rules.append(_threshold(dimension, level, value, alerting))
        rules.extend(_burn_alerts(dimension, alerting))
    return tuple(rules)
