"""Backtest a month: 30 days of 10 agents x 5 dimensions, wall time and peak memory.

    python bench/bench_backtest.py [--days 30] [--agents 10] [--no-baseline]

Builds the history a Prometheus would hold (tests/support/history.py: every series of the
daemon for the default dimensions, scraped every minute, plus the three days of history the
rules look back on), serves it with a real Prometheus, then times
``agent-quality-exporter backtest`` over the period in a child process, sampling the memory of
that process and of its children (the local Prometheus, promtool) every 0.2 s. The total is
the sum of their PSS (proportional set size: pages two processes share, such as the binary of
two promtools or a child just forked, count once), of which anonymous memory (heaps; the rest
is files mapped, mostly the local TSDB's blocks, which the kernel can drop at will); and each
program's own peak RSS.

**Baseline**, in the same run: ``promtool test rules`` (the other way to run Prometheus' own
rules over a history) on the same rules and series for ``--baseline-minutes`` evaluations,
extrapolated to the period. **Goal** (issue 17): under 5 minutes and 500 MB.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from _harness import REPO, require

from exporter.config import default_document, load_config
from exporter.generate import generate
from exporter.scenarios import diurnal, prune_rule_files, write_test_file
from tests.support.history import History, import_file
from tests.support.promstack import serving_prometheus

DAY = 86400
#: Read by no rule: left out to keep the history's build short (the daemon exports them).
UNREAD = ("agent_quality_scorer_duration_seconds_bucket",)
WARMUP_DAYS = 3  # the default rules look back 3d1h (the slow SLO ticket)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    with contextlib.suppress(OSError):  # the process may be gone before or while listed
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                found.update(int(child) for child in (task / "children").read_text().split())
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def _fields(path: Path) -> dict[str, int]:
    fields: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[key] = int(parts[0])
    return fields


def _memory(pid: int) -> tuple[str, int, int, int]:
    """Return (program, RSS, PSS, anonymous) in kB; no name once the process is gone."""
    name = ""
    with contextlib.suppress(OSError):
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    status = _fields(Path(f"/proc/{pid}/status"))
    rollup = _fields(Path(f"/proc/{pid}/smaps_rollup"))
    anon = rollup.get("Pss_Anon", status.get("RssAnon", 0))
    return name, status.get("VmRSS", 0), rollup.get("Pss", 0), anon


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _disk(directory: Path) -> int:
    """Return the disk the files under ``directory`` take (0 once it is gone)."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class Sampler:
    """Peak memory of a process tree (PSS and anonymous in total, RSS per program) and peak
    disk use of the backtest's temporary directory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.time()
        self.peak_disk = 0
        self.peak_total = self.peak_anon = 0
        self.peaks: dict[str, int] = {}
        self.cpu: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = anon = 0
            for pid in _tree(self.pid):
                name, rss, pss, rss_anon = _memory(pid)
                if not name:
                    continue
                total, anon = total + pss, anon + rss_anon
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
                self.cpu[pid] = (name, max(_cpu_seconds(pid), self.cpu.get(pid, (name, 0.0))[1]))
            self.peak_total = max(self.peak_total, total)
            self.peak_anon = max(self.peak_anon, anon)
            for directory in Path(tempfile.gettempdir()).glob("agent-quality-backtest-*"):
                if directory.stat().st_mtime >= self.started - 1:
                    self.peak_disk = max(self.peak_disk, _disk(directory))
            self._stop.wait(0.2)

    def cpu_by_program(self) -> dict[str, float]:
        """Return the CPU seconds seen per program (a lower bound: sampled)."""
        totals: dict[str, float] = {}
        for name, seconds in self.cpu.values():
            totals[name] = totals.get(name, 0.0) + seconds
        return totals

    @contextlib.contextmanager
    def running(self) -> Iterator[Sampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _remove(path: Path, _: object) -> None:
    path.unlink()


def build_history(config_path: Path, data: Path, *, start: int, days: int, work: Path) -> float:
    """Write and import the history, importing each day while the next is written."""
    config = load_config(config_path)
    rates = {agent: diurnal(20) for agent in config.agents}
    history = History(config, rates, seed=3, buckets="thresholds", omit=UNREAD)
    began = time.monotonic()
    data.mkdir()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        jobs = []
        for path in history.days(work / "history", start=start, minutes=days * 1440):
            jobs.append(pool.submit(import_file, path, data))
            jobs[-1].add_done_callback(functools.partial(_remove, path))
        for job in jobs:
            job.result()
    return time.monotonic() - began


def baseline(config_path: Path, work: Path, *, minutes: int) -> float:
    """Return seconds per evaluated minute of ``promtool test rules`` on the same rules."""
    config = load_config(config_path)
    written = generate(config, out=work / "generated")
    pruned = work / "pruned"
    pruned.mkdir()
    rules = prune_rule_files([p for p in written if p.name.endswith(".rules.yml")], pruned)
    history = History(
        config, {a: diurnal(20) for a in config.agents}, seed=3, buckets="thresholds", omit=UNREAD
    )
    values: dict[str, list[str]] = {}
    for step in range(minutes):
        if step:
            history.step(step, 60)
        for line in history.lines(step * 60.0):
            series, value, _ = line.rsplit(" ", 2)
            values.setdefault(series, []).append(value)
    inputs = [{"series": series, "values": " ".join(points)} for series, points in values.items()]
    check = {
        "expr": "vector(1)",
        "eval_time": f"{minutes - 1}m",
        "exp_samples": [{"labels": "{}", "value": 1}],
    }
    path = write_test_file(
        work / "baseline.yml",
        rule_files=rules,
        tests=[{"interval": "1m", "input_series": inputs, "promql_expr_test": [check]}],
    )
    began = time.monotonic()
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    elapsed = time.monotonic() - began
    if result.returncode != 0:
        sys.exit(f"promtool test rules failed:\n{result.stdout[-2000:]}")
    return elapsed / minutes


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="the period backtested")
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--baseline-minutes", type=int, default=60)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    require("prometheus")
    require("promtool")
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as name:
        work = Path(name)
        document = {"agents": [f"agent-{i:02d}" for i in range(args.agents)]}
        config_path = work / "config.yml"
        config_path.write_text(yaml.safe_dump(document))
        dimensions = len(default_document()["dimensions"])
        start = (int(time.time()) // DAY - args.days - WARMUP_DAYS - 1) * DAY
        days = args.days + WARMUP_DAYS
        print(
            f"building {days} days of history, {args.agents} agents x {dimensions} "
            "dimensions, scraped every minute ...",
            file=sys.stderr,
        )
        built = build_history(config_path, work / "data", start=start, days=days, work=work)
        print(f"  built and imported in {built:.0f}s", file=sys.stderr)
        per_minute = None
        if not args.no_baseline:
            per_minute = baseline(config_path, work, minutes=args.baseline_minutes)
        since, until = start + WARMUP_DAYS * DAY, start + days * DAY
        with serving_prometheus(work, data=work / "data") as prometheus:
            command = [
                sys.executable,
                "-m",
                "exporter",
                "backtest",
                f"--prometheus.url={prometheus.url}",
                f"--config.file={config_path}",
                f"--since={since}",
                f"--until={until}",
                "--format=json",
            ]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.monotonic()
            process = subprocess.Popen(
                command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            with Sampler(process.pid).running() as sampler:
                out, err = process.communicate()
            wall = time.monotonic() - began
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        if process.returncode != 0:
            sys.exit(f"backtest failed ({process.returncode}):\n{err}")
        result = json.loads(out)
    period = args.days * 1440
    evaluation = result["evaluation"]
    figures = {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_pss_mb": sampler.peak_total / 1024,
        "peak_anon_mb": sampler.peak_anon / 1024,
        "peak_disk_mb": sampler.peak_disk / 2**20,
        "samples": float(result["data"]["samples"]),
        "alerts": float(sum(row["fired"] for row in result["alerts"])),
    }
    stages = ", ".join(f"{k} {v:.0f}s" for k, v in evaluation["stage_seconds"].items())
    print(
        f"backtest of {args.days} days, {args.agents} agents x {dimensions} dimensions "
        f"({evaluation['recording_rules']} recording rules in {evaluation['levels']} levels, "
        f"{evaluation['alerts']} alerts, every 1m)"
    )
    print(f"  raw samples read                      {result['data']['samples']:>12,}")
    print(f"  alerts found                          {figures['alerts']:>12,.0f}")
    print(f"  wall time                             {wall:>12.1f} s   (goal < 300 s)")
    print(f"    by stage: {stages}")
    print(f"  CPU time, backtest and its children   {cpu:>12.1f} s")
    for program, seconds in sorted(sampler.cpu_by_program().items()):
        print(f"    CPU of {program:<31}{seconds:>12.1f} s   (sampled, a lower bound)")
    print(
        f"  peak memory, sum of PSS               {figures['peak_pss_mb']:>12.0f} MB  "
        "(goal < 500 MB)"
    )
    print(f"  of which anonymous (PSS)              {figures['peak_anon_mb']:>12.0f} MB")
    for program, kb in sorted(sampler.peaks.items()):
        print(f"    peak RSS of one {program:<22}{kb / 1024:>12.0f} MB")
    print(f"  peak disk, the temporary directory    {figures['peak_disk_mb']:>12.0f} MB")
    if per_minute is not None:
        extrapolated = per_minute * period
        figures["baseline_s"] = extrapolated
        figures["speedup"] = extrapolated / wall
        print(
            f"  promtool test rules, same rules       {per_minute * 1000:>12.0f} ms a minute "
            f"evaluated ({args.baseline_minutes} min run)"
        )
        print(f"    extrapolated to {args.days} days               {extrapolated:>12.0f} s")
        print(f"  backtest / promtool test rules        {figures['speedup']:>12.1f} x faster")
    print(f"  machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    return figures


if __name__ == "__main__":
    main()
