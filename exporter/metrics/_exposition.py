"""``GET /metrics``: the exposition, with the largest families written directly.

prometheus_client formats every sample on its own: a ``Sample`` tuple, a sorted dict of labels,
each escaped, per line. ``agent_quality_score`` has a line per bucket of every (agent,
dimension) pair, four fifths of a scrape at 20 agents and 10 dimensions, and formatting them
took most of a scrape's time (docs/benchmarks.md, "Scrape: exposition written directly").
Collectors that are ``Exposed`` (the score histograms, the lock-free counters) write their
families here from label strings made once per series; every other family still goes
through prometheus_client's own encoders. Both formats are byte for byte what
prometheus_client writes for the same families (tests/test_exposition.py checks it), only
their order differs: the directly written families come first.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["ExporterRegistry", "Exposed", "compressed", "render"]

OPENMETRICS_TYPE = "application/openmetrics-text"
#: gzip level of a scrape: level 1 takes a tenth of the default's time for a fifth more bytes
#: (a 320 KB exposition: 0.7 ms and 27 KB instead of 7 ms and 23 KB).
GZIP_LEVEL = 1


@runtime_checkable
class Exposed(Protocol):
    """A collector that writes its own families' exposition (and can still ``collect``)."""

    def collect(self) -> Iterable[Metric]:
        """Return its families as prometheus_client metrics (``name[]``, other encoders)."""
        ...

    def expose(self, *, openmetrics: bool) -> str:
        """Return its families in the text format, or in OpenMetrics (without ``# EOF``)."""
        ...


class ExporterRegistry(CollectorRegistry):
    """A ``CollectorRegistry`` that remembers its collectors, to expose some of them directly."""

    def __init__(self) -> None:
        super().__init__()
        self._collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        super().register(collector)
        self._collectors.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self._collectors.remove(collector)

    def exposition(self, encoder: Callable[[Collector], bytes], *, openmetrics: bool) -> bytes:
        """Return every family: ``Exposed`` ones written directly, the rest by ``encoder``."""
        direct: list[Exposed] = []
        rest: list[Collector] = []
        for collector in self._collectors:
            if isinstance(collector, Exposed):
                direct.append(collector)
            else:
                rest.append(collector)
        head = "".join(collector.expose(openmetrics=openmetrics) for collector in direct)
        return head.encode("utf-8") + encoder(_Collectors(rest))


class _Collectors(Collector):
    """The ``collect`` of several collectors, for prometheus_client's encoders."""

    def __init__(self, collectors: Sequence[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def render(registry: CollectorRegistry, *, accept: str, names: Sequence[str]) -> tuple[bytes, str]:
    """Return the exposition ``accept`` asks for and its content type, as prometheus_client.

    ``names`` (the ``name[]`` query parameters) restrict it to those series, through the
    library's own path; so does a registry other than ``ExporterRegistry``.
    """
    encoder, content_type = choose_encoder(accept)
    if names:
        return encoder(registry.restricted_registry(names)), content_type
    if not isinstance(registry, ExporterRegistry):
        return encoder(registry), content_type
    openmetrics = content_type.startswith(OPENMETRICS_TYPE)
    return registry.exposition(encoder, openmetrics=openmetrics), content_type


def compressed(body: bytes, *, accept_encoding: str) -> bytes | None:
    """Return ``body`` gzipped if the client takes gzip, else None."""
    if not gzip_accepted(accept_encoding):
        return None
    return gzip.compress(body, GZIP_LEVEL)
