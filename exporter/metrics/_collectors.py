"""Collectors the daemon needs beyond prometheus_client's own metric types.

``ScoreHistograms`` gives each dimension its own bucket layout, ``LoopCounter`` counts without a
lock on the event-loop thread, and callback gauges read derived values at scrape time.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.config.model import Dimension
from exporter.names import PREFIX

__all__ = [
    "CallbackGauges",
    "HistogramSeries",
    "LoopChild",
    "LoopCounter",
    "LoopHistogram",
    "ScoreHistograms",
    "total",
]


class HistogramSeries:
    """One histogram series: counts per bucket, sum and sum of squares."""

    __slots__ = ("bounds", "counts", "squares", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.squares = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le is inclusive).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.squares += value * value

    def buckets(self) -> list[tuple[str, float]]:
        """Return the cumulative ``(le, count)`` pairs, ``+Inf`` last."""
        cumulative, result = 0, list[tuple[str, float]]()
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            result.append((_format_bound(bound), cumulative))
        return result


class LoopHistogram(Collector):
    """A labelled histogram updated only from the event-loop thread, without a lock.

    For the same reason as ``LoopCounter``: prometheus_client's ``Histogram`` locks on every
    observation, and the pipeline observes one per scorer run. Same ``.labels(...).observe(v)``.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        *,
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._bounds = tuple(sorted(buckets))
        self._children: dict[tuple[str, ...], HistogramSeries] = {}
        registry.register(self)

    def labels(self, *values: str) -> HistogramSeries:
        """Return the series for these label values, creating it empty."""
        series = self._children.get(values)
        if series is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes labels {self._labelnames}, got {values}")
            series = self._children[values] = HistogramSeries(self._bounds)
        return series

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, series in self._children.items():
            family.add_metric(list(values), series.buckets(), series.sum)
        yield family


class ScoreHistograms(Collector):
    """``agent_quality_score`` and ``agent_quality_score_squares_total``.

    prometheus_client gives one bucket layout per metric; each dimension needs its own
    (always including its thresholds), so this collector keeps the counts itself. Every
    (agent, dimension) pair is exported from the start, so rules never see absent series.
    """

    def __init__(self, agents: Iterable[str], dimensions: Iterable[Dimension]) -> None:
        self._series = {
            (agent, dimension.name): HistogramSeries(dimension.buckets)
            for agent in agents
            for dimension in dimensions
        }

    def extend(self, agents: Iterable[str], dimensions: Iterable[Dimension]) -> None:
        """Add series for new agents and dimensions (a reload); keep every existing count.

        A dimension whose bucket bounds changed starts a fresh series: adding its old counts
        to new bounds would be wrong, and Prometheus treats the restart as a counter reset.
        """
        for dimension in dimensions:
            for agent in agents:
                series = self._series.get((agent, dimension.name))
                if series is None or series.bounds != dimension.buckets:
                    self._series[agent, dimension.name] = HistogramSeries(dimension.buckets)

    def observe(self, agent: str, dimension: str, value: float) -> None:
        """Record one score; the caller has checked that both labels are configured."""
        self._series[agent, dimension].observe(value)

    def collect(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(
            f"{PREFIX}_score",
            "Scores per agent and quality dimension, in the dimension's own scale.",
            labels=("agent", "dimension"),
        )
        squares = CounterMetricFamily(
            f"{PREFIX}_score_squares",
            "Running sum of squared scores, for variance and significance in rules.",
            labels=("agent", "dimension"),
        )
        for (agent, dimension), series in self._series.items():
            histogram.add_metric([agent, dimension], series.buckets(), series.sum)
            squares.add_metric([agent, dimension], series.squares)
        yield histogram
        yield squares


def _format_bound(bound: float) -> str:
    if bound == float("inf"):
        return "+Inf"
    return repr(float(bound))


class LoopChild:
    """One label set's value of a ``LoopCounter``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (not negative)."""
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class LoopCounter(Collector):
    """A labelled counter updated only from the event-loop thread, without a lock.

    prometheus_client's ``Counter`` takes a lock on every increment; ingest makes several per
    request, all on the loop thread, where scrapes run too (the aiohttp handler is synchronous),
    so the lock buys nothing there. Same ``.labels(...).inc(n)`` API. Never increment one from
    another thread (a worker thread of a sync plugin, the dataset writer): use ``Counter``.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        *,
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._children: dict[tuple[str, ...], LoopChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> LoopChild:
        """Return the child for these label values, creating it at zero."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes labels {self._labelnames}, got {values}")
            child = self._children[values] = LoopChild()
        return child

    def children(self) -> list[tuple[tuple[str, ...], LoopChild]]:
        """Return every label set with its child."""
        return list(self._children.items())

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, child in self._children.items():
            family.add_metric(list(values), child.value)
        yield family


def total(counter: LoopCounter) -> float:
    """Return the sum over every label set of ``counter``."""
    return sum(child.value for _, child in counter.children())


class CallbackGauges(Collector):
    """Gauges whose values are read when scraped (queue depth, buffer sizes, sampling rates)."""

    def __init__(self) -> None:
        self._gauges: list[tuple[str, str, Callable[[], float]]] = []
        self._labelled: list[tuple[str, str, str, Callable[[], Mapping[str, float]]]] = []

    def add(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._gauges.append((name, documentation, read))

    def add_labelled(
        self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """Add a gauge with one label; ``read`` returns the value per label value."""
        self._labelled.append((name, documentation, label, read))

    def collect(self) -> Iterator[Metric]:
        for name, documentation, read in self._gauges:
            yield GaugeMetricFamily(name, documentation, value=read())
        for name, documentation, label, read_all in self._labelled:
            family = GaugeMetricFamily(name, documentation, labels=(label,))
            for value_label, value in sorted(read_all().items()):
                family.add_metric((value_label,), value)
            yield family
