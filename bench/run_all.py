"""Run every benchmark with one command and print one table of results against targets.

    python bench/run_all.py [--quick] [--only ingest,scrape,...]

Runs ingest, OTLP, OTLP memory, scoring, scrape, memory, bombs, dataset and judge, in that
order. Each bench's own output (its baselines and ratios, all measured in the same run) goes to
stderr as it runs; at the end a table of the key figures with their targets goes to stderr, and
the same table as Markdown, with the machine it ran on, to stdout for docs/benchmarks.md. Exits 1
when a figure misses its target or a bench fails.

``--quick`` shortens every bench (memory runs 1 minute) to try the command out; the figures
it gives are rough. Expect the full run to take about ten minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import LOAD_CPU, REPO, SERVER_CPU

Check = Callable[[float], bool]


@dataclasses.dataclass(frozen=True)
class Bench:
    """One bench: in process (a ``main(argv)`` returning figures) or parsed from its output."""

    name: str
    module: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    #: For benches whose ``main`` prints only: figure key -> (line label, index of the number).
    parse: dict[str, tuple[str, int]] | None = None


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the result table."""

    bench: str
    key: str
    label: str
    form: str
    target: str = ""
    check: Check | None = None
    #: The bench gives ``key_low`` and ``key_high`` too: the lowest and highest of its rounds.
    spread: bool = False


def at_least(bound: float) -> Check:
    return lambda value: value >= bound


def at_most(bound: float) -> Check:
    return lambda value: value <= bound


BENCHES = [
    Bench("ingest", "bench_ingest", quick=("--seconds", "2", "--rounds", "2")),
    Bench("otlp", "bench_otlp", quick=("--batches", "10", "--rounds", "2")),
    Bench("otlp_memory", "bench_otlp_memory", quick=("--max-mib", "32")),
    Bench("scoring", "bench_scoring", quick=("--conversations", "5000", "--rounds", "1")),
    Bench("scrape", "bench_scrape", quick=("--scrapes", "40")),
    Bench("memory", "bench_memory", quick=("--minutes", "1")),
    Bench("bombs", "bench_bombs", quick=("--bombs", "6")),
    Bench("dataset", "bench_dataset", quick=("--records", "20000", "--burst", "30000")),
    Bench(
        "judge",
        "bench_judge",
        quick=("--seconds", "3", "--rounds", "1"),
        parse={
            "vs_default": ("judge / default: throughput, CPU", 0),
            "vs_default_cpu": ("judge / default: throughput, CPU", 1),
            "vs_stand_in": ("judge / stand-in: throughput, CPU", 0),
            "vs_stand_in_cpu": ("judge / stand-in: throughput, CPU", 1),
            "capacity_left": ("ingest capacity left by the judge's own work", 0),
            "judged_ratio": ("ratio to the theoretical rate", 0),
        },
    ),
]

