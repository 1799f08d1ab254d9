"""What both dashboards share: the tag, variables, links, the frame of a dashboard."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.models import dashboard as model

from exporter.config.alerting import AlertingConfig
from exporter.config.model import Config
from exporter.generate.conventions import HEADER, PREFIX
from exporter.generate.grafana._kit import DATASOURCE
from exporter.names import AGENT_UID

__all__ = [
    "TAG",
    "agent_link",
    "agent_variable",
    "dimension_variable",
    "frame",
    "runbook",
    "runbook_link",
]

#: Every bundled dashboard carries this tag; the dashboards' links list them by it.
TAG = "agent-quality"

#: Grafana's native Prometheus variable query: label values of a series selector.
_VARIABLE_QUERY = "PrometheusVariableQueryEditor-VariableQuery"


def runbook(alerting: AlertingConfig, alert: str | None = None) -> str:
    """Return the runbook URL, at the alert's section if given (as the alerts link it)."""
    return f"{alerting.runbook_url}#{alert.lower()}" if alert else alerting.runbook_url


def runbook_link(alerting: AlertingConfig, alert: str) -> board.DashboardLink:
    """Return a panel link to the runbook's section on ``alert``."""
    return (
        board.DashboardLink(f"Runbook: {alert}")
        .url(runbook(alerting, alert))
        .type(model.DashboardLinkType.LINK)
        .target_blank(True)
    )


def agent_link(title: str = "Open this agent") -> board.DashboardLink:
    """Return a data link from a series to the drill-down of its ``agent``."""
    return (
        board.DashboardLink(title)
        .url(
            f"/d/{AGENT_UID}/{AGENT_UID}?var-agent=${{__field.labels.agent}}"
            "&${datasource:queryparam}&${__url_time_range}"
        )
        .type(model.DashboardLinkType.LINK)
    )


def agent_variable(*, multi: bool) -> board.QueryVariable:
    """Return the ``agent`` variable: the agent label values the exporters report."""
    query = f"label_values({PREFIX}_conversations_total, agent)"
    variable = (
        board.QueryVariable("agent")
        .label("Agent")
        .datasource(DATASOURCE)
        .query({"qryType": 1, "query": query, "refId": _VARIABLE_QUERY})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        variable = variable.multi(True).include_all(True)
    return variable


def dimension_variable() -> board.QueryVariable:
    """Return the ``dimension`` variable: the dimensions scored for the chosen agents."""
    query = f'label_values({PREFIX}_score_count{{agent=~"$agent"}}, dimension)'
    return (
        board.QueryVariable("dimension")
        .label("Dimension")
        .datasource(DATASOURCE)
        .query({"qryType": 1, "query": query, "refId": _VARIABLE_QUERY})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )


def frame(config: Config, *, uid: str, title: str, summary: str) -> board.Dashboard:
    """Return a dashboard with what every bundled one has: uid, tags, time, links, variables."""
    alerting = config.alerting
    assert alerting is not None  # generate() refuses a config without one
    generated = HEADER.format(source=config.source).replace("\n", " ")
    return (
        board.Dashboard(title)
        .uid(uid)
        .description(f"{summary} {generated}")
        .tags([TAG])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .link(
            board.DashboardLink("Agent quality")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .link(
            board.DashboardLink("Runbook")
            .type(model.DashboardLinkType.LINK)
            .url(runbook(alerting))
            .icon("doc")
            .target_blank(True)
        )
        .with_variable(
            board.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )
