"""Alerts about the exporter itself: down or absent, blind, dropping, failing, saturated.

They carry ``severity`` and no ``dimension`` (docs/alerting.md). Being blind (down, absent,
evaluating nothing) pages: every quality alert is silent then, and silence must not look like
health. A spent daily sampling budget only thins the sample (the sampler paces it over the
day), so it is a warning. Every selector carries ``job`` from ``alerting.job``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from exporter.config.alerting import AlertingConfig
from exporter.config.model import Config
from exporter.generate.conventions import PREFIX, Alert, window_name
from exporter.generate.model import AlertingRule
from exporter.generate.timing import Timing

__all__ = ["exporter_alerts"]

#: Sampled conversations expected before "nothing sampled" means broken, not unlucky.
_EXPECTED_SAMPLES = 20


def _metric(name: str, job: str, *matchers: str) -> str:
    """Return a raw series selector of the exporter's job: ``agent_quality_<name>{job=...}``."""
    labels = ", ".join((f'job="{job}"', *matchers))
    return f"{PREFIX}_{name}{{{labels}}}"


def _rule(
    alerting: AlertingConfig,
    alert: str,
    expr: str,
    *,
    for_: float,
    severity: str,
    summary: str,
    description: str,
    value: str = '{{ $value | printf "%.3g" }}',
) -> AlertingRule:
    labels: Mapping[str, str] = MappingProxyType({**alerting.extra_labels, "severity": severity})
    return AlertingRule(
        alert=alert,
        expr=expr,
        for_=for_,
        labels=labels,
        annotations=MappingProxyType(
            {
                "summary": summary,
                "description": description,
                "value": value,
                "runbook_url": f"{alerting.runbook_url}#{alert.lower()}",
            }
        ),
    )


