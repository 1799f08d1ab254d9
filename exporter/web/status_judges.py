"""The status page's judge section: is each LLM judge answering, and if not, what it says.

One row per configured judge, the confirmation judge included: what uses it, its circuit
breaker, the share of its last verdicts that failed and how many since start, the endpoint's
last error, and today's spend against its daily budget. A judge that fails now (breaker not
closed, or half or more of its last verdicts failed) is marked ``trouble``. Everything comes
from the config, the judges' clients and the app's metrics; the error text is escaped.
"""

from __future__ import annotations

import html
import time

from exporter.config.model import Config
from exporter.metrics import Metrics
from exporter.scoring.judge import ERROR_OUTCOMES, BreakerState, JudgeClient, judge_clients

__all__ = ["render_judges"]

#: Share of failed recent verdicts from which a judge is shown as in trouble.
TROUBLE_RATE = 0.5
NOTHING = "\N{EN DASH}"


def _uses(config: Config, name: str) -> list[str]:
    """Return what asks judge ``name`` for verdicts: its scorers, and the second tier."""
    uses = [
        f"scorer {spec.name}"
        for spec in config.scorers
        if spec.type == "llm_judge" and spec.options.get("judge") == name
    ]
    if config.confirmation.judge == name:
        uses.append("confirmation (tier 2)")
    return uses


def _calls(metrics: Metrics) -> dict[str, tuple[float, float]]:
    """Return (ok, failed) verdicts since start per judge, from ``judge_calls_total``."""
    totals: dict[str, tuple[float, float]] = {}
    for family in metrics.judge_calls.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            judge, outcome = sample.labels["judge"], sample.labels["outcome"]
            ok, failed = totals.get(judge, (0.0, 0.0))
            if outcome == "ok":
                ok += sample.value
            elif outcome in ERROR_OUTCOMES:
                failed += sample.value
            totals[judge] = (ok, failed)
    return totals


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def _spend(client: JudgeClient) -> str:
    spent, limit = client.budget.spent, client.budget.limit
    if client.config.price is None:
        return "no price set: not counted"
    if limit is None:
        return f"${spent:.2f} today, no budget"
    share = spent / limit if limit else 1.0
    over = " <b>spent: skipping</b>" if not client.budget.allows() else ""
    return f"${spent:.2f} of ${limit:.2f} today ({share:.0%}){over}"


def _row(name: str, config: Config, client: JudgeClient | None, since: tuple[float, float]) -> str:
    judge = config.judges[name]
    uses = ", ".join(_uses(config, name)) or "nothing (not used by any scorer)"
    head = (
        f"<td>{html.escape(name)}</td><td><code>{html.escape(judge.model)}</code></td>"
        f"<td>{html.escape(uses)}</td>"
    )
    ok, failed = since
    counted = f"<td class=n>{ok:g} ok, {failed:g} failed</td>"
    if client is None:
        cells = f"<td>{NOTHING}</td><td>{NOTHING}</td>{counted}<td>{NOTHING}</td><td>{NOTHING}</td>"
        return f'<tr data-judge="{html.escape(name)}" data-breaker="unused">{head}{cells}</tr>'
    health, state = client.health, client.breaker.state
    rate = health.error_rate
    recent = NOTHING if rate is None else f"{rate:.0%} of the last {health.recent}"
    trouble = state is not BreakerState.CLOSED or (rate is not None and rate >= TROUBLE_RATE)
    error = health.last_error
    last = (
        "none"
        if error is None
        else f"<span class=when>{_clock(error.at)}</span> {html.escape(error.message)}"
    )
    cells = (
        f'<td class="breaker {state.value}">{state.value.replace("_", "-")}</td>'
        f'<td class="n rate">{recent}</td>{counted}<td class=error>{last}</td>'
        f"<td>{_spend(client)}</td>"
    )
    kind = " class=trouble" if trouble else ""
    return (
        f'<tr data-judge="{html.escape(name)}" data-breaker="{state.value}"{kind}>'
        f"{head}{cells}</tr>"
    )


def render_judges(config: Config, metrics: Metrics) -> str:
    """Return the section: a table of the configured judges, or a note that there are none."""
    if not config.judges:
        return (
            "<h2>LLM judges</h2><p class=note>None configured: the scores come from the "
            "deterministic checks and upstream scores (docs/judges.md).</p>"
        )
    clients, since = judge_clients(metrics), _calls(metrics)
    rows = "".join(
        _row(name, config, clients.get(name), since.get(name, (0.0, 0.0))) for name in config.judges
    )
    return (
        "<h2>LLM judges</h2><p class=note>Breaker: <i>open</i> stops calls after failed "
        "requests in a row, <i>half-open</i> tries one. Errors: failed verdicts (errors, "
        "invalid answers, breaker open) among the last ones asked; times in UTC.</p>"
        "<table class=judges><thead><tr><th>judge</th><th>model</th><th>used by</th>"
        "<th>breaker</th><th>errors, recent</th><th>since start</th><th>last error</th>"
        f"<th>spend</th></tr></thead><tbody>{rows}</tbody></table>"
    )
