"""Prometheus' own engine on a local TSDB: promtool builds the blocks, Prometheus evaluates.

Raw series come in with ``promtool tsdb create-blocks-from openmetrics``. Recording rules are
evaluated level by level with ``promtool tsdb create-blocks-from rules``, which runs each
rule as a range query against a local Prometheus serving the blocks so far and writes the
result as new blocks; Prometheus is restarted between levels to load them.

Two details make this equal to a rule manager evaluating every interval (docs/backtest.md):

- **One grid.** promtool evaluates a group at times offset by a hash of its file name and
  group name. Every rule goes through a file of the same relative name in the same group, so
  every level (and the alert queries) lands on one grid, measured once by a calibration rule.
- **Staleness.** A rule manager marks a recorded series stale when it stops being returned;
  blocks written by promtool carry no such marker. The local Prometheus runs with a lookback
  of one interval minus a millisecond, so a selector sees a recorded sample only at the
  evaluation that wrote it, as the marker would have it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exporter.backtest.client import Connection, PrometheusAPI, wait_ready
from exporter.backtest.progress import Advance, Progress
from exporter.backtest.rules import RecordingRule
from exporter.exceptions import BacktestError

__all__ = [
    "Grid",
    "LocalPrometheus",
    "RuleBackfill",
    "Tools",
    "calibrated_grid",
    "find_tools",
    "import_openmetrics",
]

#: Range queries Prometheus answers hold at most 11,000 steps.
MAX_STEPS = 10_000
#: The group every rule is evaluated in; its hash with the file name fixes the grid offset.
GROUP = "backtest"
RULE_FILE = "backtest.rules.yml"
#: Blocks of raw samples: a downloaded file (at most two days) touches one or two.
IMPORT_BLOCK = "54h"
#: Each rule's range queries cover 54h (3,240 steps at 1m): what one query, its JSON and
#: promtool's block in memory hold does not grow with the period.
RULE_BLOCK = 54 * 3600.0
#: Blocks one promtool run writes: promtool 2.42 keeps every block's memory until it exits,
#: so a rule is evaluated in runs of a few blocks, not over the whole period at once.
BLOCKS_PER_RUN = 3
#: Rules evaluated at once: Prometheus evaluates one while promtool stores the other.
_WORKERS = 2
#: A soft heap limit for the Go programs (honoured since Go 1.19): near it the runtime
#: collects more often instead of doubling the heap. An operator's own GOMEMLIMIT wins.
_TOOL_ENV = {"GOMEMLIMIT": "128MiB", **os.environ}
_PROM_ENV = {"GOMEMLIMIT": "160MiB", **os.environ}
_STOP_TIMEOUT = 10.0
_START_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Tools:
    """The Prometheus binaries the backtest runs."""

    prometheus: str
    promtool: str


def find_tools() -> Tools:
    """Return the ``prometheus`` and ``promtool`` on PATH; raise if one is missing."""
    found = {name: shutil.which(name) for name in ("prometheus", "promtool")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise BacktestError(
            f"backtest runs Prometheus' own engine and needs {' and '.join(missing)} on PATH "
            "(Debian: apt-get install prometheus; or the release tarball's binaries)"
        )
    return Tools(prometheus=str(found["prometheus"]), promtool=str(found["promtool"]))


def block_hours(seconds: float, interval: float) -> int:
    """Return the largest TSDB block range (2h x 3^n) up to ``seconds`` and MAX_STEPS steps.

    In hours: promtool's flags take Go durations, which have no days.
    """
    limit = min(seconds, MAX_STEPS * interval)
    hours = 2
    while hours * 3 * 3600 <= limit:
        hours *= 3
    return hours


async def _run(args: Sequence[str], *, cwd: Path | None = None, what: str) -> str:
    """Run a promtool command; return its output, or raise with it on failure."""
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=_TOOL_ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await process.communicate()
    finally:
        if process.returncode is None:  # cancelled (Ctrl-C, SIGTERM, a sibling failed)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    text = output.decode(errors="replace")
    if process.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-8:])
        raise BacktestError(f"{what} failed (exit {process.returncode}):\n{tail}")
    return text


async def import_openmetrics(tools: Tools, path: Path, data: Path) -> None:
    """Turn one OpenMetrics file into blocks in ``data``, then delete the file."""
    args = [
        tools.promtool,
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--quiet",
        f"--max-block-duration={IMPORT_BLOCK}",
        str(path),
        str(data),
    ]
    await _run(args, what=f"promtool tsdb create-blocks-from openmetrics {path.name}")
    _remove(path)


def _remove(path: Path) -> None:
    path.unlink()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPrometheus:
    """A Prometheus on loopback serving ``data``, without scrapes or rules of its own."""

    def __init__(self, tools: Tools, *, data: Path, lookback_ms: int, workdir: Path) -> None:
        self.tools = tools
        self.data = data
        self.lookback_ms = lookback_ms
        self.workdir = workdir
        self.port = 0
        self._process: asyncio.subprocess.Process | None = None
        self._log = workdir / "prometheus.log"
        self._config = workdir / "prometheus.yml"
        self._config.write_text("global: {}\n", encoding="utf-8")

    @property
    def url(self) -> str:
        """Return the base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 8) -> str:
        """Return the end of the server's log, for error messages."""
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    async def start(self) -> None:
        """Start the server on a free port and wait until it answers queries."""
        self.port = _free_port()
        args = [
            self.tools.prometheus,
            f"--config.file={self._config}",
            f"--storage.tsdb.path={self.data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=100y",
            f"--query.lookback-delta={self.lookback_ms}ms",
            "--query.timeout=10m",
            "--log.level=warn",
        ]
        with self._log.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *args, stdout=log, stderr=log, env=_PROM_ENV
            )
        connection = Connection(self.url, timeout=5)
        try:
            async with PrometheusAPI.open(connection) as api, asyncio.timeout(_START_TIMEOUT):
                await wait_ready(api)
        except TimeoutError:
            await self.stop()
            raise BacktestError(f"the local Prometheus did not start:\n{self.log_tail()}") from None

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace period)."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def kill(self) -> None:
        """Stop the server at once, without waiting (cleanup on interruption)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def restart(self) -> None:
        """Restart the server so it loads the blocks written since it started."""
        await self.stop()
        await self.start()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LocalPrometheus]:
        """Run the server for the duration of the block, stopping it whatever happens."""
        try:
            await self.start()
            yield self
        finally:
            try:
                await asyncio.shield(self.stop())
            except BaseException:
                self.kill()
                raise


@dataclass(frozen=True, slots=True)
class Grid:
    """The evaluation times: ``offset`` ms past every multiple of ``interval`` seconds."""

    interval: float
    offset_ms: int

    def first(self, seconds: float) -> float:
        """Return the first evaluation time at or after ``seconds``."""
        step = round(self.interval * 1000)
        at = int(-(-(round(seconds * 1000) - self.offset_ms) // step)) * step + self.offset_ms
        return at / 1000

    def last(self, seconds: float) -> float:
        """Return the last evaluation time at or before ``seconds``."""
        step = round(self.interval * 1000)
        at = ((round(seconds * 1000) - self.offset_ms) // step) * step + self.offset_ms
        return at / 1000


def _rule_document(rule: RecordingRule, name: str) -> dict[str, Any]:
    data: dict[str, Any] = {"record": rule.record, "expr": rule.expr}
    if rule.labels:
        data["labels"] = dict(rule.labels)
    return {"groups": [{"name": name, "rules": [data]}]}


def _write_rule(worker: Path, rule: RecordingRule, group: str) -> None:
    worker.mkdir(parents=True, exist_ok=True)
    document = _rule_document(rule, group)
    (worker / RULE_FILE).write_text(yaml.safe_dump(document, width=1_000_000), encoding="utf-8")


def _block_times(directory: Path) -> list[int]:
    times = []
    for meta in directory.glob("*/meta.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            times.append(int(json.loads(meta.read_text())["minTime"]))
    return times


def _move_blocks(staging: Path, data: Path, *, grid: Grid) -> None:
    """Move a level's blocks into ``data``, checking they are on the calibrated grid."""
    step = round(grid.interval * 1000)
    if any(time % step != grid.offset_ms for time in _block_times(staging)):
        raise BacktestError(
            "promtool evaluated a rule off the calibrated grid: this promtool version "
            "aligns rule groups differently than the backtest expects"
        )
    for block in staging.iterdir():
        block.rename(data / block.name)
    staging.rmdir()


