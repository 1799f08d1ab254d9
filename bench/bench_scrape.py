"""``GET /metrics`` at 20 agents x 10 dimensions: the daemon against plain prometheus_client.

    python bench/bench_scrape.py [--scrapes 200] [--agents 20] [--dimensions 10]

The real daemon runs pinned to one core with a config of 20 agents (plus ``other``) and 10
dimensions (the default five and five more on 0-1) and the default scorers; every agent sends
conversations carrying upstream scores for every dimension and a trace id, so every series has
data and every bucket an exemplar (OpenMetrics; the text format has none). This
process scrapes from the other core over one keep-alive connection: median and p99 wall time
of ``--scrapes`` scrapes, the server's CPU time per scrape, and the body size, in three forms:
Prometheus text, OpenMetrics, and what Prometheus itself asks for (its ``Accept`` header,
which prefers OpenMetrics, with gzip).

The baseline, measured in the same run on the same core: the same families with exactly the
same series (names, labels, bucket bounds), built from standard ``Counter``, ``Gauge`` and
``Histogram`` objects in a plain ``CollectorRegistry`` and served by
``prometheus_client.aiohttp.make_aiohttp_handler``. Targets, in every form: median <= 15 ms,
p99 <= 40 ms (the daemon's own exemplars included in OpenMetrics).
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from _harness import (
    LOAD_CPU,
    conversation,
    cpu_seconds,
    daemon_args,
    free_port,
    pinned_self,
    scraped,
    server,
    total,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.config.loader import default_document

TARGET_MEDIAN_MS, TARGET_P99_MS = 15.0, 40.0
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
#: What Prometheus 2.42 sends: OpenMetrics preferred, gzip.
PROMETHEUS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
FORMS: dict[str, dict[str, str]] = {
    "text": {},
    "openmetrics": {"Accept": OPENMETRICS},
    "prometheus": PROMETHEUS,
}


def config_document(agents: int, dimensions: int) -> dict[str, Any]:
    """Return a config of ``agents`` agents, ``dimensions`` dimensions, everything sampled."""
    declared = default_document()["dimensions"]
    for index in range(len(declared), dimensions):
        declared.append(
            {
                "name": f"quality_{index + 1}",
                "description": "An extra 0-1 dimension for the scrape bench.",
                "scale": {"min": 0, "max": 1},
                "thresholds": {"bad": 0.5, "warning": 0.8},
            }
        )
    return {
        "agents": [f"agent-{index:02d}" for index in range(agents)],
        "dimensions": declared[:dimensions],
        "sampling": {"base_rate": 1.0, "boost_rate": 1.0, "daily_budget": {"max_samples": None}},
    }


def populate(port: int, document: dict[str, Any], *, per_agent: int = 10) -> int:
    """Send conversations scoring every dimension for every agent (and ``other``)."""
    scales = [(d["name"], d["scale"]["min"], d["scale"]["max"]) for d in document["dimensions"]]
    lines = []
    for a, agent in enumerate([*document["agents"], "not-configured"]):
        for n in range(per_agent):
            item = conversation(a * per_agent + n)
            item["agent"] = agent
            # Every conversation traced, so every bucket of ours carries an exemplar.
            item["trace_id"] = f"{a * per_agent + n + 1:032x}"
            spread = (n + a) % per_agent / max(per_agent - 1, 1)
            item["scores"] = {name: low + (high - low) * spread for name, low, high in scales}
            lines.append(json.dumps(item).encode())
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/conversations",
        data=b"\n".join(lines),
        headers={"Content-Type": "application/x-ndjson"},
    )
    urllib.request.urlopen(request, timeout=30).close()
    deadline = time.monotonic() + 60
    while total(scraped(port), "agent_quality_scored_total") < len(lines):
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon did not score the populating conversations in 60 s")
        time.sleep(0.2)
    return len(lines)


def baseline_spec(exposition: str) -> list[dict[str, Any]]:
    """Describe every family of ``exposition`` for standard prometheus_client objects."""
    spec: list[dict[str, Any]] = []
    for family in text_string_to_metric_families(exposition):
        labels = sorted({k for s in family.samples for k in s.labels if k != "le"})
        if not family.samples:  # labelled, no child yet: HELP and TYPE only, as ours
            spec.append(
                {
                    "name": family.name,
                    "type": family.type,
                    "labels": ["unused"],
                    "buckets": [1.0],
                    "children": [],
                }
            )
        elif family.type in ("counter", "gauge"):
            children = [
                [[s.labels[k] for k in labels], s.value]
                for s in family.samples
                if s.name.endswith("_total") or family.type == "gauge"
            ]
            spec.append(
                {"name": family.name, "type": family.type, "labels": labels, "children": children}
            )
        elif family.type == "histogram":
            layouts: dict[tuple[float, ...], list[list[str]]] = {}
            bounds: dict[tuple[str, ...], list[float]] = {}
            for s in family.samples:
                if s.name.endswith("_bucket") and s.labels["le"] != "+Inf":
                    key = tuple(s.labels[k] for k in labels)
                    bounds.setdefault(key, []).append(float(s.labels["le"]))
            for key, child_bounds in bounds.items():
                layouts.setdefault(tuple(child_bounds), []).append(list(key))
            # One standard Histogram per bucket layout (prometheus_client allows one per metric).
            # The most common layout keeps the name; the others get a short suffix.
            ordered = sorted(layouts.items(), key=lambda item: -len(item[1]))
            for index, (layout, members) in enumerate(ordered):
                name = f"{family.name}_{index}" if index else family.name
                spec.append(
                    {
                        "name": name,
                        "type": "histogram",
                        "labels": labels,
                        "buckets": list(layout),
                        "children": members,
                    }
                )
        else:
            raise RuntimeError(f"no standard twin for {family.type} {family.name}")
    return spec


def serve_baseline(port: int, spec_path: Path) -> None:
    """Serve ``spec_path``'s families from standard metrics on ``port``."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client import disable_created_metrics as no_created
    from prometheus_client.aiohttp import make_aiohttp_handler

    no_created()  # type: ignore[no-untyped-call]  # as the daemon: same series count
    registry = CollectorRegistry()
    for family in json.loads(spec_path.read_text()):
        name, labels = family["name"], family["labels"]
        if family["type"] == "counter":
            counter = Counter(name, name, labels, registry=registry)
            for values, value in family["children"]:
                (counter.labels(*values) if labels else counter).inc(value)
        elif family["type"] == "gauge":
            gauge = Gauge(name, name, labels, registry=registry)
            for values, value in family["children"]:
                (gauge.labels(*values) if labels else gauge).set(value)
        else:
            histogram = Histogram(name, name, labels, buckets=family["buckets"], registry=registry)
            for values in family["children"]:
                child = histogram.labels(*values)
                for bound in family["buckets"]:
                    child.observe(bound)
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Scrapes of one form from one server."""

    median_ms: float
    p99_ms: float
    cpu_ms: float
    size: int
    series: int


def time_scrapes(port: int, pid: int, *, count: int, headers: dict[str, str]) -> Timing:
    """Scrape ``count`` times over one connection (after 5 warm-ups) and time each."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def scrape() -> bytes:
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}")
        return body

    try:
        for _ in range(5):
            body = scrape()
        times = []
        cpu_before = cpu_seconds(pid)
        for _ in range(count):
            started = time.perf_counter()
            body = scrape()
            times.append(time.perf_counter() - started)
        cpu = cpu_seconds(pid) - cpu_before
    finally:
        connection.close()
    series = 0
    if "Accept-Encoding" not in headers:
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    p99 = statistics.quantiles(times, n=100)[98] if len(times) >= 2 else times[0]
    return Timing(statistics.median(times) * 1e3, p99 * 1e3, cpu / count * 1e3, len(body), series)