def exporter_alerts(
    config: Config, alerting: AlertingConfig, timing: Timing
) -> tuple[AlertingRule, ...]:
    """Return the alerts about the exporter for ``config``."""
    settings, job = alerting.exporter, alerting.job
    rate = window_name(timing.exporter)
    blind = window_name(settings.no_evaluations_window)
    sampled = f"sum by (agent) (increase({_metric('sampled_total', job)}[{blind}]))"
    ok = _metric("evaluations_total", job, 'outcome="ok"')
    evaluated = f"sum by (agent) (increase({ok}[{blind}]))"
    # "Nothing sampled" only means broken when the base rate in effect (the daily budget's
    # pacing lowers it on busy days) should have sampled a handful of what arrived.
    expected = (
        f"sum by (agent) (increase({_metric('conversations_total', job)}[{blind}]))\n"
        f"  * on (agent) avg by (agent) ({_metric('sampling_rate', job)})"
    )
    no_samples = (
        f"\nor\n(\n  {expected}\n  >= {_EXPECTED_SAMPLES}\n  unless on (agent) {sampled} > 0\n)"
    )
    up = f'up{{job="{job}"}}'
    dropped = _metric("dropped_total", job, 'reason!~"daily_budget|shutdown"')
    errors = _metric("evaluations_total", job, 'outcome=~"error|timeout"')
    budget = _metric("dropped_total", job, 'reason="daily_budget"')
    rules = [
        _rule(
            alerting,
            Alert.EXPORTER_DOWN,
            f"{up} == 0",
            for_=settings.down_for,
            severity="critical",
            summary="agent-quality-exporter {{ $labels.instance }} is down",
            description=(
                f"Prometheus has failed to scrape {{{{ $labels.instance }}}} (job {job}) for "
                f"{window_name(settings.down_for)}: agent quality is not being watched."
            ),
        ),
        _rule(
            alerting,
            Alert.EXPORTER_ABSENT,
            f"absent({up})",
            for_=settings.down_for,
            severity="critical",
            summary=f"No agent-quality-exporter target (job {job})",
            description=(
                f"Prometheus has no scrape target with job={job}: check service discovery "
                "and alerting.job; agent quality is not being watched."
            ),
        ),
        _rule(
            alerting,
            Alert.NO_EVALUATIONS,
            f"(\n  {sampled} > 0\n  unless on (agent) {evaluated} > 0\n){no_samples}",
            for_=settings.for_,
            severity="critical",
            summary="agent-quality-exporter scores nothing for {{ $labels.agent }}",
            description=(
                "Conversations of agent {{ $labels.agent }} arrive but no scorer finished "
                f"one in the last {blind}: the quality alerts of this agent are blind."
            ),
        ),
        _rule(
            alerting,
            Alert.DROPS,
            (
                f"sum by (reason) (increase({dropped}[{rate}]))\n"
                f"/ ignoring (reason) group_left ()\n"
                f"(sum(increase({_metric('sampled_total', job)}[{rate}])) > 0)\n"
                f"> {settings.drop_ratio:.6g}"
            ),
            for_=settings.for_,
            severity="warning",
            summary="agent-quality-exporter drops conversations ({{ $labels.reason }})",
            description=(
                "{{ $value | humanizePercentage }} of the sampled conversations were dropped "
                f"({{{{ $labels.reason }}}}) over the last {rate}; scores under-represent them."
            ),
        ),
        _rule(
            alerting,
            Alert.SCORER_ERRORS,
            (
                f"sum by (scorer) (increase({errors}[{rate}]))\n"
                f"/\n(sum by (scorer) (increase({_metric('evaluations_total', job)}[{rate}])) > 0)"
                f"\n> {settings.error_ratio:.6g}"
            ),
            for_=settings.for_,
            severity="warning",
            summary="Scorer {{ $labels.scorer }} fails",
            description=(
                "{{ $value | humanizePercentage }} of scorer {{ $labels.scorer }}'s runs "
                f"ended in an error or a timeout over the last {rate}."
            ),
        ),
        _rule(
            alerting,
            Alert.QUEUE,
            (
                f"{_metric('queue_depth', job)} / {_metric('queue_capacity', job)}"
                f" > {settings.queue_ratio:.6g}"
            ),
            for_=settings.for_,
            severity="warning",
            summary="agent-quality-exporter's scoring queue is nearly full",
            description=(
                "The scoring queue is {{ $value | humanizePercentage }} full; conversations "
                "will be dropped (queue_full) when it is. Add workers or replicas."
            ),
        ),
        _rule(
            alerting,
            Alert.CONFIG_RELOAD,
            f"{_metric('config_last_reload_successful', job)} == 0",
            for_=settings.for_,
            severity="warning",
            summary="agent-quality-exporter {{ $labels.instance }} could not reload its config",
            description=(
                "The last SIGHUP reload of {{ $labels.instance }} failed: it runs the previous "
                "config, and a restart would fail the same way. Its log says why."
            ),
        ),
    ]
    if config.sampling.max_daily_samples is not None:
        rules.append(
            _rule(
                alerting,
                Alert.SAMPLING_BUDGET,
                f"sum(increase({budget}[{rate}])) > 0",
                for_=settings.for_,
                severity="warning",
                summary="agent-quality-exporter spent its daily sampling budget",
                description=(
                    "Conversations that the sampling rates chose were not scored over the last "
                    f"{rate}: the day's sampling.daily_budget.max_samples "
                    f"({config.sampling.max_daily_samples} per replica) is spent before UTC "
                    "midnight despite the pacing (a burst late in the day). Quality is still "
                    "watched on what was scored before; raise max_samples or lower the rates."
                ),
            )
        )
    if config.judges:
        failed = 'outcome=~"invalid_output|failed|breaker_open"'
        rules.append(
            _rule(
                alerting,
                Alert.JUDGE_ERRORS,
                (
                    f"sum by (judge) (increase({_metric('judge_calls_total', job, failed)}"
                    f"[{rate}]))\n/\n(sum by (judge) (increase("
                    f"{_metric('judge_calls_total', job)}[{rate}])) > 0)\n"
                    f"> {settings.error_ratio:.6g}"
                ),
                for_=settings.for_,
                severity="warning",
                summary="LLM judge {{ $labels.judge }} fails",
                description=(
                    "{{ $value | humanizePercentage }} of the verdicts asked of judge "
                    f"{{{{ $labels.judge }}}} failed over the last {rate}."
                ),
            )
        )
    return tuple(rules)
