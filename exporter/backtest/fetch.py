"""Read the raw series the rules need from a Prometheus and write them as OpenMetrics files.

Raw samples, not ``query_range``: a range query resamples (each step takes the latest sample
within the lookback), so scrapes near a step boundary are repeated or skipped and
``increase()`` over the result differs from what the server computed. A range selector
(``name{...}[2h]``) returns the stored samples with their own timestamps. The period goes in
windows, each window in chunks sized to keep one answer near ``CHUNK_SAMPLES``; a window
becomes one file that ``promtool tsdb create-blocks-from openmetrics`` turns into blocks
while the next window downloads, so memory and disk stay bounded whatever the period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import re
import statistics
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from exporter.backtest.client import PrometheusAPI, Series
from exporter.backtest.progress import Progress
from exporter.backtest.promql import Selector
from exporter.exceptions import BacktestError

__all__ = ["CHUNK_SAMPLES", "FetchStats", "Preflight", "fetch_raw", "preflight", "scoped"]

#: Samples one answer should hold: about 2 MB of JSON, 7 MB once decoded.
CHUNK_SAMPLES = 50_000
#: Series kept in one OpenMetrics file (then handed to promtool): about 60 MB of text.
FILE_SAMPLES = 500_000
_CONCURRENCY = 4
#: Files being turned into blocks while the next ones download.
_STORES = 2
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _quoted(value: str) -> str:
    """Return ``value`` as a PromQL string: JSON's escapes are a subset of Go's."""
    return json.dumps(value, ensure_ascii=False)


def _regex(values: Collection[str]) -> str:
    """Return a PromQL regex matcher value for exactly ``values`` or no such label."""
    escaped = (_RE2_SPECIAL.sub(r"\\\1", value) for value in sorted(values))
    return _quoted("|".join([*escaped, ""]))


def scoped(
    selector: Selector, *, job: str, agents: Collection[str], dimensions: Collection[str]
) -> str:
    """Return ``selector`` narrowed to the job (unless it names one) and the chosen labels.

    ``agent=~"a|b|"`` keeps series of those agents and series without an agent label.
    """
    extra = [] if "job" in selector.labels() else [f"job={_quoted(job)}"]
    if agents:
        extra.append(f"agent=~{_regex(agents)}")
    if dimensions:
        extra.append(f"dimension=~{_regex(dimensions)}")
    return selector.with_matchers(*extra)


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the server holds for the job, checked before downloading anything."""

    oldest: float
    retention: str | None
    version: str | None


def _when(seconds: float) -> str:
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return moment.isoformat(timespec="minutes").replace("+00:00", "Z")


async def preflight(
    api: PrometheusAPI,
    *,
    job: str,
    names: Collection[str],
    readers: dict[str, list[str]],
    start: float,
    since: float,
    until: float,
) -> Preflight:
    """Check that the server has the job's series for the period; return its oldest sample.

    ``names`` are the metric names the rules read, ``readers`` which rules read each.
    """
    url = api.connection.url
    present = set(
        await api.label_values("__name__", match=f"{{job={_quoted(job)}}}", start=since, end=until)
    )
    if not present:
        jobs = await api.label_values("job", start=since, end=until)
        listed = ", ".join(sorted(jobs)[:20]) or "none"
        raise BacktestError(
            f"no data for the job: Prometheus at {url} has no series with job={_quoted(job)} "
            f"between {_when(since)} and {_when(until)} (alerting.job in the config). "
            f"Jobs it has then: {listed}"
        )
    missing = sorted(set(names) - present)
    if missing:
        detail = "; ".join(
            f"{name} (read by {', '.join(sorted(set(readers.get(name, []))))})" for name in missing
        )
        raise BacktestError(
            f"the series of job={_quoted(job)} at {url} lack metric families the rules read, "
            f"as an older agent-quality-exporter exports: {detail}. Upgrade the exporter, or "
            "backtest a period after the upgrade (--since)"
        )
    probe = f"{{__name__={_quoted(sorted(names)[0])}, job={_quoted(job)}}}"
    oldest = await _oldest(api, probe, start=start, until=until)
    runtime = await api.status("runtimeinfo") or {}
    build = await api.status("buildinfo") or {}
    retention = runtime.get("storageRetention")
    tolerance = 3600.0
    if oldest > since + tolerance:
        kept = f" (it keeps {retention})" if retention else ""
        days = max(math.floor((until - oldest + tolerance) / 86400), 0)
        raise BacktestError(
            f"the period is longer than Prometheus at {url} holds{kept}: its oldest sample of "
            f"job={_quoted(job)} is from {_when(oldest)}, the period starts {_when(since)}. "
            f"Backtest at most the last {days}d (--since {days}d), or from {_when(oldest)}"
        )
    version = build.get("version")
    return Preflight(oldest=oldest, retention=retention, version=str(version) if version else None)


async def _oldest(api: PrometheusAPI, probe: str, *, start: float, until: float) -> float:
    """Return the server's first sample of ``probe`` in [start, until].

    A coarse subquery finds it within a step; a fine one around it finds the sample itself
    (``timestamp()`` is the sample's time, and steps closer than a scrape interval see it).
    """
    span = max(until - start, 60.0)
    oldest = until
    at = until
    for _ in range(2):
        step = max(1, math.ceil(span / 1000))
        expr = f"min(min_over_time(timestamp({probe})[{math.ceil(span)}s:{step}s]))"
        data = await api.query(expr, at=at)
        result = data.get("result") if isinstance(data, dict) else None
        if not result:
            return oldest
        oldest = float(result[0]["value"][1])
        at, span = min(oldest + step, until), 2.0 * step
    return oldest


