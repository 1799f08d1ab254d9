"""The status page at ``/``: server-rendered HTML with inline SVG sparklines, no JavaScript.

Everything shown comes from the config, the in-process ``StatusBoard`` and the app's own
metrics; every text that could come from a payload (conversation ids) is escaped.
"""

from __future__ import annotations

import html
import time
import urllib.parse
from collections.abc import Iterable, Sequence

from prometheus_client.registry import Collector

from exporter._version import __version__
from exporter.config.model import Config, Dimension
from exporter.metrics import Metrics
from exporter.names import AGENT_UID, PREFIX
from exporter.web.status import FlagGroup, Series, StatusBoard
from exporter.web.status_judges import render_judges

__all__ = ["level", "render_status", "sparkline"]

#: The page reloads itself this often (seconds): a status view, not an app.
REFRESH = 15
SAMPLING_REASONS = ("base", "boost", "min_fill")
#: Shown where there is no number yet (an en dash).
NOTHING = "\N{EN DASH}"


def level(dimension: Dimension, mean: float | None) -> str:
    """Return ``critical``, ``warning`` or ``ok`` for a mean against the dimension's levels."""
    if mean is None:
        return "none"
    for name in ("critical", "warning"):
        value = getattr(dimension.thresholds, name)
        if value is None:
            continue
        if (mean < value) if dimension.higher_is_better else (mean > value):
            return name
    return "ok"


def sparkline(
    points: Sequence[float | None],
    dimension: Dimension,
    *,
    baseline: float | None,
    width: int = 180,
    height: int = 36,
) -> str:
    """Return an inline SVG of bucket means on the dimension's scale, with its levels."""
    low, high, pad = dimension.scale_min, dimension.scale_max, 3.0
    step = width / max(len(points) - 1, 1)

    def y(value: float) -> str:
        share = (high - value) / (high - low) if high > low else 0.5
        return f"{pad + share * (height - 2 * pad):.1f}"

    parts = [
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{html.escape(dimension.name)} mean per bucket">'
    ]
    for name in ("warning", "critical"):
        value = getattr(dimension.thresholds, name)
        if value is not None:
            parts.append(
                f'<line class="{name}" x1="0" x2="{width}" y1="{y(value)}" y2="{y(value)}"/>'
            )
    if baseline is not None:
        parts.append(
            f'<line class="baseline" x1="0" x2="{width}" y1="{y(baseline)}" y2="{y(baseline)}"/>'
        )
    run: list[str] = []
    for index, value in enumerate([*points, None]):
        if value is not None:
            run.append(f"{index * step:.1f},{y(value)}")
            continue
        if len(run) == 1:
            x, y0 = run[0].split(",")
            parts.append(f'<circle class="mean" cx="{x}" cy="{y0}" r="1.8"/>')
        elif run:
            parts.append(f'<polyline class="mean" points="{" ".join(run)}"/>')
        run = []
    parts.append("</svg>")
    return "".join(parts)


def _rule(kind: str, y: str, width: int) -> str:
    return f'<line class="{kind}" x1="0" x2="{width}" y1="{y}" y2="{y}"/>'


def _number(value: float | None, digits: int = 3) -> str:
    return NOTHING if value is None else f"{value:.{digits}g}"


def _delta(item: Series) -> str:
    if item.recent_mean is None or item.baseline_mean is None:
        return f'<td class="delta">{NOTHING}</td>'
    # Rounded first: equal means differ by float noise (2e-16), which is no change.
    change = round(item.recent_mean - item.baseline_mean, 9)
    worse = -change if item.dimension.higher_is_better else change
    kind = "worse" if worse >= item.dimension.alerting.min_delta else "same"
    if worse <= -item.dimension.alerting.min_delta:
        kind = "better"
    return (
        f'<td class="delta {kind}">{change:+.3g}</td>'
        if change
        else '<td class="delta same">0</td>'
    )


def _dashboards(config: Config) -> tuple[str | None, str | None]:
    """Return the Grafana overview URL and the drill-down's base, from alerting.dashboard_url."""
    if config.alerting is None:
        return None, None
    overview = config.alerting.dashboard_url
    base, found, _ = overview.partition("/d/")
    return overview, f"{base}/d/{AGENT_UID}/{AGENT_UID}" if found else None


