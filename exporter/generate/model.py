"""The generated rules as plain data; exporter/generate/writer.py turns them into YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["AlertingRule", "RecordingRule", "RuleGroup"]


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RecordingRule:
    """``record: name`` computed by ``expr``, with optional static labels."""

    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True, slots=True)
class AlertingRule:
    """An alert: fires when ``expr`` has held for ``for_`` seconds.

    Once firing, it keeps firing ``keep_firing_for`` seconds after ``expr`` stops holding, so
    a condition that wavers at its threshold sends one notification, not one per waver.
    """

    alert: str
    expr: str
    for_: float
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    keep_firing_for: float = 0.0


@dataclass(frozen=True, slots=True)
class RuleGroup:
    """A Prometheus rule group: rules evaluated in order, so later ones read earlier ones.

    ``interval`` (seconds) overrides Prometheus' global evaluation interval for the group.
    """

    name: str
    rules: tuple[RecordingRule | AlertingRule, ...]
    interval: float | None = None
