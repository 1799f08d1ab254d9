"""What a backtest found, as text, Markdown or JSON, alone or two configs side by side.

The data first (``summarize``, ``rows``, ``compare``), then one renderer per format. Times
are UTC; every episode carries a ``from``/``to`` range in milliseconds, as Grafana takes it,
and the alert's dashboard link with that range when the rules carry one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.backtest.evaluate import Episode
from exporter.backtest.run import Result

__all__ = ["Diff", "Row", "Summary", "compare", "render", "render_compare", "summarize"]
#: Severities Alertmanager routes to a pager (the generated routing: critical pages).
PAGE = "critical"
TICKET = "warning"
#: Context shown around an alert in its link: an hour either side.
_CONTEXT = 3600.0
_SHOWN_PAIRS = 5
#: Labels every row shows in its own column.
_KEY_LABELS = ("alertname", "severity", "agent", "dimension")


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _short(seconds: float | None) -> str:
    if seconds is None:
        return "still firing"
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def _span(seconds: float) -> str:
    """Return a duration as ``3d4h``, ``1h12m``, ``45m`` (minutes at least)."""
    minutes = max(round(seconds / 60), 0)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
    ]
    return "".join(parts) or "0m"


def _value(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.4g}"


def _extra(labels: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _KEY_LABELS)


@dataclass(frozen=True, slots=True)
class Pair:
    """One agent and dimension: how many alerts it had and for how long they fired."""

    agent: str
    dimension: str
    alerts: int
    firing: float


@dataclass(frozen=True, slots=True)
class Summary:
    """Pages and warnings a week, and the quietest and noisiest pairs."""

    weeks: float
    pages: int
    warnings: int
    other: int
    noisiest: tuple[Pair, ...]
    quietest: tuple[Pair, ...]
    silent_pairs: int

    @property
    def pages_per_week(self) -> float:
        """Return pages a week."""
        return self.pages / self.weeks if self.weeks else 0.0

    @property
    def warnings_per_week(self) -> float:
        """Return warnings a week."""
        return self.warnings / self.weeks if self.weeks else 0.0


@dataclass(frozen=True, slots=True)
class Row:
    """The episodes of one alert on one agent and dimension (and its other labels)."""

    alertname: str
    severity: str
    agent: str
    dimension: str
    labels: str
    episodes: tuple[Episode, ...]

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """Return what identifies the row across configs."""
        return (self.alertname, self.severity, self.agent, self.dimension, self.labels)


def _firing(episode: Episode, result: Result) -> float:
    """Return the seconds an episode fired inside the period."""
    end = episode.resolved_at if episode.resolved_at is not None else result.until
    return max(min(end, result.until) - max(episode.fired_at, result.since), 0.0)


def rows(result: Result) -> list[Row]:
    """Group a result's episodes by alert, agent, dimension and other labels."""
    grouped: dict[tuple[str, str, str, str, str], list[Episode]] = {}
    for episode in result.episodes:
        labels = episode.labels
        key = (
            episode.alertname,
            episode.severity,
            labels.get("agent", "-"),
            labels.get("dimension", "-"),
            _extra(labels),
        )
        grouped.setdefault(key, []).append(episode)
    return [Row(*key, episodes=tuple(found)) for key, found in sorted(grouped.items())]


def summarize(result: Result) -> Summary:
    """Return the pages and warnings a week and the pairs by how much they alerted."""
    weeks = (result.until - result.since) / (7 * 86400)
    counts = {pair: [0, 0.0] for pair in result.pairs}
    for episode in result.episodes:
        agent, dimension = episode.labels.get("agent"), episode.labels.get("dimension")
        if agent is None or dimension is None:
            continue
        entry = counts.setdefault((agent, dimension), [0, 0.0])
        entry[0] += 1
        entry[1] += _firing(episode, result)
    pairs = [Pair(agent, dim, int(n), float(s)) for (agent, dim), (n, s) in counts.items()]
    noisy = sorted((p for p in pairs if p.alerts), key=lambda p: (-p.alerts, -p.firing, p.agent))
    quiet = sorted(pairs, key=lambda p: (p.alerts, p.firing, p.agent, p.dimension))
    silent = [pair for pair in quiet if not pair.alerts]
    if silent:  # name only pairs without alerts; their count says how many more
        quiet = silent
    severities = [episode.severity for episode in result.episodes]
    return Summary(
        weeks=weeks,
        pages=severities.count(PAGE),
        warnings=severities.count(TICKET),
        other=len(severities) - severities.count(PAGE) - severities.count(TICKET),
        noisiest=tuple(noisy[:_SHOWN_PAIRS]),
        quietest=tuple(quiet[:_SHOWN_PAIRS]),
        silent_pairs=sum(1 for p in pairs if not p.alerts),
    )


