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
from exporter.generate.timing import Timing, raise_window

__all__ = ["exporter_alerts"]

#: Sampled conversations expected before "nothing sampled" means broken, not unlucky.
_EXPECTED_SAMPLES = 20
#: A scorer or judge failing (nearly) every call is an outage of the quality signal: the error
#: alerts fire within 5 minutes of it (issue 16). "Every call": this share of the runs over
#: the last _OUTAGE_WINDOW, and at least _OUTAGE_FAILURES of them, held for _OUTAGE_FOR.
_OUTAGE_RATIO, _OUTAGE_FAILURES = 0.9, 3
_OUTAGE_WINDOW, _OUTAGE_FOR = 120.0, 60.0


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
            _failing(
                "evaluations_total",
                job=job,
                timing=timing,
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
                f"or nearly every run for {window_name(_outage_window(timing) + _OUTAGE_FOR)}."
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
        failing = _failing(
            "judge_calls_total",
            job=job,
            timing=timing,
            by="judge",
            failed='outcome=~"invalid_output|failed|breaker_open"',
            ratio=settings.error_ratio,
            sustained=settings.for_,
        )
        # A breaker opens after a run of failed requests, however rarely the judge is asked
        # (the confirmation judge may be asked a few times an hour): 1 is "every call fails".
        breaker = f"max by (judge) ({_metric('judge_breaker_open', job)}) > 0"
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
                    f"{window_name(_outage_window(timing) + _OUTAGE_FOR)}, or its circuit breaker "
                    "is open (100%)."
                ),
            )
        )
    return tuple(rules)


def _failing(
    name: str,
    *,
    job: str,
    timing: Timing,
    by: str,
    failed: str,
    ratio: float,
    sustained: float,
) -> str:
    """Return the share of failed runs of counter ``name`` per ``by`` when it means trouble.

    Either over ratio in every exporter window of the last ``sustained`` (the rule's ``for``
    adds the rest of it), or at least _OUTAGE_RATIO of at least _OUTAGE_FAILURES runs over
    the outage window: the first is noise-proof, the second fast.
    """

    def share(window: float) -> str:
        span = window_name(window)
        return (
            f"sum by ({by}) (increase({_metric(name, job, failed)}[{span}]))\n"
            f"/\n(sum by ({by}) (increase({_metric(name, job)}[{span}])) > 0)"
        )

    held = sustained - _OUTAGE_FOR
    step = window_name(timing.scrape)
    if held >= timing.scrape:
        often = (
            f"min_over_time((\n{_indent(share(timing.exporter))}\n)[{window_name(held)}:{step}])"
        )
    else:  # `for` is about an interval or less: the rule's own `for` holds it
        often = f"(\n{_indent(share(timing.exporter))}\n)"
    outage = _outage_window(timing)
    return (
        f"{often} > {ratio:.6g}\nor\n(\n{_indent(share(outage))}\n"
        f"  >= {_OUTAGE_RATIO:.6g}\n"
        f"  and on ({by}) sum by ({by}) (increase({_metric(name, job, failed)}"
        f"[{window_name(outage)}])) >= {_OUTAGE_FAILURES}\n)"
    )


def _outage_window(timing: Timing) -> float:
    """Return the outage window: _OUTAGE_WINDOW, or SCRAPES_PER_WINDOW scrapes if longer."""
    return raise_window(_OUTAGE_WINDOW, timing.scrape)


def _span(seconds: float) -> str:
    return window_name(seconds) if seconds else "0s"  # alerting.exporter.for may be 0


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
