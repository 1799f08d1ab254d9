"""Read the generated Grafana dashboards as Grafana would: every query, with variables filled in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "grafana"

_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$", re.S)


@dataclass(frozen=True)
class Query:
    """One PromQL expression found in a dashboard, and where."""

    where: str
    kind: str  # "panel", "variable" or "annotation"
    expr: str
    instant: bool = False


def load(directory: Path) -> dict[str, dict[str, Any]]:
    """Return the dashboards under ``directory`` (a ``grafana/`` folder) by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((directory / "dashboards").glob("*.json"))
    }


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every panel, rows and panels inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    """Return every expression of the dashboard: panel targets, variables, annotations.

    Walks the whole JSON rather than the panels we meant to write, so that a new panel,
    variable or annotation cannot escape the tests.
    """
    uid = dashboard["uid"]
    found: list[Query] = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            where = f"{uid} panel {panel.get('id')} {panel.get('title')!r} ref {target['refId']}"
            found.append(Query(where, "panel", target["expr"], bool(target.get("instant"))))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, Mapping) else query
        found.append(Query(f"{uid} variable {variable['name']}", "variable", text))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            found.append(
                Query(f"{uid} annotation {annotation['name']!r}", "annotation", annotation["expr"])
            )
    return found


def label_values(expr: str) -> tuple[str, str] | None:
    """Split Grafana's ``label_values(selector, label)`` into its parts, if it is one."""
    match = _LABEL_VALUES.match(expr.strip())
    return (match["selector"], match["label"]) if match else None


def _regex_escape(value: str) -> str:
    """Escape a value for a regex inside a PromQL string, as Grafana's Prometheus source does."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m[0], value)


def substitute(
    expr: str,
    values: Mapping[str, Sequence[str]],
    *,
    rate_interval: str = "15s",
    range_: str = "2m",
) -> str:
    """Fill in template variables as Grafana does for Prometheus, and its built-in intervals.

    A multi-value variable becomes ``(a|b)`` (regex-escaped), a single value itself. Raises
    KeyError for a variable the test did not provide a value for.
    """
    builtins = {"__rate_interval": rate_interval, "__range": range_, "__interval": rate_interval}

    def value(match: re.Match[str]) -> str:
        name = match["braced"] or match["plain"]
        if name in builtins:
            return builtins[name]
        chosen = values[name]
        if len(chosen) == 1:
            return chosen[0]
        return "(" + "|".join(_regex_escape(v) for v in chosen) + ")"

    return re.sub(r"\$\{(?P<braced>\w+)\}|\$(?P<plain>\w+)", value, expr)