class RuleBackfill:
    """Recording rules evaluated with ``promtool tsdb create-blocks-from rules``."""

    def __init__(
        self, tools: Tools, *, data: Path, workdir: Path, interval: float, start: float, end: float
    ) -> None:
        self.tools = tools
        self.data = data
        self.workdir = workdir
        self.interval = interval
        self.start = int(start)
        self.end = int(end)
        self.group = GROUP
        self.grid: Grid | None = None

    def _args(self, url: str, output: Path, *, start: int, end: int) -> list[str]:
        return [
            self.tools.promtool,
            "tsdb",
            "create-blocks-from",
            "rules",
            f"--url={url}",
            f"--start={start}",
            f"--end={end}",
            f"--output-dir={output}",
            f"--eval-interval={round(self.interval * 1000)}ms",
            f"--max-block-duration={block_hours(RULE_BLOCK, self.interval)}h",
            RULE_FILE,  # relative: the same name for every rule keeps the grid offset
        ]

    async def _evaluate(
        self, rule: RecordingRule, url: str, output: Path, worker: Path, *, start: int, end: int
    ) -> None:
        _write_rule(worker, rule, self.group)
        await _run(
            self._args(url, output, start=start, end=end),
            cwd=worker,
            what=f"promtool tsdb create-blocks-from rules ({rule.record})",
        )

    def runs(self) -> list[tuple[int, int]]:
        """Return the (start, end) seconds of each promtool run over the period.

        Runs end on block edges: promtool ends each block's query on the whole second before
        the edge and starts the next run's at the edge, as within one run.
        """
        span = block_hours(RULE_BLOCK, self.interval) * 3600 * BLOCKS_PER_RUN
        edges = range((self.start // span + 1) * span, self.end, span)
        starts = [self.start, *edges]
        ends = [edge - 1 for edge in edges] + [self.end]
        return list(zip(starts, ends, strict=True))

    async def calibrate(self, url: str) -> Grid:
        """Find the grid promtool evaluates on, avoiding offsets it would leave gaps at.

        promtool ends each block's query on a whole second, so with an offset in the last
        second of the interval a step at each block edge would be lost: another group name
        moves the offset.
        """
        probe = RecordingRule("backtest_grid", "vector(1)", {}, ())
        step = round(self.interval * 1000)
        for attempt in range(20):
            self.group = GROUP if attempt == 0 else f"{GROUP}-{attempt}"
            output = Path(tempfile.mkdtemp(prefix="calibration-", dir=self.workdir))
            end = self.start + 3 * max(round(self.interval), 1)
            await self._evaluate(probe, url, output, self.workdir / "w0", start=self.start, end=end)
            times = _block_times(output)
            shutil.rmtree(output)
            if not times:
                raise BacktestError("promtool wrote no block for the calibration rule vector(1)")
            offset = min(times) % step
            if offset <= step - 1000:
                self.grid = Grid(self.interval, offset)
                return self.grid
        raise BacktestError("could not find an evaluation grid promtool evaluates without gaps")

    async def level(self, rules: Sequence[RecordingRule], url: str, advance: Advance) -> None:
        """Evaluate ``rules`` (which read only stored series) into new blocks in ``data``."""
        if self.grid is None:
            raise BacktestError("the evaluation grid is not calibrated")
        staging = Path(tempfile.mkdtemp(prefix="level-", dir=self.workdir))
        queue: asyncio.Queue[tuple[RecordingRule, int, int]] = asyncio.Queue()
        for rule in rules:
            for start, end in self.runs():
                queue.put_nowait((rule, start, end))

        async def worker(index: int) -> None:
            while not queue.empty():
                rule, start, end = queue.get_nowait()
                worker = self.workdir / f"w{index}"
                await self._evaluate(rule, url, staging, worker, start=start, end=end)
                advance(1)

        async with asyncio.TaskGroup() as group:
            for index in range(min(_WORKERS, len(rules))):
                group.create_task(worker(index))
        _move_blocks(staging, self.data, grid=self.grid)


async def evaluate_levels(
    backfill: RuleBackfill,
    local: LocalPrometheus,
    levels: Sequence[Sequence[RecordingRule]],
    *,
    progress: Progress,
) -> Grid:
    """Calibrate the grid, then evaluate every level, restarting Prometheus between them."""
    grid = await backfill.calibrate(local.url)
    total = sum(len(level) for level in levels) * len(backfill.runs())
    with progress.stage("rules", total=total, unit="runs") as advance:
        for number, level in enumerate(levels):
            if number:
                await local.restart()  # load the blocks the level below wrote
            await backfill.level(level, local.url, advance)
    if levels:
        await local.restart()
    return grid


async def calibrated_grid(tools: Tools, *, interval: float, workdir: Path) -> Grid:
    """Return the grid a backtest evaluates on at ``interval`` (on an empty local TSDB).

    The offset depends only on promtool's hash of the group: tests write a history
    scraped in phase with it, as ``promtool test rules`` evaluates at the scrapes.
    """
    data = Path(tempfile.mkdtemp(prefix="empty-", dir=workdir))
    local = LocalPrometheus(
        tools, data=data, lookback_ms=round(interval * 1000) - 1, workdir=workdir
    )
    async with local.running():
        backfill = RuleBackfill(
            tools, data=data, workdir=workdir, interval=interval, start=86400.0, end=2 * 86400.0
        )
        return await backfill.calibrate(local.url)