def _window(episode: Episode, result: Result) -> tuple[int, int]:
    end = episode.resolved_at if episode.resolved_at is not None else result.until
    return round((episode.fired_at - _CONTEXT) * 1000), round((end + _CONTEXT) * 1000)


def _link(episode: Episode, result: Result) -> str | None:
    if episode.dashboard_url is None:
        return None
    start, end = _window(episode, result)
    joiner = "&" if "?" in episode.dashboard_url else "?"
    return f"{episode.dashboard_url}{joiner}from={start}&to={end}"


def _episode_data(episode: Episode, result: Result) -> dict[str, Any]:
    start, end = _window(episode, result)
    return {
        "labels": dict(episode.labels),
        "active_at": _iso(episode.active_at),
        "fired_at": _iso(episode.fired_at),
        "resolved_at": _iso(episode.resolved_at),
        "firing_seconds": episode.duration(until=result.until),
        "value": None if math.isnan(episode.value) else episode.value,
        "from_ms": start,
        "to_ms": end,
        "dashboard_url": _link(episode, result),
    }


def _pair_data(pair: Pair) -> dict[str, Any]:
    return {
        "agent": pair.agent,
        "dimension": pair.dimension,
        "alerts": pair.alerts,
        "firing_seconds": pair.firing,
    }


def result_data(result: Result) -> dict[str, Any]:
    """Return a result as JSON-ready data."""
    summary = summarize(result)
    return {
        "config": {"source": result.source, "digest": result.digest},
        "prometheus": {
            "url": result.url,
            "job": result.job,
            "version": result.server_version,
            "agents": list(result.agents),
            "dimensions": list(result.dimensions),
        },
        "period": {
            "since": _iso(result.since),
            "until": _iso(result.until),
            "days": (result.until - result.since) / 86400,
        },
        "evaluation": {
            "engine": f"Prometheus {result.engine_version or 'unknown'}",
            "interval_seconds": result.interval,
            "recording_rules": result.recording_rules,
            "levels": result.levels,
            "alerts": result.alerts,
            "warmup_seconds": result.warmup,
            "elapsed_seconds": round(result.elapsed, 1),
            "stage_seconds": dict(result.stages),
        },
        "data": {
            "samples": result.samples,
            "scrape_interval_seconds": result.scrape_interval,
            "pairs": [list(pair) for pair in result.pairs],
        },
        "summary": {
            "pages": summary.pages,
            "warnings": summary.warnings,
            "other": summary.other,
            "pages_per_week": summary.pages_per_week,
            "warnings_per_week": summary.warnings_per_week,
            "noisiest": [_pair_data(pair) for pair in summary.noisiest],
            "quietest": [_pair_data(pair) for pair in summary.quietest],
            "pairs_without_alerts": summary.silent_pairs,
        },
        "alerts": [
            {
                "alertname": row.alertname,
                "severity": row.severity,
                "agent": row.agent,
                "dimension": row.dimension,
                "labels": row.labels,
                "fired": len(row.episodes),
                "firing_seconds": sum(_firing(e, result) for e in row.episodes),
                "episodes": [_episode_data(e, result) for e in row.episodes],
            }
            for row in rows(result)
        ],
        "notes": list(result.notes),
    }


def _table(headers: Sequence[str], lines: Iterable[Sequence[str]], *, markdown: bool) -> list[str]:
    body = [list(map(str, line)) for line in lines]
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return out + [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body
        ]
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *body, strict=False)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in [list(headers), *body]
    ]


def _pairs_line(pairs: Sequence[Pair], *, quiet: bool) -> str:
    if not pairs:
        return "none"
    shown = []
    for pair in pairs:
        what = (
            "no alert" if not pair.alerts else f"{pair.alerts} alerts, {_span(pair.firing)} firing"
        )
        shown.append(f"{pair.agent}/{pair.dimension} ({what})")
    return "; ".join(shown)


