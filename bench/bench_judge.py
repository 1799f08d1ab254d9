"""LLM judge throughput, and what a saturated judge costs ingest.

    python bench/bench_judge.py [--seconds 8] [--rounds 3]

A local OpenAI-compatible server (tests/support/fake_openai.py) answers every judge request
after 500 ms; the judge may have 32 requests in flight, so at most 64 conversations/s can be
judged. The daemon runs pinned to one core with wrk (1 thread, 32 connections, single-
conversation POSTs, default sampling) on the other, in three configurations, alternated for
``--rounds`` rounds (best round kept, as other load on a shared machine only slows things down):

- ``default``: the embedded default config (no judge);
- ``stand-in``: a plugin scorer that sleeps 500 ms, 32 at a time: the same full scoring queue
  as with the judge (sampled conversations beyond 64/s are dropped as ``queue_full``), no HTTP;
- ``judge``: an ``llm_judge`` scorer on the fake server, saturated at its cap.

Prints ingest requests/s and server CPU per request for each, the judge's ratios to both
controls (target >= 0.90), and judged conversations/s against 64/s (target >= 0.90).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import Load, cpu_seconds, encoded, free_port, server, wrk

from tests.support.fake_openai import running_fake_openai

MODEL = "bench-judge"
LATENCY, CONCURRENCY = 0.5, 32  # bench/_stand_in_judge.py mirrors these


def judged(port: int) -> float:
    """Return how many conversations the judge scorer has scored so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "agent_quality_evaluations":
            return sum(
                s.value
                for s in family.samples
                if s.labels.get("scorer") == "judge" and s.labels.get("outcome") == "ok"
            )
    raise RuntimeError("agent_quality_evaluations_total is not exported")


def daemon_config(scorer: dict[str, Any], judges: dict[str, Any]) -> dict[str, Any]:
    """Return the default config plus ``scorer`` (named ``judge``) and enough workers."""
    return {
        "sampling": {"daily_budget": {"max_samples": None}},
        "pipeline": {"workers": 64},
        "judges": judges,
        "scorers": [
            {"type": "tool_success"},
            {"type": "final_answer"},
            {"type": "user_feedback"},
            {"type": "refusal"},
            {"type": "pii"},
            {"type": "answer_length", "min_chars": 1, "max_chars": 4000},
            {"type": "passthrough"},
            {"name": "judge", "dimension": "coherence", **scorer},
        ],
    }


def run_daemon(port: int, config: Path | None) -> list[str]:
    args = [sys.executable, "-m", "exporter", "run", f"--web.listen-address=127.0.0.1:{port}"]
    if config is not None:
        args.append(f"--config.file={config}")
    return [*args, "--log.level=warn"]


def measure(config: Path | None, singles: list[bytes], seconds: int) -> tuple[Load, float]:
    """Run one daemon: return its ingest load under wrk and judged conversations/s meanwhile."""
    port = free_port()
    with server(run_daemon(port, config), port=port) as pid:
        # The warm-up also fills the scoring queue, so a judge is at its cap from here on.
        wrk(port, singles[:100], content_type="application/json", seconds=2)
        before, started = judged(port), time.monotonic()
        load = wrk(port, singles, content_type="application/json", seconds=seconds, pid=pid)
        rate = (judged(port) - before) / (time.monotonic() - started)
    return load, rate


def judging_cpu(config: Path, seconds: int) -> float:
    """Return the daemon's CPU share of one core while it scores at its cap with no ingest.

    Every conversation of one batch is sampled, so the queue stays full for the window; the
    share is what the saturated scorer takes away from ingest, free of wrk's noise.
    """
    document = yaml.safe_load(config.read_text())
    document["sampling"].update(base_rate=1.0, boost_rate=1.0)
    sampled = config.with_name(f"all-{config.name}")
    sampled.write_text(yaml.safe_dump(document))
    port = free_port()
    with server(run_daemon(port, sampled), port=port) as pid:
        batch = b"\n".join(encoded(i) for i in range(int(CONCURRENCY / LATENCY) * (seconds + 4)))
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/conversations",
            data=batch,
            headers={"Content-Type": "application/x-ndjson"},
        )
        urllib.request.urlopen(request, timeout=30).close()
        time.sleep(2)
        before, started = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    singles = [encoded(i) for i in range(2000)]
    theoretical = CONCURRENCY / LATENCY
    loads: dict[str, list[Load]] = {"default": [], "stand-in": [], "judge": []}
    rates: dict[str, list[float]] = {"stand-in": [], "judge": []}
    with running_fake_openai() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.behave(MODEL, {"delay": LATENCY, "score": 4})
        judge = {"base_url": fake.base_url, "model": MODEL, "concurrency": CONCURRENCY}
        scoring: dict[str, Path] = {}
        for name, scorer, judges in [
            ("stand-in", {"type": "plugin", "path": "bench._stand_in_judge:score"}, {}),
            ("judge", {"type": "llm_judge", "judge": "bench"}, {"bench": judge}),
        ]:
            path = Path(tmp) / f"{name}.yml"
            path.write_text(yaml.safe_dump(daemon_config(scorer, judges)))
            scoring[name] = path
        configs: dict[str, Path | None] = {"default": None, **scoring}
        # Alternate the daemons and keep each one's best round: on a shared machine the best
        # round is the one least disturbed by other load.
        for _ in range(args.rounds):
            for name, config in configs.items():
                load, rate = measure(config, singles, args.seconds)
                loads[name].append(load)
                if name in rates:
                    rates[name].append(rate)

        idle = {name: judging_cpu(path, args.seconds) for name, path in scoring.items()}

    best = {
        name: (max(x.requests_per_second for x in runs), min(x.cpu_us_per_request for x in runs))
        for name, runs in loads.items()
    }
    for name, runs in loads.items():
        rounds = ", ".join(f"{x.requests_per_second:,.0f}" for x in runs)
        print(f"{name}: ingest req/s per round {rounds}")
    row(f"measure (best of {args.rounds} rounds)", "value", "CPU us", "target")
    for name, label in [
        ("default", "ingest, default config (req/s)"),
        ("stand-in", "ingest, 500 ms stand-in scorer, no HTTP (req/s)"),
        ("judge", "ingest, LLM judge saturated (req/s)"),
    ]:
        row(label, f"{best[name][0]:,.0f}", f"{best[name][1]:.1f}")
    for name in ("default", "stand-in"):
        throughput = best["judge"][0] / best[name][0]
        cpu = best[name][1] / best["judge"][1]
        row(f"  judge / {name}: throughput, CPU", f"{throughput:.2f}", f"{cpu:.2f}", ">= 0.90")
    row("CPU share while scoring at the cap, no ingest:", "", "", "")
    row("  stand-in", f"{idle['stand-in']:.3f}")
    row("  judge", f"{idle['judge']:.3f}")
    row(
        "  ingest capacity left by the judge's own work",
        f"{1 - idle['judge'] + idle['stand-in']:.3f}",
        "",
        ">= 0.90",
    )
    rate = max(rates["judge"])
    label = f"judged conversations/s (cap {CONCURRENCY}, {LATENCY * 1000:.0f} ms)"
    row(label, f"{rate:.1f}", "", f"{theoretical:g} max")
    row("  ratio to the theoretical rate", f"{rate / theoretical:.2f}", "", ">= 0.90")


def row(name: str, value: str, cpu: str = "", target: str = "") -> None:
    print(f"{name:<50}{value:>12}{cpu:>9}{target:>10}")


if __name__ == "__main__":
    main()
