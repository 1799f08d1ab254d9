"""Panels about the exporter at work: traffic and sampling, scorers and judges, cost."""

from __future__ import annotations

from exporter.config.alerting import AlertingConfig
from exporter.config.model import Config
from exporter.generate.conventions import SCORE, Alert
from exporter.generate.grafana._common import runbook_link
from exporter.generate.grafana._kit import Panel, Target, fill, stat_panel, timeseries_panel
from exporter.generate.grafana._queries import metric, rate, series

__all__ = ["costs", "scorers", "traffic"]


def traffic(
    config: Config, alerting: AlertingConfig, *, agents: str, dimensions: str
) -> list[Panel]:
    """Return received, sampled, scored and dropped conversations and the queue's fill."""
    conversations, sampled = metric("conversations_total"), metric("sampled_total")
    share = f"{rate(sampled, agents)}\n/\n({rate(conversations, agents)} > 0)"
    panels: list[Panel] = [
        timeseries_panel(
            "Conversations received",
            description="Conversations sent to the exporter per second, by agent.",
            unit="cps",
            targets=[Target(rate(conversations, agents, by="agent"), legend="{{agent}}")],
        ),
        timeseries_panel(
            "Sampled for scoring, by reason",
            description=(
                "base: the stable-hash sample; boost: negative signals, tool errors, very long "
                "conversations; min_fill: topping up to the day's minimum."
            ),
            unit="cps",
            targets=[Target(rate(sampled, agents, by="reason"), legend="{{reason}}")],
        ),
        timeseries_panel(
            "Sampling rate",
            description=(
                f"Share of received conversations chosen for scoring (base rate "
                f"{config.sampling.base_rate:g}, boost rate {config.sampling.boost_rate:g}), "
                "and the base rate in effect per agent: halved while the daily budget is "
                "paced over the day, raised while filling the day's minimum."
            ),
            unit="percentunit",
            min_=0,
            max_=1,
            targets=[
                Target(share, legend="sampled"),
                Target(
                    f"avg by (agent) ({series(metric('sampling_rate'), agents)})",
                    legend="base rate in effect, {{agent}}",
                ),
            ],
        ),
        timeseries_panel(
            "Scored, by dimension",
            description="Scores recorded per second: the volume behind every mean above.",
            unit="cps",
            targets=[
                Target(
                    rate(f"{SCORE}_count", agents, dimensions, by="dimension"),
                    legend="{{dimension}}",
                )
            ],
        ),
        timeseries_panel(
            "Dropped, by reason",
            description=(
                "Conversations never scored: queue_full, daily_budget, shutdown, no_content "
                "(no user or assistant text to score) and OTLP assembly drops. Not per agent."
            ),
            unit="cps",
            links=[runbook_link(alerting, Alert.DROPS)],
            targets=[Target(rate(metric("dropped_total"), by="reason"), legend="{{reason}}")],
        ),
        timeseries_panel(
            "Scoring queue fill",
            description="Queued conversations over the queue's capacity, per exporter.",
            unit="percentunit",
            min_=0,
            max_=1,
            thresholds=((None, "transparent"), (alerting.exporter.queue_ratio, "orange")),
            links=[runbook_link(alerting, Alert.QUEUE)],
            targets=[
                Target(
                    f"{metric('queue_depth')} / {metric('queue_capacity')}", legend="{{instance}}"
                )
            ],
        ),
    ]
    return fill(panels[:3], height=8) + fill(panels[3:], height=8)


def _quantile(q: float, name: str, by: str) -> str:
    return f"histogram_quantile({q:g}, sum by (le, {by}) (rate({name}_bucket[$__rate_interval])))"