def _header(result: Result) -> list[str]:
    days = (result.until - result.since) / 86400
    scraped = f", scraped every {result.scrape_interval:g}s" if result.scrape_interval else ""
    return [
        f"history: {result.url} job={result.job}, {_short(result.since)} to "
        f"{_short(result.until)} UTC ({days:.3g} days), {len(result.pairs)} agent/dimension "
        f"pairs{scraped}, {result.samples:,} samples",
        f"engine: Prometheus {result.engine_version or '?'} on a local copy, every "
        f"{_span(result.interval) if result.interval >= 60 else f'{result.interval:g}s'}: "
        f"{result.recording_rules} recording rules in {result.levels} levels, "
        f"{result.alerts} alerts, {_span(result.warmup)} of history before the period",
    ]


def _render(result: Result, *, markdown: bool) -> str:
    summary = summarize(result)
    heading = "## " if markdown else ""
    bullet = "- " if markdown else "  "
    lines = [
        f"{'# ' if markdown else ''}Backtest of {result.source} (config {result.digest})",
        "",
        *(f"{bullet}{line}" for line in _header(result)),
        *(f"{bullet}note: {note}" for note in result.notes),
        "",
        f"{heading}Summary",
        "",
        f"{bullet}pages: {summary.pages} ({summary.pages_per_week:.1f} a week)",
        f"{bullet}warnings: {summary.warnings} ({summary.warnings_per_week:.1f} a week)",
    ]
    if summary.other:
        lines.append(f"{bullet}other severities: {summary.other}")
    lines += [
        f"{bullet}noisiest: {_pairs_line(summary.noisiest, quiet=False)}",
        f"{bullet}quietest: {_pairs_line(summary.quietest, quiet=True)}"
        + (
            f" ({summary.silent_pairs} of {len(result.pairs)} pairs without any alert)"
            if summary.silent_pairs
            else ""
        ),
        "",
    ]
    found = rows(result)
    if not found:
        lines.append("No alert would have fired.")
        return "\n".join(lines) + "\n"
    lines += [f"{heading}Alerts", ""]
    lines += _table(
        ("alert", "severity", "agent", "dimension", "labels", "fired", "firing"),
        (
            (
                r.alertname,
                r.severity,
                r.agent,
                r.dimension,
                r.labels or "-",
                str(len(r.episodes)),
                _span(sum(_firing(e, result) for e in r.episodes)),
            )
            for r in found
        ),
        markdown=markdown,
    )
    lines += ["", f"{heading}Episodes", ""]
    lines += _table(
        (
            "fired (UTC)",
            "resolved",
            "for",
            "severity",
            "alert",
            "agent/dimension",
            "value",
            "range",
        ),
        (
            (
                _short(e.fired_at),
                _short(e.resolved_at),
                _span(e.duration(until=result.until)),
                e.severity,
                " ".join(filter(None, (e.alertname, _extra(e.labels)))),
                f"{e.labels.get('agent', '-')}/{e.labels.get('dimension', '-')}",
                _value(e.value),
                _link(e, result) or "from={}&to={}".format(*_window(e, result)),
            )
            for e in sorted(result.episodes, key=lambda e: e.fired_at)
        ),
        markdown=markdown,
    )
    return "\n".join(lines) + "\n"


def render(result: Result, output_format: str) -> str:
    """Return one result in ``output_format`` (``text``, ``json`` or ``markdown``)."""
    if output_format == "json":
        return json.dumps(result_data(result), indent=2) + "\n"
    return _render(result, markdown=output_format == "markdown")


@dataclass(frozen=True, slots=True)
class Diff:
    """One row of a comparison: the same alert, agent and dimension under both configs."""

    key: tuple[str, str, str, str, str]
    base: tuple[Episode, ...]
    other: tuple[Episode, ...]
    added: tuple[Episode, ...]
    removed: tuple[Episode, ...]


def _overlaps(episode: Episode, others: Sequence[Episode], until: float) -> bool:
    end = episode.resolved_at if episode.resolved_at is not None else until
    return any(
        other.fired_at < end
        and episode.fired_at < (other.resolved_at if other.resolved_at is not None else until)
        for other in others
    )


