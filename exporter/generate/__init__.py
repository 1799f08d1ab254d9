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
    OPERATOR_FILE,
    RULES_DIR,
    RULES_FILE,
    RUNBOOK_FILE,
    TEMPLATE_FILE,
    Group,
)
from exporter.generate.exporter_alerts import exporter_alerts
from exporter.generate.grafana import write_grafana
from exporter.generate.model import AlertingRule, RecordingRule, RuleGroup
from exporter.generate.recording import dimension_recording
from exporter.generate.runbook import runbook
from exporter.generate.timing import timing
from exporter.generate.writer import dump_yaml, groups_data, operator_resource, write_text

__all__ = ["FORMATS", "GenerateError", "build_rules", "generate"]

FORMATS = ("prometheus", "prometheus-operator")


def build_rules(config: Config) -> tuple[RuleGroup, ...]:
    """Return the rule groups for ``config``; raise ``GenerateError``.

    One group per dimension holds its recording rules and then the alerts that read them, so
    every alert sees this evaluation's values; the exporter's alerts read raw series only.
    """
    alerting = config.alerting
    if alerting is None:
        raise GenerateError(f"{config.source}: the config has no alerting section")
    timed = timing(alerting)
    groups: list[RuleGroup] = []
    alerts = 0
    for dimension in config.dimensions:
        quality = quality_alerts(dimension, alerting, timed)
        alerts += len(quality)
        rules: tuple[RecordingRule | AlertingRule, ...] = (
            *dimension_recording(dimension, alerting, timed),
            *quality,
        )
        groups.append(RuleGroup(Group.dimension(dimension.name), rules, timed.scrape))
    if not alerts:
        raise GenerateError(
            f"{config.source}: no quality alert to generate: every degradation tier is off "
            "(alerting.degradation), no dimension has warning/critical thresholds, and no "
            "dimension has an SLO objective with a bad threshold"
        )
    exporter = exporter_alerts(config, alerting, timed)
    groups.append(RuleGroup(Group.EXPORTER_ALERTS, exporter, timed.scrape))
    return tuple(groups)


def generate(
    config: Config, *, out: pathlib.Path, output_format: str = "prometheus"
) -> list[pathlib.Path]:
    """Write out/rules/, out/alertmanager/ and out/grafana/; return the files written.

    ``prometheus-operator`` adds the rules as a PrometheusRule and the dashboards as ConfigMaps.
    """
    if output_format not in FORMATS:
        raise GenerateError(f"unknown output format {output_format!r}; expected one of {FORMATS}")
    groups = build_rules(config)
    assert config.alerting is not None  # build_rules refused None
    source = config.source
    rules_dir, manager_dir = out / RULES_DIR, out / ALERTMANAGER_DIR
    written = [
        write_text(rules_dir / RULES_FILE, dump_yaml(groups_data(groups), source=source)),
        write_text(rules_dir / RUNBOOK_FILE, runbook(config, config.alerting)),
    ]
    if output_format == "prometheus-operator":
        resource = operator_resource(groups, config.alerting.operator)
        written.append(write_text(rules_dir / OPERATOR_FILE, dump_yaml(resource, source=source)))
    manager = dump_yaml(alertmanager_config(config.alerting), source=source, note=EXAMPLE)
    written.append(write_text(manager_dir / ALERTMANAGER_FILE, manager))
    written.append(write_text(manager_dir / TEMPLATE_FILE, TEMPLATE))
    configmaps = output_format == "prometheus-operator"
    namespace = config.alerting.operator.namespace
    written.extend(write_grafana(config, out=out, configmaps=configmaps, namespace=namespace))
    return written
