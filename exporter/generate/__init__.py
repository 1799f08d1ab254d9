"""Generate Prometheus rules and Alertmanager routing from a config.

The pipeline builds plain data first (check the config, recording rules, alerts, routing) and
one writer turns it into files, in the manner of slok/sloth. Names come from
``exporter.generate.conventions``.
"""

from __future__ import annotations

import pathlib

from exporter.config.model import Config
from exporter.exceptions import GenerateError
from exporter.generate.alertmanager import EXAMPLE, TEMPLATE, alertmanager_config
from exporter.generate.alerts import quality_alerts
from exporter.generate.conventions import (
    ALERTMANAGER_DIR,
    ALERTMANAGER_FILE,
    ALERTS_FILE,
    OPERATOR_FILE,
    RECORDING_FILE,
    RULES_DIR,
    RUNBOOK_FILE,
    TEMPLATE_FILE,
    Group,
)
from exporter.generate.exporter_alerts import exporter_alerts
from exporter.generate.grafana import write_grafana
from exporter.generate.model import RuleGroup
from exporter.generate.recording import recording_groups
from exporter.generate.runbook import runbook
from exporter.generate.writer import dump_yaml, groups_data, operator_resource, write_text

__all__ = ["FORMATS", "GenerateError", "build_rules", "generate"]

FORMATS = ("prometheus", "prometheus-operator")


def build_rules(config: Config) -> tuple[tuple[RuleGroup, ...], tuple[RuleGroup, ...]]:
    """Return (recording groups, alerting groups) for ``config``; raise ``GenerateError``."""
    alerting = config.alerting
    if alerting is None:
        raise GenerateError(f"{config.source}: the config has no alerting section")
    quality = quality_alerts(config, alerting)
    if not quality:
        raise GenerateError(
            f"{config.source}: no quality alert to generate: every degradation tier is off "
            "(alerting.degradation), no dimension has warning/critical thresholds, and no "
            "dimension has an SLO objective with a bad threshold"
        )
    alerts = (
        RuleGroup(Group.QUALITY_ALERTS, quality),
        RuleGroup(Group.EXPORTER_ALERTS, exporter_alerts(config, alerting)),
    )
    return recording_groups(config, alerting), alerts


def generate(
    config: Config, *, out: pathlib.Path, output_format: str = "prometheus"
) -> list[pathlib.Path]:
    """Write out/rules/, out/alertmanager/ and out/grafana/; return the files written.

    ``prometheus-operator`` adds the rules as a PrometheusRule and the dashboards as ConfigMaps.
    """
    if output_format not in FORMATS:
        raise GenerateError(f"unknown output format {output_format!r}; expected one of {FORMATS}")
    recording, alerts = build_rules(config)
    assert config.alerting is not None  # build_rules refused None
    source = config.source
    rules_dir, manager_dir = out / RULES_DIR, out / ALERTMANAGER_DIR
    written = [
        write_text(rules_dir / RECORDING_FILE, dump_yaml(groups_data(recording), source=source)),
        write_text(rules_dir / ALERTS_FILE, dump_yaml(groups_data(alerts), source=source)),
        write_text(rules_dir / RUNBOOK_FILE, runbook(config, config.alerting)),
    ]
    if output_format == "prometheus-operator":
        resource = operator_resource((*recording, *alerts), config.alerting.operator)
        written.append(write_text(rules_dir / OPERATOR_FILE, dump_yaml(resource, source=source)))
    manager = dump_yaml(alertmanager_config(config.alerting), source=source, note=EXAMPLE)
    written.append(write_text(manager_dir / ALERTMANAGER_FILE, manager))
    written.append(write_text(manager_dir / TEMPLATE_FILE, TEMPLATE))
    configmaps = output_format == "prometheus-operator"
    namespace = config.alerting.operator.namespace
    written.extend(write_grafana(config, out=out, configmaps=configmaps, namespace=namespace))
    return written