def _quality(board: StatusBoard, config: Config) -> str:
    _, drill = _dashboards(config)
    rows = []
    for item in board.series():
        dimension = item.dimension
        agent = html.escape(item.agent)
        if drill is not None:
            query = urllib.parse.urlencode({"var-agent": item.agent})
            agent = f'<a href="{html.escape(drill)}?{html.escape(query)}">{agent}</a>'
        rows.append(
            f'<tr data-agent="{html.escape(item.agent)}" '
            f'data-dimension="{html.escape(dimension.name)}">'
            f"<td>{agent}</td><td>{html.escape(dimension.name)}</td>"
            f'<td class="mean {level(dimension, item.recent_mean)}">'
            f"{_number(item.recent_mean)}</td><td class=n>{item.recent_count}</td>"
            f"<td>{_number(item.baseline_mean)}</td><td class=n>{item.baseline_count}</td>"
            f"{_delta(item)}"
            f"<td>{sparkline(item.points, dimension, baseline=item.baseline_mean)}</td></tr>"
        )
    recent = board.recent_buckets * board.bucket_seconds
    shown = board.buckets * board.bucket_seconds
    return (
        f"<h2>Quality: the last {recent / 60:g} min against the baseline</h2>"
        f"<p class=note>Baseline: every score since this process started, before the last "
        f"{recent / 60:g} min. Sparklines: mean per {board.bucket_seconds:g}s over the last "
        f"{shown / 60:g} min, dashed at the warning/critical levels, grey at the baseline. "
        f"One process only; Prometheus and the dashboards see every replica.</p>"
        "<table class=quality><thead><tr><th>agent</th><th>dimension</th><th>recent mean</th>"
        "<th>n</th><th>baseline</th><th>n</th><th>change</th><th>trend</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def _flags(groups: Iterable[FlagGroup], board: StatusBoard) -> str:
    rows = []
    for group in groups:
        latest = "<br>".join(
            f"<span class=when>{_clock(e.at)}</span> {html.escape(e.agent)} "
            f"<code>{html.escape(e.conversation)}</code>"
            for e in group.examples
        )
        rows.append(
            f'<tr data-flag="{html.escape(group.flag)}"><td>{html.escape(group.flag)}</td>'
            f"<td class=n>{group.recent_count}</td><td class=n>{group.total_count}</td>"
            f"<td class=latest>{latest}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="4">No flag raised yet.</td></tr>'
    recent = board.recent_buckets * board.bucket_seconds / 60
    return (
        f"<h2>Flags</h2><p class=note>Raised in the last {recent:g} min and since start, the "
        f"latest {board.flag_examples} conversations each (UTC).</p><table class=flags>"
        f"<thead><tr><th>flag</th><th>last {recent:g} min</th><th>since start</th>"
        f"<th>latest</th></tr></thead><tbody>{body}</tbody></table>"
    )


def _samples(collector: Collector) -> list[tuple[dict[str, str], float]]:
    """Return a collector's samples (counters: their ``_total``) with labels."""
    return [
        (dict(sample.labels), sample.value)
        for family in collector.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


def _sampling(config: Config, metrics: Metrics) -> str:
    def by_agent(collector: Collector, **match: str) -> dict[str, float]:
        totals: dict[str, float] = {}
        for labels, value in _samples(collector):
            if all(labels.get(k) == v for k, v in match.items()):
                totals[labels["agent"]] = totals.get(labels["agent"], 0.0) + value
        return totals

    received, scored = by_agent(metrics.conversations), by_agent(metrics.scored)
    reasons = {reason: by_agent(metrics.sampled, reason=reason) for reason in SAMPLING_REASONS}
    rows = []
    for agent in config.agent_labels:
        cells = "".join(f"<td class=n>{reasons[r].get(agent, 0):g}</td>" for r in SAMPLING_REASONS)
        got = received.get(agent, 0)
        sampled = sum(reasons[r].get(agent, 0) for r in SAMPLING_REASONS)
        share = f"{sampled / got:.1%}" if got else NOTHING
        rows.append(
            f"<tr><td>{html.escape(agent)}</td><td class=n>{got:g}</td>{cells}"
            f"<td class=n>{share}</td><td class=n>{scored.get(agent, 0):g}</td></tr>"
        )
    dropped = [(labels["reason"], value) for labels, value in _samples(metrics.dropped) if value]
    drops = ", ".join(f"{html.escape(r)} {v:g}" for r, v in dropped) or "none"
    sampling = config.sampling
    return (
        f"<h2>Sampling</h2><p>Base rate {sampling.base_rate:g}, boost rate "
        f"{sampling.boost_rate:g}, at least {sampling.min_daily_samples} a day per replica. "
        f"Dropped since start: <span class=drops>{drops}</span>.</p>"
        "<table class=sampling><thead><tr><th>agent</th><th>received</th><th>base</th>"
        "<th>boost</th><th>min_fill</th><th>share</th><th>scored</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _queue(config: Config, metrics: Metrics, *, idle: bool) -> str:
    gauges = {}
    for family in metrics.gauges.collect():
        for sample in family.samples:
            gauges[sample.name.removeprefix(f"{PREFIX}_")] = sample.value
    depth, capacity = gauges.pop("queue_depth", 0.0), gauges.pop("queue_capacity", 1.0)
    in_flight = gauges.pop("in_flight", 0.0)
    fill = depth / capacity if capacity else 0.0
    others = "".join(
        f"<li>{html.escape(name)}: {value:g}</li>" for name, value in sorted(gauges.items())
    )
    return (
        f"<h2>Scoring queue</h2><p>{depth:g} of {capacity:g} slots queued "
        f'<span class=bar><span style="width:{min(fill, 1.0):.0%}"></span></span> '
        f"{in_flight:g} being scored by {config.pipeline.workers} workers "
        f"({'idle' if idle else 'scoring'}).</p>"
        + (f"<ul class=gauges>{others}</ul>" if others else "")
    )


def render_status(
    *,
    config: Config,
    board: StatusBoard,
    metrics: Metrics,
    summary: str,
    ready: bool,
    idle: bool,
) -> str:
    """Return the whole page."""
    overview, _ = _dashboards(config)
    grafana = (
        f'<a href="{html.escape(overview)}">Grafana overview</a> (agent names link to each '
        "agent's dashboard)"
        if overview
        else "Grafana dashboards: run <code>agent-quality-exporter generate</code>"
    )
    return _PAGE.format(
        refresh=REFRESH,
        version=html.escape(__version__),
        state="ready" if ready else "draining",
        grafana=grafana,
        quality=_quality(board, config),
        flags=_flags(board.flags(), board),
        judges=render_judges(config, metrics),
        sampling=_sampling(config, metrics),
        queue=_queue(config, metrics, idle=idle),
        summary=summary,
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem 2rem;max-width:72rem;color:#1d2330}
h1{font-size:1.4rem;margin:0 0 .3rem} h2{font-size:1.1rem;margin:1.6rem 0 .4rem}
nav a{margin-right:1rem} .note{color:#555;font-size:.85rem;margin:.2rem 0 .6rem}
table{border-collapse:collapse;font-size:.9rem} th,td{padding:.25rem .6rem;text-align:left}
thead th{border-bottom:2px solid #ccd} tbody tr{border-bottom:1px solid #eef}
td.n,td.mean,td.delta{text-align:right;font-variant-numeric:tabular-nums}
td.mean.ok{background:#d8f3dc} td.mean.warning{background:#ffe5b4}
td.mean.critical{background:#ffccd0} td.delta.worse{color:#c1121f;font-weight:600}
td.delta.better{color:#2d6a4f}
table.judges tr.trouble td{background:#ffccd0} td.breaker.closed{color:#2d6a4f}
td.breaker.open,td.breaker.half_open{color:#c1121f;font-weight:600}
td.error{max-width:28rem;font-size:.8rem;word-break:break-word} .when{color:#555}
td.latest{font-size:.8rem}
.state{padding:.1rem .5rem;border-radius:.6rem;background:#d8f3dc}
.state.draining{background:#ffe5b4}
svg.spark{display:block} svg.spark polyline{fill:none;stroke:#3a5ccc;stroke-width:1.5}
svg.spark circle{fill:#3a5ccc} svg.spark line{stroke-width:1}
svg.spark line.warning{stroke:#f4a261;stroke-dasharray:3 2}
svg.spark line.critical{stroke:#e63946;stroke-dasharray:3 2}
svg.spark line.baseline{stroke:#aaa}
.cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:2.5rem}
.bar{display:inline-block;width:8rem;height:.7rem;background:#eef;vertical-align:middle}
.bar span{display:block;height:100%;background:#3a5ccc}
"""

_PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>agent-quality-exporter status</title><style>"""
    + _STYLE.replace("{", "{{").replace("}", "}}")
    + """</style></head>
<body><h1>agent-quality-exporter {version} <span class="state {state}">{state}</span></h1>
<nav><a href="/metrics">/metrics</a><a href="/-/healthy">/-/healthy</a>
<a href="/-/ready">/-/ready</a><a href="/openapi.json">/openapi.json</a> {grafana}</nav>
{quality}
{judges}
<div class=cols><section>{flags}</section><section>{sampling}
{queue}</section></div>
<h2>Running config</h2><table class=config>
{summary}
</table>
<p class=note>Send conversations with <code>POST /v1/conversations</code> or
<code>POST /v1/traces</code> (OTLP); late signals with <code>POST /v1/feedback</code>.
This page reloads every {refresh}s.</p>
</body></html>
"""
)
