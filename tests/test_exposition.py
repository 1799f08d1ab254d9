"""``GET /metrics`` writes the score histograms itself: the same text prometheus_client writes."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.config import parse_config
from exporter.config.loader import default_document
from exporter.metrics import (
    ExporterRegistry,
    LoopCounter,
    ScoreHistograms,
    exemplar_labels,
    render,
)
from exporter.web import create_app
from exporter.web.keys import METRICS, REGISTRY
from tests.conftest import conversation
from tests.support.app import MakeClient

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


class _Only:
    """One collector's ``collect``, for the library's encoders."""

    def __init__(self, histograms: ScoreHistograms) -> None:
        self._histograms = histograms

    def collect(self) -> Iterator[Metric]:
        return iter(self._histograms.collect())


def _histograms() -> ScoreHistograms:
    config = parse_config(default_document())
    # Label values a config could hold that need escaping, and counts past where Go's
    # formatting switches to exponents.
    agents = ["support-bot", 'say "hi"', "back\\slash"]
    histograms = ScoreHistograms(agents, config.dimensions)
    for index, dimension in enumerate(config.dimensions):
        low, high = dimension.scale_min, dimension.scale_max
        for step in range(5):
            histograms.observe(agents[index % 3], dimension.name, low + (high - low) * step / 4)
    # Exemplars in some buckets of one series: OpenMetrics writes them, the text format not.
    traced = exemplar_labels(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", conversation_id='c-"1"')
    histograms.observe("support-bot", "tool_success", 0.25, traced)
    histograms.observe("support-bot", "tool_success", 1.0, traced)
    series = histograms._series["support-bot", config.dimensions[0].name]
    series.counts[0] += 12_345_678
    series.sum += 1e17
    series.squares += 0.1
    return histograms


class TestScoreHistograms:
    def test_text_is_the_library_text(self) -> None:
        histograms = _histograms()
        assert histograms.expose(openmetrics=False) == generate_latest(_Only(histograms)).decode()

    def test_openmetrics_is_the_library_text(self) -> None:
        histograms = _histograms()
        expected = generate_openmetrics(_Only(histograms)).decode().removesuffix("# EOF\n")  # type: ignore[no-untyped-call]
        assert histograms.expose(openmetrics=True) == expected
        assert expected.count(' # {conversation_id="c-\\"1\\"",trace_id="4bf92f') == 2

    def test_a_new_exemplar_replaces_the_written_one(self) -> None:
        histograms = _histograms()
        histograms.expose(openmetrics=True)  # caches the exemplars as written
        later = exemplar_labels(trace_id="0af7651916cd43dd8448eb211c80319c", conversation_id="c-2")
        histograms.observe("support-bot", "tool_success", 0.25, later)
        text = histograms.expose(openmetrics=True)
        assert 'trace_id="0af7651916cd43dd8448eb211c80319c"' in text
        expected = generate_openmetrics(_Only(histograms)).decode().removesuffix("# EOF\n")  # type: ignore[no-untyped-call]
        assert text == expected

    def test_counts_around_a_million_are_the_library_text(self) -> None:
        """Below a million a count is written "n.0"; from there Go's exponent form."""
        histograms = _histograms()
        series = histograms._series["support-bot", "tool_success"]
        for count in (999_998, 999_999, 1_000_000):
            series.counts[-1] = count
            assert (
                histograms.expose(openmetrics=False) == generate_latest(_Only(histograms)).decode()
            )

    def test_new_bounds_after_a_reload_are_written(self) -> None:
        """A dimension whose buckets changed gets new label strings, not the cached ones."""
        histograms = _histograms()
        histograms.expose(openmetrics=False)  # caches the label strings
        document = default_document()
        document["dimensions"][0]["thresholds"] = {"bad": 0.25, "warning": 0.6}
        histograms.extend(["support-bot"], parse_config(document).dimensions)
        assert 'le="0.25"' in histograms.expose(openmetrics=False)
        assert histograms.expose(openmetrics=False) == generate_latest(_Only(histograms)).decode()


class TestLoopCounter:
    def test_both_formats_are_the_library_text(self) -> None:
        registry = ExporterRegistry()
        counter = LoopCounter(
            "agent_quality_things",
            'Things, by kind\\and "agent".',
            ("kind", "agent"),
            registry=registry,
        )
        counter.labels("b", 'say "hi"').inc(12_345_678)
        counter.labels("a", "back\\slash").inc(0.5)
        counter.labels("c", "x")  # a child at zero
        assert counter.expose(openmetrics=False) == generate_latest(counter).decode()
        openmetrics = generate_openmetrics(counter).decode().removesuffix("# EOF\n")  # type: ignore[no-untyped-call]
        assert counter.expose(openmetrics=True) == openmetrics
        counter.labels("c", "x").inc()  # cached label strings, new value
        assert counter.expose(openmetrics=False) == generate_latest(counter).decode()


class TestRegistry:
    def test_every_family_is_there_in_both_formats(self) -> None:
        """The direct path and the library's give the same families, samples and values."""
        app = create_app(parse_config(default_document()))
        registry = app[REGISTRY]
        assert isinstance(registry, ExporterRegistry)
        app[METRICS].scores.observe("support-bot", "tool_success", 0.5)
        for accept, encode, parse in (
            ("", generate_latest, parse_text),
            (OPENMETRICS, generate_openmetrics, parse_om),
        ):
            body, _ = render(registry, accept=accept, names=[])
            ours = {f.name: f.samples for f in parse(body.decode())}
            theirs = {f.name: f.samples for f in parse(encode(registry).decode())}
            assert ours == theirs
            assert len(ours) > 20

    def test_names_restrict_through_the_library(self) -> None:
        registry = create_app(parse_config(default_document()))[REGISTRY]
        body, _ = render(registry, accept="", names=["agent_quality_http_errors_total"])
        assert [f.name for f in parse_text(body.decode())] == ["agent_quality_http_errors"]


class TestEndpoint:
    async def test_prometheus_gets_gzipped_openmetrics(self, aiohttp_client: MakeClient) -> None:
        client = await aiohttp_client(create_app(parse_config(default_document())))
        response = await client.post("/v1/conversations", json=conversation(id="e-1"))
        assert response.status == 202
        response = await client.get(
            "/metrics",
            headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
            auto_decompress=False,
        )
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = gzip.decompress(await response.read()).decode()
        assert text.endswith("# EOF\n")
        names = {family.name for family in parse_om(text)}  # type: ignore[no-untyped-call]
        assert {"agent_quality_score", "agent_quality_conversations"} <= names

    async def test_plain_text_without_gzip(self, aiohttp_client: MakeClient) -> None:
        client = await aiohttp_client(create_app(parse_config(default_document())))
        response = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
        assert response.status == 200
        assert "Content-Encoding" not in response.headers
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "# TYPE agent_quality_score histogram" in await response.text()