ROWS = [
    Row("ingest", "bare_cpu_us", "single POST, bare aiohttp, CPU us per request (baseline)",
        ".1f", spread=True),
    Row("ingest", "single_cpu_us_5", "single POST, daemon, 5% negative, CPU us per request",
        ".1f", spread=True),
    Row("ingest", "ratio_cpu_5", "single POST, 5% negative, bare / daemon by CPU per request",
        ".3f", ">= 0.95", at_least(0.95), spread=True),
    Row("ingest", "ratio_throughput_5", "single POST, 5% negative, daemon / bare req/s", ".3f",
        ">= 0.95", at_least(0.95), spread=True),
    Row("ingest", "single_cpu_us_25", "single POST, daemon, 25% negative, CPU us per request",
        ".1f", spread=True),
    Row("ingest", "ratio_cpu_25", "single POST, 25% negative, bare / daemon by CPU per request",
        ".3f", ">= 0.95", at_least(0.95), spread=True),
    Row("ingest", "ratio_throughput_25", "single POST, 25% negative, daemon / bare req/s", ".3f",
        ">= 0.95", at_least(0.95), spread=True),
    Row("ingest", "ndjson_per_cpu_s_5", "NDJSON x1000, 5% negative, conversations per CPU-second",
        ",.0f", ">= 150,000", at_least(150_000), spread=True),
    Row("ingest", "ndjson_per_cpu_s_25",
        "NDJSON x1000, 25% negative, conversations per CPU-second", ",.0f", ">= 150,000",
        at_least(150_000), spread=True),
    Row("ingest", "ndjson_per_s_5", "NDJSON x1000, 5% negative, conversations/s (wall)", ",.0f",
        spread=True),
    Row("ingest", "sampled_5", "share scored, 5% negative", ".3f", spread=True),
    Row("ingest", "sampled_25", "share scored, 25% negative", ".3f", spread=True),
    Row("ingest", "dropped_5", "conversations dropped (queue full, budget), 5% negative", ",.0f",
        "0", lambda value: value == 0, spread=True),
    Row("ingest", "dropped_25", "conversations dropped (queue full, budget), 25% negative",
        ",.0f", "0", lambda value: value == 0, spread=True),
    Row("otlp", "in_process", "OTLP spans/s in process (decode + assembly + intake)", ",.0f",
        spread=True),
    Row("otlp", "http", "OTLP spans/s over HTTP (wall)", ",.0f", spread=True),
    Row("otlp", "http_per_cpu_s", "OTLP spans per server CPU-second over HTTP", ",.0f",
        ">= 60,000", at_least(60_000), spread=True),
    Row("otlp_memory", "ratio_traces", "OTLP buffer at its bound: RSS growth / buffer_bytes",
        ".2f", "<= 1.5", at_most(1.5)),
    Row("otlp_memory", "ratio_one_trace", "same, every span in one trace", ".2f", "<= 1.5",
        at_most(1.5)),
    Row("otlp_memory", "ratio_events", "same, content as log records (events)", ".2f",
        "<= 1.5", at_most(1.5)),
    Row("scoring", "scored_per_cpu_s", "deterministic scoring, conversations per CPU-second",
        ",.0f", ">= 5,000", at_least(5_000)),
    Row("scoring", "ratio_to_no_scorers", "scoring / pipeline with no scorers (CPU)", ".2f"),
    Row("scoring", "ratio_to_decode", "scoring / msgspec decode (CPU)", ".2f"),
    Row("scoring", "scorers_us_each", "scorers' CPU per conversation (us)", ".1f"),
    Row("scrape", "series", "series at 20 agents x 10 dimensions", ",.0f"),
    Row("scrape", "text_median_ms", "GET /metrics, text, median ms", ".1f", "<= 15",
        at_most(15)),
    Row("scrape", "text_p99_ms", "GET /metrics, text, p99 ms", ".1f", "<= 40", at_most(40)),
    Row("scrape", "openmetrics_median_ms", "GET /metrics, OpenMetrics, median ms", ".1f",
        "<= 15", at_most(15)),
    Row("scrape", "openmetrics_p99_ms", "GET /metrics, OpenMetrics, p99 ms", ".1f", "<= 40",
        at_most(40)),
    Row("scrape", "prometheus_median_ms", "GET /metrics as Prometheus asks (OM + gzip), median ms",
        ".1f", "<= 15", at_most(15)),
    Row("scrape", "prometheus_p99_ms", "GET /metrics as Prometheus asks (OM + gzip), p99 ms",
        ".1f", "<= 40", at_most(40)),
    Row("scrape", "text_cpu_ms", "server CPU per scrape, text, ms", ".1f"),
    Row("scrape", "prometheus_cpu_ms", "server CPU per scrape as Prometheus asks, ms", ".1f"),
    Row("scrape", "text_ratio", "scrape time, daemon / standard prometheus_client, text", ".2f"),
    Row("scrape", "openmetrics_ratio", "scrape time, daemon / standard, OpenMetrics", ".2f"),
    Row("scrape", "text_bytes", "scrape size, text (bytes)", ",.0f"),
    Row("scrape", "prometheus_bytes", "scrape size, OpenMetrics + gzip (bytes)", ",.0f"),
    Row("memory", "idle_mb", "RSS idle before load, MB (baseline)", ".1f"),
    Row("memory", "max_mb", "RSS max at 10x the drain rate, MB", ".1f", "<= 150", at_most(150)),
    Row("memory", "final_mb", "RSS at the end, MB", ".1f", "<= 150", at_most(150)),
    Row("memory", "slope_mb_per_min", "RSS slope over the last half, MB/min", "+.2f", "+-1",
        lambda value: abs(value) <= 1),
    Row("memory", "overload", "fed / drained", ".1f", ">= 9", at_least(9)),
    Row("memory", "queue_full", "dropped as queue_full (counted)", ",.0f", "> 0",
        lambda value: value > 0),
    Row("memory", "unaccounted", "conversations unaccounted for", ",.0f", "0",
        lambda value: value == 0),
    Row("bombs", "baseline_mb", "RSS before 20 decompression bombs, MB (baseline)", ".1f"),
    Row("bombs", "peak_mb", "RSS peak during the bombs (VmHWM), MB", ".1f", "<= 150",
        at_most(150)),
    Row("bombs", "final_over_baseline_mb", "RSS after the bombs - baseline, MB", "+.1f", "<= 10",
        at_most(10)),
    Row("dataset", "records_per_s", "dataset writer, records/s to disk (wall)", ",.0f"),
    Row("dataset", "mb_per_s", "dataset writer, MB/s to disk (wall)", ".1f"),
    Row("dataset", "records_per_cpu_s", "dataset writer, records per CPU-second", ",.0f"),
    Row("dataset", "burst_dropped", "dataset records dropped in a burst (backlog_full)", ",.0f",
        "0", lambda value: value == 0),
    Row("judge", "vs_default", "ingest with judge saturated / default config, req/s", ".2f",
        ">= 0.90", at_least(0.9)),
    Row("judge", "vs_default_cpu", "ingest with judge saturated / default config, by CPU",
        ".2f", ">= 0.90", at_least(0.9)),
    Row("judge", "vs_stand_in", "ingest with judge saturated / stand-in scorer, req/s", ".2f",
        ">= 0.90", at_least(0.9)),
    Row("judge", "vs_stand_in_cpu", "ingest with judge saturated / stand-in scorer, by CPU",
        ".2f", ">= 0.90", at_least(0.9)),
    Row("judge", "capacity_left", "ingest capacity left by the judge's own work", ".3f",
        ">= 0.90", at_least(0.9)),
    Row("judge", "judged_ratio", "judged conversations/s / theoretical cap", ".2f", ">= 0.90",
        at_least(0.9)),
]  # fmt: skip


