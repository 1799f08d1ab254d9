"""The one writer: turns generated data into YAML files under a "do not edit" header."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from exporter.config.alerting import OperatorSettings
from exporter.config.duration import format_duration
from exporter.generate.conventions import DASHBOARD_LABELS, HEADER, dashboard_configmap_name
from exporter.generate.model import AlertingRule, RecordingRule, RuleGroup

__all__ = ["dashboard_configmap", "dump_yaml", "groups_data", "operator_resource", "write_text"]


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so PromQL reads as written."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _rule_data(rule: RecordingRule | AlertingRule) -> dict[str, Any]:
    if isinstance(rule, RecordingRule):
        data: dict[str, Any] = {"record": rule.record, "expr": rule.expr}
        if rule.labels:
            data["labels"] = dict(rule.labels)
        return data
    data = {"alert": rule.alert, "expr": rule.expr}
    if rule.for_:
        data["for"] = format_duration(rule.for_)
    if rule.keep_firing_for:
        data["keep_firing_for"] = format_duration(rule.keep_firing_for)
    data["labels"] = dict(rule.labels)
    data["annotations"] = dict(rule.annotations)
    return data


def groups_data(groups: tuple[RuleGroup, ...]) -> dict[str, Any]:
    """Return a Prometheus rule file's content as data."""
    return {"groups": [_group_data(group) for group in groups]}


def _group_data(group: RuleGroup) -> dict[str, Any]:
    data: dict[str, Any] = {"name": group.name}
    if group.interval:
        data["interval"] = format_duration(group.interval)
    data["rules"] = [_rule_data(rule) for rule in group.rules]
    return data


def operator_resource(groups: tuple[RuleGroup, ...], settings: OperatorSettings) -> dict[str, Any]:
    """Return the groups as a prometheus-operator ``PrometheusRule`` custom resource."""
    metadata: dict[str, Any] = {"name": settings.name}
    if settings.namespace:
        metadata["namespace"] = settings.namespace
    if settings.labels:
        metadata["labels"] = dict(settings.labels)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": groups_data(groups),
    }


def dashboard_configmap(file_name: str, text: str, *, namespace: str | None) -> dict[str, Any]:
    """Return one dashboard as a ConfigMap that Grafana's dashboard sidecar loads.

    One dashboard per ConfigMap keeps each object well under the 256 KiB annotation in which
    client-side ``kubectl apply`` keeps a copy of what it applied.
    """
    metadata: dict[str, Any] = {"name": dashboard_configmap_name(file_name)}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(DASHBOARD_LABELS)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {file_name: text},
    }


def dump_yaml(data: Mapping[str, Any], *, source: str, note: str = "") -> str:
    """Return ``data`` as YAML under the generated-file header (and an optional note)."""
    lines = HEADER.format(source=source).splitlines()
    if note:
        lines.extend(["", *note.splitlines()])
    header = "".join(f"# {line}".rstrip() + "\n" for line in lines)
    body = yaml.dump(
        dict(data), Dumper=_Dumper, sort_keys=False, width=1_000_000, allow_unicode=True
    )
    return f"{header}{body}"


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (creating parent directories); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
