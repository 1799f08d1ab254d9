"""The ``alerting`` section and each dimension's ``alerting`` overrides, frozen and checked.

Everything here feeds ``agent-quality-exporter generate`` (exporter/generate/): the windows,
tiers and burn rates of the generated rules and the Alertmanager routing. Defaults live in
default.yml like every other default; a dimension without its own ``alerting`` gets the
scale-relative ``alerting.defaults``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from exporter.config.duration import parse_duration
from exporter.exceptions import ConfigError

__all__ = [
    "AbsoluteSettings",
    "AlertingConfig",
    "AlertmanagerSettings",
    "BurnRate",
    "DegradationTier",
    "DimensionAlerting",
    "ExporterAlertSettings",
    "OperatorSettings",
    "build_alerting",
    "build_dimension_alerting",
    "check_objectives",
]

Fail = Callable[[str, str], ConfigError]


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DimensionAlerting:
    """One dimension's alerting knobs, in the dimension's own units.

    ``min_delta`` is the smallest drop of the mean worth an alert (practical size);
    ``min_stddev`` the smallest per-conversation spread assumed in significance tests, so a
    window of identical scores, or a few rare failures, is not "infinitely" significant;
    ``objective`` the share of scored conversations that must not be bad (the quality SLO).
    """

    min_delta: float = 0.05
    min_stddev: float = 0.25
    objective: float | None = 0.9


@dataclass(frozen=True, slots=True)
class DegradationTier:
    """One way of comparing a recent window's mean with the baseline mean.

    ``window`` and ``for_`` are what the config asks for; exporter/generate/timing.py raises
    them to what the scrape interval and ``AlertingConfig.min_duration`` need.
    """

    name: str
    severity: str
    window: float
    for_: float
    min_samples: int
    min_zscore: float
    min_delta_factor: float


@dataclass(frozen=True, slots=True)
class AbsoluteSettings:
    """The mean over the current window confidently past a warning/critical level."""

    for_: float
    min_samples: int
    confidence_zscore: float


@dataclass(frozen=True, slots=True)
class BurnRate:
    """A multi-window burn-rate condition of the quality SLO (SRE workbook, chapter 5)."""

    name: str
    severity: str
    long_window: float
    short_window: float
    factor: float
    min_samples: int


@dataclass(frozen=True, slots=True)
class ExporterAlertSettings:
    """Thresholds of the alerts about the exporter itself."""

    down_for: float
    for_: float
    no_evaluations_window: float
    drop_ratio: float
    error_ratio: float
    queue_ratio: float


@dataclass(frozen=True, slots=True)
class AlertmanagerSettings:
    """Receivers and timings of the generated alertmanager.yml."""

    pager_url: str
    ticket_url: str
    group_wait: float
    group_interval: float
    critical_repeat_interval: float
    warning_repeat_interval: float


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    """Metadata of the PrometheusRule custom resource (``--format prometheus-operator``)."""

    name: str = "agent-quality-exporter"
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class AlertingConfig:
    """The whole ``alerting`` section.

    ``scrape_interval`` is how often Prometheus scrapes the exporter (and evaluates the rules):
    every window is at least four of it. ``min_duration`` is how long a drop must have lasted
    before anything alerts on it: dips that recover sooner only show on the dashboards.
    """

    runbook_url: str
    dashboard_url: str
    job: str
    scrape_interval: float
    min_duration: float
    baseline_window: float
    current_window: float
    degradation: tuple[DegradationTier, ...]
    absolute: AbsoluteSettings
    burn_rates: tuple[BurnRate, ...]
    exporter: ExporterAlertSettings
    alertmanager: AlertmanagerSettings
    operator: OperatorSettings
    extra_labels: Mapping[str, str] = field(default_factory=_empty)


def _seconds(fail: Fail, path: str, text: str) -> float:
    """Return a duration that PromQL can print: whole seconds, at least one."""
    seconds = parse_duration(text)
    if seconds < 1 or seconds != int(seconds):
        raise fail(path, f"{text!r} must be a whole number of seconds, at least 1s")
    return seconds


_TIER_KEYS = ("severity", "window", "min_samples", "min_zscore", "min_delta_factor")
#: Windows hold at least this many scrape intervals, so a missed scrape does not empty them.
SCRAPES_PER_WINDOW = 4
_BURN_KEYS = ("severity", "long_window", "short_window", "factor", "min_samples")


def _require(fail: Fail, path: str, item: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Refuse a tier the user added without every key (default tiers merge theirs in)."""
    missing = [key for key in keys if key not in item]
    if missing:
        raise fail(path, f"missing {', '.join(missing)} (a new entry needs {', '.join(keys)})")


