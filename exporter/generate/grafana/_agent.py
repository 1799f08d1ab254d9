"""The per-agent drill-down: one agent, a row per dimension with its mean, shares and spread."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as board

from exporter.config.model import Config, Dimension
from exporter.generate.conventions import SCORE, Record
from exporter.generate.grafana import _levels as levels
from exporter.generate.grafana._common import agent_variable, frame
from exporter.generate.grafana._kit import (
    Panel,
    Target,
    alert_annotation,
    distribution,
    fill,
    timeseries_panel,
    to_data,
)
from exporter.generate.grafana._queries import (
    QUALITY_ALERTS,
    Windows,
    baseline_mean,
    dimension_matcher,
    firing,
    metric,
    rate,
    series,
)
from exporter.names import AGENT_UID

__all__ = ["agent"]

AGENT = 'agent="$agent"'


def _activity() -> list[Panel]:
    return fill(
        [
            timeseries_panel(
                "Conversations received",
                description="Conversations of this agent sent to the exporter per second.",
                unit="cps",
                targets=[Target(rate(metric("conversations_total"), AGENT), legend="received")],
            ),
            timeseries_panel(
                "Sampled for scoring, by reason",
                description="Conversations of this agent chosen for scoring, by why.",
                unit="cps",
                targets=[
                    Target(rate(metric("sampled_total"), AGENT, by="reason"), legend="{{reason}}")
                ],
            ),
            timeseries_panel(
                "Flags raised, by flag",
                description="Flags the scorers raised (refusal, pii_email, confirmed_bad, ...).",
                unit="cps",
                targets=[Target(rate(metric("flags_total"), AGENT, by="flag"), legend="{{flag}}")],
            ),
        ],
        height=8,
    )


def _dimension(dimension: Dimension, windows: Windows) -> list[Panel]:
    name, match = dimension.name, dimension_matcher(dimension)
    means = [
        Target(
            series(Record.mean(windows.trend), AGENT, match),
            ref="trend",
            legend=f"mean, {windows.trend} windows",
        )
    ]
    if windows.current != windows.trend:
        means.append(
            Target(
                series(Record.mean(windows.current), AGENT, match),
                ref="current",
                legend=f"mean, {windows.current} windows",
            )
        )
    means.append(Target(series(baseline_mean(), AGENT, match), ref="baseline", legend="baseline"))
    panels: list[Panel] = [
        timeseries_panel(
            f"{name}: mean score",
            description=(
                f"{dimension.description} Mean over sliding windows against the baseline; "
                "dashed lines at the warning/critical levels."
            ).strip(),
            unit="none",
            min_=dimension.scale_min,
            max_=dimension.scale_max,
            thresholds=levels.mean_steps(dimension),
            targets=means,
        )
    ]
    if dimension.thresholds.values():
        panels.append(
            timeseries_panel(
                f"{name}: past each threshold",
                description=(
                    f"Share of scored conversations past each threshold ({windows.trend} "
                    "windows); dashed line at the SLO's error budget."
                ),
                unit="percentunit",
                min_=0,
                max_=1,
                thresholds=levels.share_steps(dimension),
                targets=[
                    Target(
                        series(Record.past_threshold(windows.trend), AGENT, match),
                        legend="{{threshold}}",
                    )
                ],
            )
        )
    bucket = series(f"{SCORE}_bucket", AGENT, match)
    panels.append(
        distribution(
            f"{name}: score distribution",
            description="How many conversations scored in each bucket over the time range.",
            target=Target(
                f"sum by (le) (increase({bucket}[$__range]))", legend="{{le}}", instant=True
            ),
        )
    )
    return _widths(panels)


def _widths(panels: list[Panel]) -> list[Panel]:
    """Give the mean graph half the row and share the rest."""
    rest = 12 // (len(panels) - 1)
    return [panels[0].span(12).height(8), *(p.span(rest).height(8) for p in panels[1:])]


def _scoring() -> list[Panel]:
    return fill(
        [
            timeseries_panel(
                "Scorer runs, by outcome",
                description="Scorer runs on this agent's conversations: ok, error, timeout.",
                unit="cps",
                targets=[
                    Target(
                        rate(metric("evaluations_total"), AGENT, by="scorer, outcome"),
                        legend="{{scorer}} {{outcome}}",
                    )
                ],
            ),
            timeseries_panel(
                "Agent cost per hour",
                description="What this agent costs, from the conversations' usage (USD/h).",
                unit="currencyUSD",
                targets=[Target(f"{rate(metric('agent_cost_usd_total'), AGENT)} * 3600")],
            ),
        ],
        height=8,
    )


def agent(config: Config) -> dict[str, Any]:
    """Return the per-agent dashboard for ``config`` as JSON data."""
    alerting = config.alerting
    assert alerting is not None  # generate() refuses a config without one
    windows = Windows.of(alerting)
    dashboard = (
        frame(
            config,
            uid=AGENT_UID,
            title="Agent quality: one agent",
            summary="One agent's quality per dimension over time, its traffic and scorers.",
        )
        .with_variable(agent_variable(multi=False))
        .annotation(
            alert_annotation(
                "Quality alerts",
                expr=firing(QUALITY_ALERTS, AGENT),
                color="red",
                title="{{alertname}} ({{severity}})",
                text="{{dimension}}",
                tags="severity,dimension",
            )
        )
    )
    sections: list[tuple[str, list[Panel]]] = [("Traffic", _activity())]
    for dimension in config.dimensions:
        direction = "higher" if dimension.higher_is_better else "lower"
        title = (
            f"{dimension.name}: {dimension.scale_min:g} to {dimension.scale_max:g}, "
            f"{direction} is better"
        )
        sections.append((title, _dimension(dimension, windows)))
    sections.append(("Scorers and cost", _scoring()))
    for title, panels in sections:
        dashboard = dashboard.with_row(board.Row(title))
        for panel in panels:
            dashboard = dashboard.with_panel(panel)
    return to_data(dashboard)