def scorers(config: Config, alerting: AlertingConfig, *, agents: str) -> list[Panel]:
    """Return scorer failures and latency, and the judges' when the config has any."""
    evaluations, duration = metric("evaluations_total"), metric("scorer_duration_seconds")
    failed = 'outcome=~"error|timeout"'
    panels: list[Panel] = [
        timeseries_panel(
            "Scorer errors and timeouts",
            description=(
                "Share of each scorer's runs that raised or timed out; dashed line at the "
                "exporter alert's ratio."
            ),
            unit="percentunit",
            min_=0,
            thresholds=((None, "transparent"), (alerting.exporter.error_ratio, "orange")),
            links=[runbook_link(alerting, Alert.SCORER_ERRORS)],
            targets=[
                Target(
                    f"{rate(evaluations, agents, failed, by='scorer')}\n/\n"
                    f"({rate(evaluations, agents, by='scorer')} > 0)",
                    legend="{{scorer}}",
                )
            ],
        ),
        timeseries_panel(
            "Scorer latency",
            description="Time per scorer run, median and 95th percentile (LLM judges included).",
            unit="s",
            targets=[
                Target(_quantile(0.5, duration, "scorer"), ref="p50", legend="{{scorer}} p50"),
                Target(_quantile(0.95, duration, "scorer"), ref="p95", legend="{{scorer}} p95"),
            ],
        ),
    ]
    if config.judges:
        calls = metric("judge_calls_total")
        panels.append(
            timeseries_panel(
                "Judge verdicts that failed, by outcome",
                description=(
                    "Verdicts asked of each LLM judge that did not come back: invalid output, "
                    "failed requests, an open circuit breaker, the daily budget spent."
                ),
                unit="cps",
                links=[runbook_link(alerting, Alert.JUDGE_ERRORS)],
                targets=[
                    Target(
                        rate(calls, 'outcome!="ok"', by="judge, outcome"),
                        legend="{{judge}} {{outcome}}",
                    )
                ],
            )
        )
        panels.append(
            timeseries_panel(
                "Judge request latency",
                description="Time per HTTP request to each LLM judge, 95th percentile.",
                unit="s",
                targets=[
                    Target(
                        _quantile(0.95, metric("judge_request_duration_seconds"), "judge"),
                        legend="{{judge}} p95",
                    )
                ],
            )
        )
    return fill(panels[:2], height=8) + (fill(panels[2:], height=8) if panels[2:] else [])


def costs(*, agents: str) -> list[Panel]:
    """Return what judging cost against what the observed agents cost."""
    # Without judges the series does not exist: judging cost nothing, not "no data".
    judges = f"(sum(increase({metric('judge_cost_usd_total')}[$__range])) or vector(0))"
    spent = f"sum(increase({metric('agent_cost_usd_total')}{{{agents}}}[$__range]))"
    everything = f"sum(increase({metric('agent_cost_usd_total')}[$__range]))"
    hourly_judges = (
        f"(sum(rate({metric('judge_cost_usd_total')}[$__rate_interval])) or vector(0)) * 3600"
    )
    hourly_agents = f"{rate(metric('agent_cost_usd_total'), agents)} * 3600"
    panels: list[Panel] = [
        stat_panel(
            "Judge cost",
            description="What the LLM judges cost over the dashboard's time range (USD).",
            unit="currencyUSD",
            decimals=2,
            sparkline=False,
            targets=[Target(judges, legend="judges", instant=True)],
        ),
        stat_panel(
            "Agent cost",
            description=(
                "What the chosen agents cost over the time range, from the conversations' "
                "usage.cost_usd (USD)."
            ),
            unit="currencyUSD",
            decimals=2,
            sparkline=False,
            targets=[Target(spent, legend="agents", instant=True)],
        ),
        stat_panel(
            "Eval cost / agent cost",
            description=(
                "Judge cost as a share of the cost of every observed agent over the time "
                "range: what watching quality adds to the bill. Judges serve all agents, so "
                "this ignores the agent filter."
            ),
            unit="percentunit",
            decimals=2,
            sparkline=False,
            targets=[Target(f"{judges}\n/\n({everything} > 0)", legend="share", instant=True)],
        ),
        timeseries_panel(
            "Cost per hour",
            description="Judge and agent spending rate, USD per hour.",
            unit="currencyUSD",
            targets=[
                Target(hourly_judges, ref="judges", legend="judges"),
                Target(hourly_agents, ref="agents", legend="agents"),
            ],
        ),
    ]
    return fill(panels, height=7)