def measure(*, agents: int, dimensions: int, scrapes: int) -> dict[str, dict[str, Timing]]:
    """Time every form against the daemon, then against its standard twin."""
    results: dict[str, dict[str, Timing]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        document = config_document(agents, dimensions)
        config = Path(tmp) / "scrape.yml"
        config.write_text(yaml.safe_dump(document))
        port = free_port()
        with server(daemon_args(port, config), port=port) as pid:
            populate(port, document)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                exposition = response.read().decode()
            results["daemon"] = {
                form: time_scrapes(port, pid, count=scrapes, headers=headers)
                for form, headers in FORMS.items()
            }
        spec = Path(tmp) / "baseline.json"
        spec.write_text(json.dumps(baseline_spec(exposition)))
        port = free_port()
        twin = [sys.executable, "bench/bench_scrape.py", "--serve-baseline", str(port), str(spec)]
        with server(twin, port=port) as pid:
            results["standard"] = {
                form: time_scrapes(port, pid, count=scrapes, headers=headers)
                for form, headers in FORMS.items()
            }
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the bench, print its table and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--dimensions", type=int, default=10)
    parser.add_argument(
        "--serve-baseline", nargs=2, metavar=("PORT", "SPEC"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve_baseline:
        serve_baseline(int(args.serve_baseline[0]), Path(args.serve_baseline[1]))
        return {}
    with pinned_self(LOAD_CPU):
        results = measure(agents=args.agents, dimensions=args.dimensions, scrapes=args.scrapes)
    ours, standard = results["daemon"], results["standard"]
    if ours["text"].series != standard["text"].series:
        raise RuntimeError(f"series differ: {ours['text'].series} vs {standard['text'].series}")
    print(
        f"{args.agents} agents (+ other) x {args.dimensions} dimensions: "
        f"{ours['text'].series:,} series; {args.scrapes} scrapes each, one connection"
    )
    head = ("server, form", "median ms", "p99 ms", "CPU ms", "KiB", "target")
    print(f"{head[0]:<28}{head[1]:>11}{head[2]:>9}{head[3]:>9}{head[4]:>9}{head[5]:>10}")
    for who, timings in results.items():
        for form, t in timings.items():
            target = f"<= {TARGET_MEDIAN_MS:g}/{TARGET_P99_MS:g}" if who == "daemon" else ""
            print(
                f"{who + ', ' + form:<28}{t.median_ms:>11.2f}{t.p99_ms:>9.2f}"
                f"{t.cpu_ms:>9.2f}{t.size / 1024:>9.1f}{target:>10}"
            )
    figures: dict[str, float] = {"series": float(ours["text"].series)}
    for form in FORMS:
        ratio = ours[form].median_ms / standard[form].median_ms
        cpu_ratio = ours[form].cpu_ms / standard[form].cpu_ms
        print(f"ratio daemon/standard, {form}: time {ratio:.2f}, CPU {cpu_ratio:.2f}")
        figures.update(
            {
                f"{form}_median_ms": ours[form].median_ms,
                f"{form}_p99_ms": ours[form].p99_ms,
                f"{form}_cpu_ms": ours[form].cpu_ms,
                f"{form}_bytes": float(ours[form].size),
                f"{form}_ratio": ratio,
                f"{form}_cpu_ratio": cpu_ratio,
                f"{form}_standard_median_ms": standard[form].median_ms,
            }
        )
    return figures


if __name__ == "__main__":
    main()