def build_alerting(section: Mapping[str, Any], fail: Fail) -> AlertingConfig:
    """Build ``AlertingConfig`` from the merged, schema-valid ``alerting`` mapping."""
    path = "$.alerting"
    current = _seconds(fail, f"{path}.current_window", section["current_window"])
    baseline = _seconds(fail, f"{path}.baseline_window", section["baseline_window"])
    if baseline <= current:
        raise fail(f"{path}.baseline_window", "must be longer than alerting.current_window")
    scrape = _seconds(fail, f"{path}.scrape_interval", section["scrape_interval"])
    if SCRAPES_PER_WINDOW * scrape > current:
        raise fail(
            f"{path}.scrape_interval",
            f"{section['scrape_interval']}: windows of {SCRAPES_PER_WINDOW} scrape intervals "
            f"would be longer than alerting.current_window ({section['current_window']})",
        )
    min_duration = parse_duration(section["min_duration"])
    if min_duration >= current:
        raise fail(
            f"{path}.min_duration",
            f"{section['min_duration']} must be shorter than alerting.current_window "
            f"({section['current_window']}), the longest window an alert reads",
        )
    tiers = []
    for name, tier in sorted(section["degradation"].items()):
        if tier is None:  # a user switches a default tier off with `name: null`
            continue
        where = f"{path}.degradation.{name}"
        _require(fail, where, tier, _TIER_KEYS)
        window = _seconds(fail, f"{where}.window", tier["window"])
        if window > current:
            raise fail(
                f"{where}.window",
                f"{tier['window']} is longer than alerting.current_window "
                f"({section['current_window']}), which the baseline leaves out",
            )
        tiers.append(
            DegradationTier(
                name=name,
                severity=tier["severity"],
                window=window,
                for_=parse_duration(tier.get("for", "0s")),
                min_samples=tier["min_samples"],
                min_zscore=float(tier["min_zscore"]),
                min_delta_factor=float(tier["min_delta_factor"]),
            )
        )
    burn_rates = []
    for name, burn in sorted((section["slo"] or {}).items()):
        if burn is None:
            continue
        where = f"{path}.slo.{name}"
        _require(fail, where, burn, _BURN_KEYS)
        long = _seconds(fail, f"{where}.long_window", burn["long_window"])
        short = _seconds(fail, f"{where}.short_window", burn["short_window"])
        if short >= long:
            raise fail(f"{where}.short_window", "must be shorter than long_window")
        burn_rates.append(
            BurnRate(
                name=name,
                severity=burn["severity"],
                long_window=long,
                short_window=short,
                factor=float(burn["factor"]),
                min_samples=burn["min_samples"],
            )
        )
    absolute, exporter = section["absolute"], section["exporter"]
    manager, operator = section["alertmanager"], section["prometheus_operator"]
    return AlertingConfig(
        runbook_url=section["runbook_url"],
        dashboard_url=section["dashboard_url"],
        job=section["job"],
        scrape_interval=scrape,
        min_duration=min_duration,
        baseline_window=baseline,
        current_window=current,
        degradation=tuple(tiers),
        absolute=AbsoluteSettings(
            for_=parse_duration(absolute["for"]),
            min_samples=absolute["min_samples"],
            confidence_zscore=float(absolute["confidence_zscore"]),
        ),
        burn_rates=tuple(burn_rates),
        exporter=ExporterAlertSettings(
            down_for=parse_duration(exporter["down_for"]),
            for_=parse_duration(exporter["for"]),
            no_evaluations_window=_seconds(
                fail, f"{path}.exporter.no_evaluations_window", exporter["no_evaluations_window"]
            ),
            drop_ratio=float(exporter["drop_ratio"]),
            error_ratio=float(exporter["error_ratio"]),
            queue_ratio=float(exporter["queue_ratio"]),
        ),
        alertmanager=AlertmanagerSettings(
            pager_url=manager["pager_url"],
            ticket_url=manager["ticket_url"],
            group_wait=parse_duration(manager["group_wait"]),
            group_interval=parse_duration(manager["group_interval"]),
            critical_repeat_interval=parse_duration(manager["critical_repeat_interval"]),
            warning_repeat_interval=parse_duration(manager["warning_repeat_interval"]),
        ),
        operator=OperatorSettings(
            name=operator["name"],
            namespace=operator.get("namespace"),
            labels=MappingProxyType(dict(operator.get("labels") or {})),
        ),
        extra_labels=MappingProxyType(dict(section.get("labels") or {})),
    )


def build_dimension_alerting(
    item: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    path: str,
    scale: tuple[float, float],
    has_bad_threshold: bool,
    fail: Fail,
) -> DimensionAlerting:
    """Resolve one dimension's ``alerting``: its own values, else scale-relative defaults."""
    own = item.get("alerting") or {}
    span = scale[1] - scale[0]
    objective = own.get("objective", defaults["objective"])
    if "objective" in own and objective is not None and not has_bad_threshold:
        raise fail(
            f"{path}.alerting.objective",
            "an SLO objective needs thresholds.bad (which conversations count as bad)",
        )
    min_delta = float(own.get("min_delta", defaults["min_delta_ratio"] * span))
    if min_delta > span:
        raise fail(f"{path}.alerting.min_delta", f"{min_delta:g} is larger than the scale")
    return DimensionAlerting(
        min_delta=min_delta,
        min_stddev=float(own.get("min_stddev", defaults["min_stddev_ratio"] * span)),
        objective=None if not has_bad_threshold or objective is None else float(objective),
    )


def check_objectives(alerting: AlertingConfig, objectives: Mapping[str, float], fail: Fail) -> None:
    """Refuse a burn-rate factor that needs more than every conversation bad.

    ``objectives`` maps the key path each dimension's objective came from to the objective.
    A factor of 14.4 fits a 99.9% objective, but times the 20% budget of a 0.8 objective it
    asks for 288% of conversations bad: such an alert can never fire.
    """
    for burn in alerting.burn_rates:
        for where, objective in objectives.items():
            budget = 1 - objective
            share = burn.factor * budget
            if share >= 1:
                raise fail(
                    f"$.alerting.slo.{burn.name}.factor",
                    f"{burn.factor:g} x the error budget of {where} (objective {objective:g}, "
                    f"so {budget:.4g} of conversations may be bad) is a bad share of "
                    f"{share:.4g}, which no traffic can reach: use a factor below "
                    f"{1 / budget:.4g}, or raise that objective",
                )