@dataclass
class FetchStats:
    """What the download saw."""

    samples: int = 0
    series: int = 0
    first: float = math.inf
    pairs: set[tuple[str, str]] = field(default_factory=set)
    scrape_interval: float | None = None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _OpenMetricsFile:
    """One window's samples, each series' samples in time order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._file = path.open("w", encoding="utf-8")

    def write(self, series: Series, *, after: float) -> tuple[int, float]:
        """Write the samples later than ``after``; return how many and the last time."""
        labels = sorted(series.metric.items())
        name = series.metric.get("__name__", "")
        inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels if key != "__name__")
        head = f"{name}{{{inner}}} "
        values = [(ts, value) for ts, value in series.values if ts > after]
        if not values:
            return 0, after
        self._file.write("".join(f"{head}{value} {ts:.3f}\n" for ts, value in values))
        self.lines += len(values)
        return len(values), values[-1][0]

    def close(self) -> Path:
        self._file.write("# EOF\n")
        self._file.close()
        return self.path


@dataclass
class _Download:
    """State shared by the selectors of one download."""

    api: PrometheusAPI
    stats: FetchStats
    #: The last timestamp written per series: selectors overlap, chunk edges repeat samples.
    last: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    #: Seconds of history per answer, per selector, tuned to CHUNK_SAMPLES.
    span: dict[str, float] = field(default_factory=dict)
    #: The first ``up`` series, and its first scrape times: the scrape interval.
    up_key: tuple[tuple[str, str], ...] | None = None
    up_times: list[float] = field(default_factory=list)

    def write(self, out: _OpenMetricsFile, result: Sequence[Series]) -> int:
        written = 0
        for series in result:
            key = tuple(sorted(series.metric.items()))
            previous = self.last.get(key)
            if previous is None:
                agent, dimension = series.metric.get("agent"), series.metric.get("dimension")
                if agent is not None and dimension is not None:
                    self.stats.pairs.add((agent, dimension))
                if series.metric.get("__name__") == "up" and self.up_key is None:
                    self.up_key = key
            after = -math.inf if previous is None else previous
            if key == self.up_key and len(self.up_times) < 1000:
                self.up_times.extend(ts for ts, _ in series.values if ts > after)
            count, newest = out.write(series, after=after)
            if count:
                if previous is None:
                    self.stats.series += 1
                self.last[key] = newest
                self.stats.first = min(self.stats.first, series.values[0][0])
                written += count
        self.stats.samples += written
        return written

    async def selector(self, query: str, out: _OpenMetricsFile, start: float, end: float) -> None:
        """Download ``query``'s samples in (start, end], chunk by chunk."""
        low = start
        while low < end:
            span = min(self.span.get(query, 3600.0), end - low)
            high = low + span
            result = await self.api.matrix(f"{query}[{math.ceil(span * 1000)}ms]", at=high)
            samples = self.write(out, result)
            # Grow or shrink the next answer towards CHUNK_SAMPLES.
            factor = CHUNK_SAMPLES / max(samples, 1)
            self.span[query] = min(max(span * min(max(factor, 0.25), 4.0), 60.0), 7 * 86400.0)
            low = high


async def fetch_raw(
    api: PrometheusAPI,
    queries: Sequence[str],
    *,
    start: float,
    end: float,
    directory: Path,
    store: Callable[[Path], Awaitable[None]],
    progress: Progress,
) -> FetchStats:
    """Download ``queries`` over (start, end] into OpenMetrics files handed to ``store``.

    ``store`` turns one file into blocks; it runs while the next windows download.
    """
    download = _Download(api, FetchStats())
    window = 6 * 3600.0
    stores: list[asyncio.Task[None]] = []
    limit = asyncio.Semaphore(_CONCURRENCY)

    async def one(query: str, out: _OpenMetricsFile, low: float, high: float) -> None:
        async with limit:
            await download.selector(query, out, low, high)

    try:
        with progress.stage("download", total=(end - start) / 3600, unit="h") as advance:
            low, index = start, 0
            while low < end:
                high = min(low + window, end)
                out = _OpenMetricsFile(directory / f"raw-{index:05d}.om")
                async with asyncio.TaskGroup() as group:
                    for query in queries:
                        group.create_task(one(query, out, low, high))
                path = out.close()
                while len(stores) >= _STORES:
                    await stores.pop(0)
                stores.append(asyncio.ensure_future(store(path)))
                # Size the next window so its file holds about FILE_SAMPLES samples.
                window = min(max(window * FILE_SAMPLES / max(out.lines, 1), 3600.0), 2 * 86400.0)
                advance((high - low) / 3600)
                low, index = high, index + 1
            while stores:
                await stores.pop(0)
    finally:
        for task in stores:  # a failed download: stop the imports still running
            task.cancel()
        for task in stores:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if len(download.up_times) > 2:
        gaps = [b - a for a, b in zip(download.up_times, download.up_times[1:], strict=False)]
        download.stats.scrape_interval = statistics.median(gaps)
    return download.stats
