"""Collectors the daemon needs beyond prometheus_client's own metric types.

``ScoreHistograms`` gives each dimension its own bucket layout, ``LoopCounter`` counts without a
lock on the event-loop thread, and callback gauges read derived values at scrape time.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from exporter.config.model import Dimension
from exporter.names import PREFIX

__all__ = [
    "CallbackGauges",
    "HistogramSeries",
    "LoopChild",
    "LoopCounter",
    "LoopHistogram",
    "ScoreHistograms",
    "exemplar_labels",
    "total",
]

#: OpenMetrics: an exemplar's label names and values together hold at most 128 characters.
EXEMPLAR_MAX_CHARACTERS = 128
_TRACE_KEY, _CONVERSATION_KEY = "trace_id", "conversation_id"


def exemplar_labels(*, trace_id: str | None, conversation_id: str) -> dict[str, str] | None:
    """Return the exemplar labels of a traced conversation, or None without a trace.

    The conversation id is cut to what the OpenMetrics limit leaves after the trace id; it is
    a value of the exemplar, never of a series, so it adds no cardinality.
    """
    if trace_id is None:
        return None
    room = EXEMPLAR_MAX_CHARACTERS - len(_TRACE_KEY) - len(trace_id) - len(_CONVERSATION_KEY)
    return {_TRACE_KEY: trace_id, _CONVERSATION_KEY: conversation_id[: max(room, 0)]}


#: A cumulative bucket: ``(le, count)``, with its exemplar when it has one.
_Bucket = tuple[str, float] | tuple[str, float, Exemplar]


class HistogramSeries:
    """One histogram series: counts per bucket, sum and sum of squares.

    With exemplars, each bucket keeps the last one that fell into it (OpenMetrics shows one per
    bucket); a series that never had one pays nothing for them at scrape time.
    """

    __slots__ = ("bounds", "counts", "exemplars", "squares", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0
        self.squares = 0.0
        self.exemplars: list[Exemplar | None] | None = None

    def observe(self, value: float, exemplar: dict[str, str] | None = None) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le is inclusive).
        index = bisect.bisect_left(self.bounds, value)
        self.counts[index] += 1
        self.sum += value
        self.squares += value * value
        if exemplar is not None:
            if self.exemplars is None:
                self.exemplars = [None] * len(self.counts)
            # Timestamped, so Prometheus stores it once rather than again at every scrape.
            self.exemplars[index] = Exemplar(exemplar, value, time.time())

    def buckets(self) -> list[_Bucket]:
        """Return the cumulative ``(le, count)`` pairs, ``+Inf`` last, with exemplars if any."""
        bounds = (*self.bounds, float("inf"))
        if self.exemplars is not None:
            return self._with_exemplars(bounds, self.exemplars)
        cumulative, result = 0, list[_Bucket]()
        for bound, count in zip(bounds, self.counts, strict=True):
            cumulative += count
            result.append((_format_bound(bound), cumulative))
        return result

    def _with_exemplars(
        self, bounds: tuple[float, ...], exemplars: list[Exemplar | None]
    ) -> list[_Bucket]:
        cumulative, result = 0, list[_Bucket]()
        for bound, count, exemplar in zip(bounds, self.counts, exemplars, strict=True):
            cumulative += count
            if exemplar is None:
                result.append((_format_bound(bound), cumulative))
            else:
                result.append((_format_bound(bound), cumulative, exemplar))
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
        # The start of every exposition line of a series, made on its first scrape.
        self._labels: dict[tuple[str, str], _SeriesLines] = {}

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

    def observe(
        self,
        agent: str,
        dimension: str,
        value: float,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        """Record one score; the caller has checked that both labels are configured.

        ``exemplar`` (``exemplar_labels``) becomes its bucket's exemplar in OpenMetrics.
        """
        self._series[agent, dimension].observe(value, exemplar)

    def expose(self, *, openmetrics: bool) -> str:
        """Write both families as prometheus_client would, from label strings made once.

        ``exporter.metrics._exposition`` calls this instead of ``collect`` for a scrape: no
        ``Sample`` per bucket, no sorting and escaping of labels per line.
        """
        histogram, squares = _HEADERS[openmetrics]
        lines = [histogram]
        squared = [squares]
        for key, series in self._series.items():
            labels = self._labels.get(key)
            if labels is None or labels.bounds != series.bounds:
                labels = self._labels[key] = _SeriesLines(*key, bounds=series.bounds)
            labels.write(series, lines, openmetrics=openmetrics)
            squared.append(f"{labels.squares}{_value(series.squares)}\n")
        lines.extend(squared)
        return "".join(lines)

    def collect(self) -> Iterator[Metric]:
        histogram = HistogramMetricFamily(
            f"{PREFIX}_score", _SCORE_HELP, labels=("agent", "dimension")
        )
        squares = CounterMetricFamily(
            f"{PREFIX}_score_squares", _SQUARES_HELP, labels=("agent", "dimension")
        )
        for (agent, dimension), series in self._series.items():
            histogram.add_metric([agent, dimension], series.buckets(), series.sum)
            squares.add_metric([agent, dimension], series.squares)
        yield histogram
        yield squares


_SCORE_HELP = "Scores per agent and quality dimension, in the dimension's own scale."
_SQUARES_HELP = "Running sum of squared scores, for variance and significance in rules."


def _header(family: Metric, *, openmetrics: bool) -> str:
    """Return the HELP and TYPE lines of ``family``, as the library's encoder writes them."""
    encoder, _ = choose_encoder(_OPENMETRICS if openmetrics else "")
    return encoder(_Families(family)).decode("utf-8").removesuffix("# EOF\n")


