"""Threshold colors from the config: each panel turns orange or red where the alerts would."""

from __future__ import annotations

from exporter.config.alerting import AlertingConfig, DegradationTier
from exporter.config.model import Dimension
from exporter.generate.grafana._kit import Step

__all__ = [
    "BUDGET_STEPS",
    "burn_steps",
    "drop_steps",
    "mean_steps",
    "share_steps",
    "zscore_steps",
]

#: Alert severities as Grafana's named colors.
COLORS = {"critical": "red", "warning": "orange"}
GOOD, NEUTRAL = "green", "blue"

#: Error budget left: spent is red, the last quarter orange.
BUDGET_STEPS: tuple[Step, ...] = ((None, "red"), (0.0, "orange"), (0.25, GOOD))


def mean_steps(dimension: Dimension) -> tuple[Step, ...]:
    """Color a mean by the dimension's warning/critical levels (neutral without any)."""
    levels = sorted(
        (value, severity)
        for severity, value in (
            ("critical", dimension.thresholds.critical),
            ("warning", dimension.thresholds.warning),
        )
        if value is not None
    )
    if not levels:
        return ((None, NEUTRAL),)
    if dimension.higher_is_better:
        # Below the lowest level is worst; each level reached hands over to the next color.
        colors = [COLORS[severity] for _, severity in levels] + [GOOD]
        return ((None, colors[0]), *((value, colors[i + 1]) for i, (value, _) in enumerate(levels)))
    return ((None, GOOD), *((value, COLORS[severity]) for value, severity in levels))


def share_steps(dimension: Dimension) -> tuple[Step, ...]:
    """Color the share of bad conversations red past the SLO's error budget."""
    objective = dimension.alerting.objective
    if objective is None:
        return ((None, NEUTRAL),)
    return ((None, GOOD), (round(1 - objective, 10), "red"))


def burn_steps(dimension: Dimension | None, alerting: AlertingConfig) -> tuple[Step, ...]:
    """Color a burn rate at the configured factors, as the burn-rate alerts see them.

    check-config keeps every factor reachable (factor x budget below 1), so they apply as set.
    """
    if dimension is not None and dimension.alerting.objective is None:
        return ((None, NEUTRAL),)
    worst: dict[float, str] = {}
    for burn in alerting.burn_rates:
        factor = round(burn.factor, 6)
        if worst.get(factor) != "critical":
            worst[factor] = burn.severity
    return ((None, GOOD), *((factor, COLORS[worst[factor]]) for factor in sorted(worst)))


def drop_steps(dimension: Dimension, tier: DegradationTier) -> tuple[Step, ...]:
    """Color a drop against the baseline at the tier's practical size."""
    delta = round(dimension.alerting.min_delta * tier.min_delta_factor, 10)
    return ((None, GOOD), (delta, COLORS[tier.severity]))


def zscore_steps(tier: DegradationTier) -> tuple[Step, ...]:
    """Color a drop's z-score at the tier's significance level."""
    return ((None, GOOD), (tier.min_zscore, COLORS[tier.severity]))
