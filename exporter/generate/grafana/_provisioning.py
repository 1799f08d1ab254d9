"""Grafana provisioning: a Prometheus data source and a provider for the bundled dashboards.

Mounted into Grafana's ``/etc/grafana/provisioning/`` (docs/dashboards.md says which folder
goes where), these make a fresh Grafana show the dashboards at start, with nothing to click.
"""

from __future__ import annotations

from typing import Any

from exporter.config.model import Config
from exporter.generate.grafana._common import TAG

__all__ = ["DATASOURCE_NAME", "DATASOURCE_UID", "provisioning"]

DATASOURCE_NAME = "Prometheus (agent quality)"
DATASOURCE_UID = "agent-quality-prometheus"


def provisioning(config: Config) -> dict[str, dict[str, Any]]:
    """Return the provisioning files for ``config`` by path under ``grafana/provisioning/``."""
    grafana = config.grafana
    datasource = {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": "prometheus",
        "access": "proxy",
        "url": grafana.prometheus_url,
        # Not the default: a Grafana that already has one keeps it; the dashboards' data
        # source variable lists every Prometheus anyway.
        "isDefault": False,
        "editable": False,
        "jsonData": {"httpMethod": "POST"},
    }
    provider = {
        "name": TAG,
        "orgId": 1,
        "folder": grafana.folder,
        "folderUid": TAG,
        "type": "file",
        "disableDeletion": True,
        # Regenerated files replace the dashboards; edits in the UI would be lost, so refuse them.
        "allowUiUpdates": False,
        "updateIntervalSeconds": 60,
        "options": {"path": grafana.dashboards_path, "foldersFromFilesStructure": False},
    }
    return {
        f"datasources/{TAG}.yml": {"apiVersion": 1, "datasources": [datasource]},
        f"dashboards/{TAG}.yml": {"apiVersion": 1, "providers": [provider]},
    }
