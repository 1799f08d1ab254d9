"""Grafana dashboards and provisioning for a config: ``generate`` writes them to DIR/grafana/.

Dashboards are built with grafana-foundation-sdk, Grafana's own typed builders (pinned to the
Grafana 11.6 schema): they emit the current dashboard JSON model (schemaVersion 41) and lay
panels out on the grid; the few Prometheus annotation fields its generic model lacks are added
in ``_kit``. Queries read the recording rules by the names in ``exporter.generate.conventions``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from exporter.config.model import Config
from exporter.generate.conventions import CONFIGMAPS_DIR
from exporter.generate.grafana._agent import agent
from exporter.generate.grafana._common import TAG
from exporter.generate.grafana._overview import overview
from exporter.generate.grafana._provisioning import provisioning
from exporter.generate.writer import dashboard_configmap, dump_yaml, write_text

__all__ = [
    "DASHBOARDS_DIR",
    "GRAFANA_DIR",
    "TAG",
    "dashboards",
    "dump_json",
    "write_grafana",
]

GRAFANA_DIR = "grafana"
DASHBOARDS_DIR = "dashboards"
PROVISIONING_DIR = "provisioning"


def dashboards(config: Config) -> dict[str, dict[str, Any]]:
    """Return the dashboards for ``config`` by file name."""
    return {
        "agent-quality-overview.json": overview(config),
        "agent-quality-agent.json": agent(config),
    }


def dump_json(data: dict[str, Any]) -> str:
    """Return a dashboard as stable, diff-friendly JSON text."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_grafana(
    config: Config, *, out: Path, configmaps: bool = False, namespace: str | None = None
) -> list[Path]:
    """Write ``out/grafana/dashboards/*.json`` and the provisioning files; return them.

    With ``configmaps``, also ``out/grafana/configmaps/*.yaml``: each dashboard as a ConfigMap
    (in ``namespace``) for Grafana's dashboard sidecar on Kubernetes.
    """
    root = out / GRAFANA_DIR
    texts = {name: dump_json(data) for name, data in dashboards(config).items()}
    written = [write_text(root / DASHBOARDS_DIR / name, text) for name, text in texts.items()]
    for name, data in provisioning(config).items():
        written.append(
            write_text(root / PROVISIONING_DIR / name, dump_yaml(data, source=config.source))
        )
    if configmaps:
        for name, text in texts.items():
            resource = dashboard_configmap(name, text, namespace=namespace)
            path = root / CONFIGMAPS_DIR / f"{name.removesuffix('.json')}.configmap.yaml"
            written.append(write_text(path, dump_yaml(resource, source=config.source)))
    return written