def compare(base: Result, other: Result) -> list[Diff]:
    """Return per alert row what ``other`` adds (no overlapping base episode) and removes."""
    left = {row.key: row.episodes for row in rows(base)}
    right = {row.key: row.episodes for row in rows(other)}
    diffs = []
    for key in sorted(left.keys() | right.keys()):
        a, b = left.get(key, ()), right.get(key, ())
        diffs.append(
            Diff(
                key=key,
                base=a,
                other=b,
                added=tuple(e for e in b if not _overlaps(e, a, base.until)),
                removed=tuple(e for e in a if not _overlaps(e, b, base.until)),
            )
        )
    return diffs


def _compare_data(base: Result, other: Result) -> dict[str, Any]:
    diffs = compare(base, other)
    a, b = summarize(base), summarize(other)
    episode: Callable[[Episode], dict[str, Any]] = lambda e: _episode_data(e, base)  # noqa: E731
    return {
        "base": result_data(base),
        "compare": result_data(other),
        "diff": {
            "summary": {
                "pages_per_week": [a.pages_per_week, b.pages_per_week],
                "warnings_per_week": [a.warnings_per_week, b.warnings_per_week],
                "added": sum(len(d.added) for d in diffs),
                "removed": sum(len(d.removed) for d in diffs),
            },
            "rows": [
                {
                    "alertname": d.key[0],
                    "severity": d.key[1],
                    "agent": d.key[2],
                    "dimension": d.key[3],
                    "labels": d.key[4],
                    "base": len(d.base),
                    "compare": len(d.other),
                    "added": [episode(e) for e in d.added],
                    "removed": [episode(e) for e in d.removed],
                }
                for d in diffs
            ],
        },
    }


def render_compare(base: Result, other: Result, output_format: str) -> str:
    """Return two results of the same history side by side: what ``other`` changes."""
    if output_format == "json":
        return json.dumps(_compare_data(base, other), indent=2) + "\n"
    markdown = output_format == "markdown"
    heading = "## " if markdown else ""
    bullet = "- " if markdown else "  "
    diffs = compare(base, other)
    a, b = summarize(base), summarize(other)
    lines = [
        f"{'# ' if markdown else ''}Backtest comparison: A = {base.source} (config "
        f"{base.digest}), B = {other.source} (config {other.digest})",
        "",
        *(f"{bullet}{line}" for line in _header(base)),
        *(f"{bullet}note: {note}" for note in dict.fromkeys((*base.notes, *other.notes))),
        "",
        *_table(
            ("", "A", "B"),
            (
                ("pages a week", f"{a.pages_per_week:.1f}", f"{b.pages_per_week:.1f}"),
                ("warnings a week", f"{a.warnings_per_week:.1f}", f"{b.warnings_per_week:.1f}"),
                ("alerts", str(len(base.episodes)), str(len(other.episodes))),
            ),
            markdown=markdown,
        ),
        "",
    ]
    changed = [d for d in diffs if d.added or d.removed]
    if not changed:
        lines.append("B raises the same alerts as A.")
        return "\n".join(lines) + "\n"
    lines += [f"{heading}What B changes", ""]
    lines += _table(
        ("alert", "severity", "agent", "dimension", "labels", "A", "B", "added", "removed"),
        (
            (
                *d.key[:4],
                d.key[4] or "-",
                str(len(d.base)),
                str(len(d.other)),
                str(len(d.added)),
                str(len(d.removed)),
            )
            for d in changed
        ),
        markdown=markdown,
    )
    for title, pick in (("Added by B", "added"), ("Removed by B", "removed")):
        found = sorted((e for d in changed for e in getattr(d, pick)), key=lambda e: e.fired_at)
        if not found:
            continue
        lines += ["", f"{heading}{title}", ""]
        lines += _table(
            ("fired (UTC)", "for", "severity", "alert", "agent/dimension", "value"),
            (
                (
                    _short(e.fired_at),
                    _span(e.duration(until=base.until)),
                    e.severity,
                    " ".join(filter(None, (e.alertname, _extra(e.labels)))),
                    f"{e.labels.get('agent', '-')}/{e.labels.get('dimension', '-')}",
                    _value(e.value),
                )
                for e in found
            ),
            markdown=markdown,
        )
    return "\n".join(lines) + "\n"
