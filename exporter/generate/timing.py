"""The effective windows and holds of every generated rule, derived from the config.

Two settings drive them (docs/alerting.md has the reasoning): ``alerting.scrape_interval``,
since a window must hold at least ``SCRAPES_PER_WINDOW`` scrapes, and ``alerting.min_duration``,
the longest dip that must not alert. A dip lasting ``L`` changes every window that overlaps it,
so an alert only proves a drop outlasted ``L`` by seeing it at two moments more than ``L``
apart: a short window held (``for``) through ``L`` + the window, or two edges of a long window
with ``L`` between them. Recording rules, alerts, the runbook and the dashboards all read this
module, so what the runbook prints is what the rules do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from exporter.config.alerting import SCRAPES_PER_WINDOW, AlertingConfig, BurnRate, DegradationTier

__all__ = [
    "BURN_ZSCORE",
    "EDGE_ZSCORE",
    "HOLD_END_ZSCORE",
    "BurnTiming",
    "Persistence",
    "TierTiming",
    "Timing",
    "timing",
]

MINUTE, HOUR = 60.0, 3600.0
#: Windows recorded for dashboards whatever the alerting tiers use (before raising), in seconds.
DASHBOARD_WINDOWS = (300.0, 1800.0, HOUR)
#: The rate window of the alerts about the exporter itself (before raising), in seconds.
EXPORTER_WINDOW = 300.0
#: Recorded increases that long windows are added up from, shortest first (each divides 1h).
STEPS = (300.0, 600.0, 900.0, 1200.0, 1800.0, HOUR)
#: Significance each edge of a long window needs on its own. A deep dip can fill one edge, so
#: the other must not pass by luck: a healthy edge reaches 3 standard errors about once in 700
#: (scores are skewed and the spread is estimated), a quiet agent's handful only on a real drop.
EDGE_ZSCORE = 3.0
#: How far past the error budget a burn pair's short window must be, in standard errors of a
#: share at the budget: a binomial with a known rate, where 2 is one in 40 and the long window
#: and the other short window must agree. At busy traffic the pair's own share is stricter.
BURN_ZSCORE = 2.0
#: Significance the newest window of a held condition needs when the page goes out. A dip's
#: run of degraded windows can be stretched by one lucky healthy window at either end; this
#: stops the one after it (a healthy window reaches 3 standard errors about once in 700).
HOLD_END_ZSCORE = 3.0


@dataclass(frozen=True, slots=True)
class Persistence:
    """How a window-based condition proves that a drop has outlasted ``min_duration``.

    Either the window's first and last ``edge`` seconds must each show the drop too, or (no
    edge) the condition holds for ``for_``. ``held``: that hold is counted from a recorded
    series over the last ``for_`` rather than by ``for``, so the page can also ask its newest
    window for ``HOLD_END_ZSCORE``.
    """

    window: float
    edge: float | None
    for_: float
    held: bool = False

    def evaluations(self, scrape: float) -> int:
        """Return how many evaluations in a row a held condition needs."""
        return round(self.for_ / scrape) + 1


@dataclass(frozen=True, slots=True)
class TierTiming:
    """A degradation tier as generated."""

    tier: DegradationTier
    persistence: Persistence

    @property
    def window(self) -> float:
        """Return the effective window."""
        return self.persistence.window


@dataclass(frozen=True, slots=True)
class BurnTiming:
    """A burn-rate pair as generated: the short window now and ``gap`` seconds ago."""

    burn: BurnRate
    long_window: float
    short_window: float
    gap: float


@dataclass(frozen=True, slots=True)
class Timing:
    """Every effective window, edge and hold of one config's rules."""

    scrape: float
    min_duration: float
    tiers: tuple[TierTiming, ...]
    absolute: Persistence
    burns: tuple[BurnTiming, ...]
    dashboard: tuple[float, ...]
    exporter: float
    step: float

    def moment_windows(self) -> tuple[float, ...]:
        """Return every window that gets count/sum/squares/mean/stddev rules, shortest first.

        Besides what the alerts and dashboards read: the step and the hour that longer
        windows are added up from.
        """
        edges = [t.persistence.edge for t in self.tiers] + [self.absolute.edge]
        tiers = (t.window for t in self.tiers)
        shorts = (b.short_window for b in self.burns)
        found = {*self.dashboard, self.absolute.window, *tiers, *(e for e in edges if e)}
        return tuple(sorted({*found, *shorts, self.step, HOUR}))

    def degradation_windows(self) -> tuple[float, ...]:
        """Return the windows whose drop against the baseline is recorded (tiers and edges)."""
        found = {t.window for t in self.tiers}
        found.update(t.persistence.edge for t in self.tiers if t.persistence.edge)
        return tuple(sorted(found))

    def slo_windows(self) -> tuple[float, ...]:
        """Return every window a burn-rate pair reads, shortest first."""
        return tuple(sorted({w for b in self.burns for w in (b.long_window, b.short_window)}))


def raise_window(seconds: float, scrape: float) -> float:
    """Return ``seconds`` raised to whole scrape intervals, at least ``SCRAPES_PER_WINDOW``."""
    scrapes = max(math.ceil(seconds / scrape), SCRAPES_PER_WINDOW)
    return scrapes * scrape


def _floor(seconds: float, scrape: float) -> float:
    return math.floor(seconds / scrape) * scrape


def persistence(window: float, for_: float, *, scrape: float, min_duration: float) -> Persistence:
    """Return how a condition over ``window`` (already raised) outlasts ``min_duration``.

    Edges need room for two windows of their own; otherwise the condition is held. Held, a
    dip of ``L`` keeps a window of ``W`` changed for at most ``(L + W) / scrape - 1``
    evaluations, so holding ``L + W - scrape`` (one evaluation more) outlasts it.
    """
    if min_duration <= 0:
        return Persistence(window, None, for_)
    edge = _floor((window - min_duration) / 2, scrape)
    if edge >= SCRAPES_PER_WINDOW * scrape:
        return Persistence(window, edge, for_)
    return Persistence(window, None, max(for_, min_duration + window - scrape), held=True)


def _step(scrape: float) -> float:
    """Return the shortest recorded increase long windows are added up from."""
    floor = SCRAPES_PER_WINDOW * scrape
    return next((step for step in STEPS if step >= floor), HOUR)


def timing(alerting: AlertingConfig) -> Timing:
    """Return the effective timing of ``alerting``'s rules."""
    scrape, dip = alerting.scrape_interval, alerting.min_duration
    tiers = tuple(
        TierTiming(
            tier,
            persistence(
                min(raise_window(tier.window, scrape), alerting.current_window),
                tier.for_,
                scrape=scrape,
                min_duration=dip,
            ),
        )
        for tier in alerting.degradation
    )
    absolute = persistence(
        alerting.current_window, alerting.absolute.for_, scrape=scrape, min_duration=dip
    )
    burns = []
    for burn in alerting.burn_rates:
        short = raise_window(burn.short_window, scrape)
        long = max(raise_window(burn.long_window, scrape), short + scrape)
        burns.append(BurnTiming(burn, long, short, dip + short if dip > 0 else 0.0))
    return Timing(
        scrape=scrape,
        min_duration=dip,
        tiers=tiers,
        absolute=absolute,
        burns=tuple(burns),
        dashboard=tuple(sorted({raise_window(w, scrape) for w in DASHBOARD_WINDOWS})),
        exporter=raise_window(EXPORTER_WINDOW, scrape),
        step=_step(scrape),
    )