def _headers(*, openmetrics: bool) -> tuple[str, str]:
    """Return the HELP and TYPE lines of the score families."""
    histogram = HistogramMetricFamily(f"{PREFIX}_score", _SCORE_HELP, labels=("agent", "dimension"))
    squares = CounterMetricFamily(
        f"{PREFIX}_score_squares", _SQUARES_HELP, labels=("agent", "dimension")
    )
    return _header(histogram, openmetrics=openmetrics), _header(squares, openmetrics=openmetrics)


class _Families(Collector):
    def __init__(self, *families: Metric) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


_OPENMETRICS = "application/openmetrics-text"
_HEADERS = {False: _headers(openmetrics=False), True: _headers(openmetrics=True)}


def _value(value: float) -> str:
    # The library's own formatting ("3.0", "1.5e+06", "+Inf"), so the text is identical.
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _SeriesLines:
    """The start of each exposition line of one (agent, dimension) series."""

    __slots__ = ("bounds", "buckets", "count", "marks", "squares", "sum")

    def __init__(self, agent: str, dimension: str, *, bounds: tuple[float, ...]) -> None:
        pair = f'agent="{_label(agent)}",dimension="{_label(dimension)}"'
        self.bounds = bounds
        self.buckets = tuple(
            f'{PREFIX}_score_bucket{{{pair},le="{_label(_format_bound(bound))}"}} '
            for bound in (*bounds, float("inf"))
        )
        self.count = f"{PREFIX}_score_count{{{pair}}} "
        self.sum = f"{PREFIX}_score_sum{{{pair}}} "
        self.squares = f"{PREFIX}_score_squares_total{{{pair}}} "
        # Each bucket's exemplar as last written: it changes only when a score lands there.
        self.marks: list[tuple[Exemplar | None, str]] = [(None, "")] * len(self.buckets)

    def write(self, series: HistogramSeries, lines: list[str], *, openmetrics: bool) -> None:
        """Append the series' bucket, count and sum lines to ``lines``."""
        cumulative = 0
        exemplars = series.exemplars if openmetrics else None  # the text format has none
        if exemplars is None:
            for start, count in zip(self.buckets, series.counts, strict=True):
                cumulative += count
                lines.append(f"{start}{_count(cumulative)}\n")
        else:
            marks = self.marks
            for index, (start, count, exemplar) in enumerate(
                zip(self.buckets, series.counts, exemplars, strict=True)
            ):
                cumulative += count
                if exemplar is None:
                    lines.append(f"{start}{_count(cumulative)}\n")
                    continue
                seen, mark = marks[index]
                if seen is not exemplar:
                    mark = _exemplar(exemplar)
                    marks[index] = (exemplar, mark)
                lines.append(f"{start}{_count(cumulative)}{mark}\n")
        lines.append(f"{self.count}{_count(cumulative)}\n")
        lines.append(f"{self.sum}{_value(series.sum)}\n")


def _count(count: int) -> str:
    # floatToGoString(n) is "n.0" below a million (where Go switches to exponents): most counts.
    return f"{count}.0" if 0 <= count < 1_000_000 else _value(count)


def _exemplar(exemplar: Exemplar) -> str:
    """Return an exemplar as OpenMetrics writes it after its bucket's value."""
    labels = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(exemplar.labels.items()))
    if exemplar.timestamp is None:
        return f" # {{{labels}}} {_value(exemplar.value)}"
    return f" # {{{labels}}} {_value(exemplar.value)} {exemplar.timestamp}"


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
        # What ``expose`` writes before each value, and the family's HELP and TYPE lines.
        self._starts: dict[tuple[str, ...], str] = {}
        self._headers: dict[bool, str] = {}
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

    def expose(self, *, openmetrics: bool) -> str:
        """Write the family as prometheus_client would, from label strings made once."""
        header = self._headers.get(openmetrics)
        if header is None:
            family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
            header = self._headers[openmetrics] = _header(family, openmetrics=openmetrics)
        lines = [header]
        starts = self._starts
        for values, child in self._children.items():
            start = starts.get(values)
            if start is None:
                start = starts[values] = self._start(values)
            lines.append(f"{start}{_value(child.value)}\n")
        return "".join(lines)

    def _start(self, values: tuple[str, ...]) -> str:
        # The library writes labels sorted by name.
        pairs = sorted(zip(self._labelnames, values, strict=True))
        labels = ",".join(f'{name}="{_label(value)}"' for name, value in pairs)
        name = self._name.removesuffix("_total")
        return f"{name}_total{{{labels}}} " if labels else f"{name}_total "


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
