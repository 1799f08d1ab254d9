"""Alerts about the exporter itself: down or absent, blind, dropping, failing, saturated.

They carry ``severity`` and no ``dimension``. Being blind (down, absent, evaluating
nothing) pages: every quality alert is silent then, and silence must not look like health.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from exporter.config.alerting import AlertingConfig
from exporter.config.model import Config
from exporter.generate.conventions import EXPORTER_WINDOW, PREFIX, Alert, window_name
from exporter.generate.model import AlertingRule

__all__ = ["exporter_alerts"]

#: Sampled conversations expected before "nothing sampled" means broken, not unlucky.
_EXPECTED_SAMPLES = 20
#: A scorer or judge failing (nearly) every call is an outage of the quality signal: the error
#: alerts fire within 5 minutes of it (issue 16). "Every call": this share of the runs over
#: the last _OUTAGE_WINDOW, and at least _OUTAGE_FAILURES of them, held for _OUTAGE_FOR.
_OUTAGE_RATIO, _OUTAGE_FAILURES = 0.9, 3
_OUTAGE_WINDOW, _OUTAGE_FOR = 120.0, 60.0


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


def exporter_alerts(config: Config, alerting: AlertingConfig) -> tuple[AlertingRule, ...]:
    """Return the alerts about the exporter for ``config``."""
    settings, job = alerting.exporter, alerting.job
    rate = window_name(EXPORTER_WINDOW)
    blind = window_name(settings.no_evaluations_window)
    sampled = f"sum by (agent) (increase({PREFIX}_sampled_total[{blind}]))"
    no_samples = ""
    if config.sampling.base_rate > 0:
        # Enough conversations that the base rate alone should have sampled a handful.
        arrived = math.ceil(_EXPECTED_SAMPLES / config.sampling.base_rate)
        no_samples = (
            f"\nor\n(\n  sum by (agent) (increase({PREFIX}_conversations_total[{blind}])) "
            f">= {arrived}\n  unless {sampled} > 0\n)"
        )
    rules = [
        _rule(
            alerting,
            Alert.EXPORTER_DOWN,
            f'up{{job="{job}"}} == 0',
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
            f'absent(up{{job="{job}"}})',
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
            (
                f"(\n  {sampled} > 0\n  unless sum by (agent) "
                f'(increase({PREFIX}_evaluations_total{{outcome="ok"}}[{blind}])) > 0\n)'
                f"{no_samples}"
            ),
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
                f"sum by (reason) (increase({PREFIX}_dropped_total"
                f'{{reason!~"daily_budget|shutdown"}}[{rate}]))\n'
                f"/ ignoring (reason) group_left ()\n"
                f"(sum(increase({PREFIX}_sampled_total[{rate}])) > 0)\n"
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
            _failing(
                f"{PREFIX}_evaluations_total",
                by="scorer",
                failed='outcome=~"error|timeout"',
                ratio=settings.error_ratio,
                sustained=settings.for_,
            ),
            for_=min(_OUTAGE_FOR, settings.for_),
            severity="warning",
            summary="Scorer {{ $labels.scorer }} fails",
            description=(
                "{{ $value | humanizePercentage }} of scorer {{ $labels.scorer }}'s runs "
                f"ended in an error or a timeout: over {rate} for {_span(settings.for_)}, "
                f"or nearly every run for {window_name(_OUTAGE_WINDOW + _OUTAGE_FOR)}."
            ),
        ),
        _rule(
            alerting,
            Alert.QUEUE,
            (f"{PREFIX}_queue_depth / {PREFIX}_queue_capacity > {settings.queue_ratio:.6g}"),
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
            f"{PREFIX}_config_last_reload_successful == 0",
            for_=settings.for_,
            severity="warning",
            summary="agent-quality-exporter {{ $labels.instance }} could not reload its config",
            description=(
                "The last SIGHUP reload of {{ $labels.instance }} failed: it runs the previous "
                "config, and a restart would fail the same way. Its log says why."
            ),
        ),
    ]
    if config.judges:
        failing = _failing(
            f"{PREFIX}_judge_calls_total",
            by="judge",
            failed='outcome=~"invalid_output|failed|breaker_open"',
            ratio=settings.error_ratio,
            sustained=settings.for_,
        )
        # A breaker opens after a run of failed requests, however rarely the judge is asked
        # (the confirmation judge may be asked a few times an hour): 1 is "every call fails".
        breaker = f"max by (judge) ({PREFIX}_judge_breaker_open) > 0"
        rules.append(
            _rule(
                alerting,
                Alert.JUDGE_ERRORS,
                f"{failing}\nor\n{breaker}",
                for_=min(_OUTAGE_FOR, settings.for_),
                severity="warning",
                summary="LLM judge {{ $labels.judge }} fails",
                description=(
                    "{{ $value | humanizePercentage }} of the verdicts asked of judge "
                    f"{{{{ $labels.judge }}}} failed: over {rate} for "
                    f"{_span(settings.for_)}, or nearly every one for "
                    f"{window_name(_OUTAGE_WINDOW + _OUTAGE_FOR)}, or its circuit breaker "
                    "is open (100%)."
                ),
            )
        )
    return tuple(rules)


def _failing(counter: str, *, by: str, failed: str, ratio: float, sustained: float) -> str:
    """Return the share of failed runs of ``counter`` per ``by`` when it means trouble.

    Either over ratio in every EXPORTER_WINDOW of the last ``sustained`` (the rule's ``for``
    adds the rest of it), or at least _OUTAGE_RATIO of at least _OUTAGE_FAILURES runs over
    the last _OUTAGE_WINDOW: the first is noise-proof, the second fast.
    """

    def share(window: float) -> str:
        name = window_name(window)
        return (
            f"sum by ({by}) (increase({counter}{{{failed}}}[{name}]))\n"
            f"/\n(sum by ({by}) (increase({counter}[{name}])) > 0)"
        )

    held = sustained - _OUTAGE_FOR
    if held >= 60:
        often = f"min_over_time((\n{_indent(share(EXPORTER_WINDOW))}\n)[{window_name(held)}:1m])"
    else:  # `for` is a minute or less: the rule's own `for` holds it
        often = f"(\n{_indent(share(EXPORTER_WINDOW))}\n)"
    outage = window_name(_OUTAGE_WINDOW)
    return (
        f"{often} > {ratio:.6g}\nor\n(\n{_indent(share(_OUTAGE_WINDOW))}\n"
        f"  >= {_OUTAGE_RATIO:.6g}\n"
        f"  and on ({by}) sum by ({by}) (increase({counter}{{{failed}}}[{outage}]))"
        f" >= {_OUTAGE_FAILURES}\n)"
    )


def _span(seconds: float) -> str:
    return window_name(seconds) if seconds else "0s"  # alerting.exporter.for may be 0


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
