"""The overview dashboard: every agent and dimension, quality first, then the exporter's health.

Quality panels carry one query per dimension (refId = the dimension's name) and an override
each, so every dimension is colored at its own configured levels in its own scale; the
``dimension`` variable narrows them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as board

from exporter.config.alerting import AlertingConfig
from exporter.config.model import Config, Dimension
from exporter.generate.conventions import Alert, Record, window_name
from exporter.generate.grafana import _levels as levels
from exporter.generate.grafana._common import (
    agent_link,
    agent_variable,
    dimension_variable,
    frame,
    runbook_link,
)
from exporter.generate.grafana._kit import (
    Panel,
    Step,
    Target,
    alert_annotation,
    fill,
    per_query,
    stat_panel,
    timeseries_panel,
    to_data,
)
from exporter.generate.grafana._operations import costs, scorers, traffic
from exporter.generate.grafana._queries import (
    EXPORTER_ALERTS,
    QUALITY_ALERTS,
    SLO_PERIOD,
    Windows,
    baseline_mean,
    budget_remaining,
    dimension_matcher,
    firing,
    series,
)
from exporter.names import OVERVIEW_UID

__all__ = ["overview"]

AGENTS, DIMENSIONS = 'agent=~"$agent"', 'dimension=~"$dimension"'
#: Grafana's custom-suffix unit: a burn rate of 2 reads "2" and a times sign.
TIMES = "suffix:\N{MULTIPLICATION SIGN}"


def _per_dimension(
    dimensions: Sequence[Dimension],
    expr: Callable[[Dimension], str | None],
    *,
    steps: Callable[[Dimension], Sequence[Step]] | None = None,
    scaled: bool = False,
    instant: bool = False,
) -> dict[str, Any]:
    """Return the targets and overrides of a panel showing ``expr`` for each dimension."""
    targets, overrides = [], []
    for dimension in dimensions:
        query = expr(dimension)
        if query is None:
            continue
        name = dimension.name
        targets.append(Target(query, ref=name, legend=f"{name} · {{{{agent}}}}", instant=instant))
        overrides.append(
            per_query(
                name,
                thresholds=None if steps is None else steps(dimension),
                min_=dimension.scale_min if scaled else None,
                max_=dimension.scale_max if scaled else None,
            )
        )
    return {"targets": targets, "overrides": overrides}


def _recorded(name: str, *extra: str) -> Callable[[Dimension], str]:
    return lambda d: series(name, AGENTS, DIMENSIONS, dimension_matcher(d), *extra)


def _quality(config: Config, alerting: AlertingConfig, windows: Windows) -> list[Panel]:
    dims, current = config.dimensions, windows.current
    panels: list[Panel] = [
        stat_panel(
            f"Mean score, last {current}",
            description=(
                f"Mean score of the conversations scored in the last {current}, in each "
                "dimension's own scale; orange/red past the dimension's warning/critical "
                "level. Click a tile for the agent's dashboard."
            ),
            unit="none",
            decimals=2,
            links=[agent_link()],
            **_per_dimension(
                dims, _recorded(Record.mean(current)), steps=levels.mean_steps, scaled=True
            ),
        ),
        stat_panel(
            "Baseline mean",
            description=(
                f"Mean score over the {window_name(alerting.baseline_window)} before the last "
                f"{current}: what normal looks like. Degradation alerts compare with it."
            ),
            unit="none",
            decimals=2,
            sparkline=False,
            **_per_dimension(
                dims, _recorded(baseline_mean()), steps=levels.mean_steps, scaled=True
            ),
        ),
    ]
    tier = windows.tier
    if tier is not None:
        window = windows.tier_window
        panels.append(
            stat_panel(
                f"Drop against the baseline, last {window}",
                description=(
                    f"Baseline mean minus the mean of the last {window} (for lower-is-better "
                    f"dimensions the other way round): positive is worse. Colored at the "
                    f"'{tier.name}' alert's minimum drop."
                ),
                unit="none",
                decimals=3,
                links=[runbook_link(alerting, Alert.DEGRADED)],
                **_per_dimension(
                    dims,
                    _recorded(Record.degradation(window)),
                    steps=lambda d: levels.drop_steps(d, tier),
                ),
            )
        )
        panels.append(
            stat_panel(
                f"Significance of the drop (z), last {window}",
                description=(
                    "The drop over its standard error (from the baseline's spread): above "
                    f"{tier.min_zscore:g} the '{tier.name}' alert considers it real, not noise."
                ),
                unit="none",
                decimals=1,
                **_per_dimension(
                    dims,
                    _recorded(Record.zscore(window)),
                    steps=lambda d: levels.zscore_steps(tier),
                ),
            )
        )
    return fill(panels, height=7)


def _slo(config: Config, alerting: AlertingConfig, windows: Windows) -> list[Panel]:
    dims = [d for d in config.dimensions if d.thresholds.bad is not None]
    slo = [d for d in dims if d.alerting.objective is not None]
    bad = 'threshold="bad"'
    stats: list[Panel] = [
        stat_panel(
            f"Past the bad threshold, last {windows.share}",
            description=(
                "Share of scored conversations at or past the dimension's bad threshold; red "
                "past the error budget (1 - objective) of its quality SLO."
            ),
            unit="percentunit",
            decimals=1,
            **_per_dimension(
                dims, _recorded(Record.past_threshold(windows.share), bad), steps=levels.share_steps
            ),
        ),
        stat_panel(
            f"Error budget left, {SLO_PERIOD}",
            description=(
                f"Share of the quality SLO's error budget not yet spent over the last "
                f"{SLO_PERIOD}: 100% untouched, 0% spent, negative overspent."
            ),
            unit="percentunit",
            decimals=1,
            sparkline=False,
            **_per_dimension(
                slo,
                lambda d: budget_remaining(d, AGENTS + ", " + DIMENSIONS),
                steps=lambda d: levels.BUDGET_STEPS,
                instant=True,
            ),
        ),
    ]
    graphs: list[Panel] = [
        timeseries_panel(
            f"Past the bad threshold ({windows.trend} windows)",
            description="Share of scored conversations past each dimension's bad threshold.",
            unit="percentunit",
            min_=0,
            max_=1,
            **_per_dimension(dims, _recorded(Record.past_threshold(windows.trend), bad)),
        )
    ]
    if windows.burn is not None:
        burn = windows.burn
        stats.append(
            stat_panel(
                f"Burn rate, last {burn}",
                description=(
                    "How fast the error budget is spent: 1 spends it exactly over "
                    f"{SLO_PERIOD}. Colored at the burn-rate alerts' factors."
                ),
                unit=TIMES,
                decimals=2,
                links=[runbook_link(alerting, Alert.BURN)],
                **_per_dimension(
                    slo,
                    _recorded(Record.burn_rate(burn)),
                    steps=lambda d: levels.burn_steps(d, alerting),
                ),
            )
        )
        graphs.append(
            timeseries_panel(
                f"Burn rate ({burn} windows)",
                description="Error-budget burn rate; dashed lines at the alerts' factors.",
                unit=TIMES,
                thresholds=levels.burn_steps(None, alerting),
                links=[runbook_link(alerting, Alert.BURN)],
                **_per_dimension(slo, _recorded(Record.burn_rate(burn))),
            )
        )
    stats.append(
        stat_panel(
            "Firing quality alerts",
            description="Quality alerts firing now for the chosen agents and dimensions.",
            unit="short",
            thresholds=((None, "green"), (1, "red")),
            sparkline=False,
            targets=[
                Target(
                    f"count({firing(QUALITY_ALERTS, AGENTS, DIMENSIONS)}) or vector(0)",
                    legend="firing",
                    instant=True,
                )
            ],
        )
    )
    return fill(stats, height=7) + fill(graphs, height=8)


def overview(config: Config) -> dict[str, Any]:
    """Return the overview dashboard for ``config`` as JSON data."""
    alerting = config.alerting
    assert alerting is not None  # generate() refuses a config without one
    windows = Windows.of(alerting)
    dashboard = (
        frame(
            config,
            uid=OVERVIEW_UID,
            title="Agent quality",
            summary=(
                "Quality of every agent per dimension against its baseline and SLO, then the "
                "exporter's traffic, sampling, scorers and cost."
            ),
        )
        .with_variable(agent_variable(multi=True))
        .with_variable(dimension_variable())
        .annotation(
            alert_annotation(
                "Quality alerts",
                expr=firing(QUALITY_ALERTS, AGENTS, DIMENSIONS),
                color="red",
                title="{{alertname}} ({{severity}})",
                text="{{agent}} {{dimension}}",
                tags="severity,agent,dimension",
            )
        )
        .annotation(
            alert_annotation(
                "Exporter alerts",
                expr=firing(EXPORTER_ALERTS),
                color="orange",
                title="{{alertname}} ({{severity}})",
                text="{{instance}} {{agent}} {{scorer}} {{judge}} {{reason}}",
                tags="severity",
            )
        )
    )
    sections: list[tuple[str, list[Panel]]] = [
        (
            f"Quality: the last {windows.current} against the baseline",
            _quality(config, alerting, windows),
        ),
        ("Quality SLO: bad conversations and error budget", _slo(config, alerting, windows)),
        ("Volume and sampling", traffic(config, alerting, agents=AGENTS, dimensions=DIMENSIONS)),
        ("Scorers and judges", scorers(config, alerting, agents=AGENTS)),
        ("Cost", costs(agents=AGENTS)),
    ]
    for title, panels in sections:
        dashboard = dashboard.with_row(board.Row(title))
        for panel in panels:
            dashboard = dashboard.with_panel(panel)
    return to_data(dashboard)
