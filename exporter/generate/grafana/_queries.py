"""The PromQL of the dashboards: recorded series by the names in ``conventions``, raw counters.

Panels read the recording rules wherever one exists, so a dashboard shows exactly what the
alerts evaluate; only what no rule records (the 30-day error budget, rates for graphs) is
computed here from the raw series.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.config.alerting import AlertingConfig, DegradationTier
from exporter.config.model import Dimension
from exporter.generate.conventions import (
    BASELINE,
    PREFIX,
    SCORE,
    Alert,
    Record,
    le_value,
    window_name,
)
from exporter.generate.timing import timing

__all__ = [
    "EXPORTER_ALERTS",
    "QUALITY_ALERTS",
    "SLO_PERIOD",
    "Windows",
    "baseline_mean",
    "budget_remaining",
    "dimension_matcher",
    "firing",
    "metric",
    "rate",
    "series",
]

#: The period an SLO's error budget is spent over: the burn-rate factors of the alerts assume
#: 30 days (SRE workbook, chapter 5).
SLO_PERIOD = "30d"

QUALITY_ALERTS = (Alert.DEGRADED, Alert.THRESHOLD, Alert.BURN)
EXPORTER_ALERTS = (
    Alert.EXPORTER_DOWN,
    Alert.EXPORTER_ABSENT,
    Alert.NO_EVALUATIONS,
    Alert.DROPS,
    Alert.SCORER_ERRORS,
    Alert.JUDGE_ERRORS,
    Alert.QUEUE,
    Alert.CONFIG_RELOAD,
    Alert.SAMPLING_BUDGET,
)


def series(name: str, *matchers: str) -> str:
    """Return ``name{m1, m2}``: a selector from label matchers."""
    present = [m for m in matchers if m]
    return f"{name}{{{', '.join(present)}}}" if present else name


def dimension_matcher(dimension: Dimension) -> str:
    """Return the matcher of one dimension's series."""
    return f'dimension="{dimension.name}"'


@dataclass(frozen=True, slots=True)
class Windows:
    """Which recorded windows the panels show; all of them exist for the config's rules."""

    #: The alerts' "current window": its mean is compared with the baseline.
    current: str
    #: The shortest dashboard window: time series of means and shares.
    trend: str
    #: The share-past-threshold window shown as a number.
    share: str
    #: The burn-rate window shown (the shortest long window of the burn-rate alerts), if any.
    burn: str | None
    #: The degradation tier whose drop and z-score are shown (the longest window), if any.
    tier: DegradationTier | None
    #: That tier's window.
    tier_window: str

    @classmethod
    def of(cls, alerting: AlertingConfig) -> Windows:
        """Return the windows for ``alerting``, as exporter/generate/timing.py derives them."""
        timed = timing(alerting)
        current = alerting.current_window
        assert current in timed.moment_windows()  # recording.py records it, always
        shorter = [w for w in timed.dashboard if w <= current]
        share = max(shorter) if shorter else min(timed.dashboard)
        longs = [burn.long_window for burn in timed.burns]
        burn = min(longs) if longs else None
        tiers = sorted(timed.tiers, key=lambda tier: -tier.window)
        return cls(
            current=window_name(current),
            trend=window_name(min(timed.dashboard)),
            share=window_name(share),
            burn=None if burn is None else window_name(burn),
            tier=tiers[0].tier if tiers else None,
            tier_window=window_name(tiers[0].window) if tiers else "",
        )


def baseline_mean() -> str:
    """Return the recorded baseline mean's name."""
    return Record.mean(BASELINE)


def budget_remaining(dimension: Dimension, agent: str) -> str | None:
    """Return the share of the SLO period's error budget left, or None without an SLO.

    No rule records a 30-day ratio (the alerts need at most days), so it is computed from
    the histogram here, counting bad conversations the way the recorded error ratio does.
    """
    objective, bad = dimension.alerting.objective, dimension.thresholds.bad
    if objective is None or bad is None:
        return None
    by = "sum by (agent, dimension)"
    match = dimension_matcher(dimension)
    bucket = series(f"{SCORE}_bucket", agent, match, f'le="{le_value(bad)}"')
    good_or_bad = f"{by} (increase({bucket}[{SLO_PERIOD}]))"
    count = f"({by} (increase({series(f'{SCORE}_count', agent, match)}[{SLO_PERIOD}])) > 0)"
    ratio = f"{good_or_bad}\n/\n{count}"
    if not dimension.higher_is_better:
        ratio = f"1 - (\n{ratio}\n)"
    return f"1 - (\n{ratio}\n) / {1 - objective:.6g}"


def firing(names: tuple[str, ...], *matchers: str) -> str:
    """Return the ``ALERTS`` selector of these alerts while firing (labels only)."""
    return series("ALERTS", 'alertstate="firing"', f'alertname=~"{"|".join(names)}"', *matchers)


def rate(name: str, *matchers: str, by: str = "") -> str:
    """Return a per-second rate over Grafana's ``$__rate_interval``, summed ``by`` labels."""
    total = f"sum by ({by})" if by else "sum"
    return f"{total} (rate({series(name, *matchers)}[$__rate_interval]))"


def metric(name: str) -> str:
    """Return a raw metric's full name."""
    return f"{PREFIX}_{name}"