def parse_figures(output: str, wanted: dict[str, tuple[str, int]]) -> dict[str, float]:
    """Read the numbers after each label in a bench's printed table."""
    figures = {}
    lines = [line.strip() for line in output.splitlines()]
    for key, (label, index) in wanted.items():
        for line in lines:
            if line.startswith(label):
                numbers = re.findall(r"[-+]?\d[\d,]*(?:\.\d+)?", line[len(label) :])
                if len(numbers) > index:
                    figures[key] = float(numbers[index].replace(",", ""))
                break
    return figures


def run_bench(bench: Bench, *, quick: bool) -> dict[str, float]:
    """Run one bench, its output on stderr; return its figures."""
    argv = list(bench.quick if quick else bench.full)
    if bench.parse is None:
        module = importlib.import_module(bench.module)
        with contextlib.redirect_stdout(sys.stderr):
            figures: dict[str, float] = module.main(argv)
        return figures
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / f"{bench.module}.py"), *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    captured = []
    for line in process.stdout:
        sys.stderr.write(line)
        captured.append(line)
    if process.wait() != 0:
        raise RuntimeError(f"{bench.module} exited with {process.returncode}")
    return parse_figures("".join(captured), bench.parse)


def machine() -> list[str]:
    """Describe the machine and the checkout this run measured."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return [
        f"- when: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit `{commit or '?'}`",
        f"- CPU: {os.cpu_count()} x {model or platform.processor() or '?'}; servers pinned to "
        f"core {SERVER_CPU}, load (wrk, Python clients) to core {LOAD_CPU}",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
    ]


def result(row: Row, figures: dict[str, float] | None) -> tuple[str, str, str]:
    """Return the row's formatted value, its spread over rounds and its verdict."""
    if figures is None:
        return "error", "", "FAIL"
    value = figures.get(row.key)
    if value is None:
        return "missing", "", "FAIL"
    spread = ""
    low, high = figures.get(f"{row.key}_low"), figures.get(f"{row.key}_high")
    if row.spread and low is not None and high is not None:
        spread = f"{low:{row.form}} - {high:{row.form}}"
    if row.check is None:
        return format(value, row.form), spread, ""
    return format(value, row.form), spread, "pass" if row.check(value) else "FAIL"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benches and print the table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs to try it out")
    names = [bench.name for bench in BENCHES]
    parser.add_argument("--only", default=",".join(names), help=f"comma-separated of {names}")
    args = parser.parse_args(argv)
    chosen = args.only.split(",")
    unknown = set(chosen) - set(names)
    if unknown:
        parser.error(f"unknown bench {', '.join(sorted(unknown))}; choose from {names}")
    load = [f"{x:.2f}" for x in os.getloadavg()]
    results: dict[str, dict[str, float] | None] = {}
    loads: list[str] = []  # other work on the machine shows here
    for bench in BENCHES:
        if bench.name not in chosen:
            continue
        loads.append(f"{bench.name} {os.getloadavg()[0]:.2f}")
        print(f"\n=== {bench.name} ===", file=sys.stderr, flush=True)
        try:
            results[bench.name] = run_bench(bench, quick=args.quick)
        except Exception as error:  # one broken bench must not hide the others' figures
            print(f"{bench.name} failed: {error!r}", file=sys.stderr)
            results[bench.name] = None
    table = [
        (row.bench, row.label, *result(row, results[row.bench]), row.target)
        for row in ROWS
        if row.bench in results
    ]
    width = max(len(label) for _, label, *_ in table)
    print(
        f"\n{'bench':<12}{'measure':<{width + 2}}{'value':>12}  {'spread':<24}{'target':<12}result",
        file=sys.stderr,
    )
    for bench_name, label, value, spread, verdict, target in table:
        print(
            f"{bench_name:<12}{label:<{width + 2}}{value:>12}  {spread:<24}{target:<12}{verdict}",
            file=sys.stderr,
        )
    after = [f"{x:.2f}" for x in os.getloadavg()]
    print(*machine(), sep="\n")
    print(f"- load average (1, 5, 15 min): {', '.join(load)} before, {', '.join(after)} after")
    print(f"- load average (1 min) as each bench started: {', '.join(loads)}")
    print(f"- mode: {'--quick' if args.quick else 'full'}\n")
    print("| bench | measure | value | spread (lowest - highest round) | target | result |")
    print("|---|---|---:|---:|---|---|")
    for bench_name, label, value, spread, verdict, target in table:
        print(f"| {bench_name} | {label} | {value} | {spread} | {target} | {verdict} |")
    return 1 if any(verdict == "FAIL" for *_, verdict, _ in table) else 0


if __name__ == "__main__":
    sys.exit(main())
