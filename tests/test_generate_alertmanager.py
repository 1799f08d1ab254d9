"""The generated alertmanager.yml in a real Alertmanager: routing, inhibition, delivery."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from exporter.config import parse_config
from exporter.generate import generate
from exporter.generate.conventions import Alert
from tests.support.promstack import (
    Alertmanager,
    WebhookReceiver,
    running_alertmanager,
    running_receiver,
)
from tests.test_daemon import wait_for

pytestmark = pytest.mark.slow


def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} {severity}", "runbook_url": "https://r/#x"},
    }


def inhibited(manager: Alertmanager, deadline: float = 60.0) -> dict[tuple[str, ...], bool]:
    """Return {(alertname, severity, agent, dimension): inhibited?} once all four are known."""
    end = time.monotonic() + deadline
    while True:
        held: dict[tuple[str, ...], bool] = {
            (
                a["labels"]["alertname"],
                a["labels"]["severity"],
                a["labels"].get("agent", ""),
                a["labels"].get("dimension", ""),
            ): bool(a["status"]["inhibitedBy"])
            for a in manager.alerts()
        }
        if len(held) >= 6 or time.monotonic() > end:
            return held
        time.sleep(0.2)


#: What the receivers get for the alerts posted below: (alertname, agent).
PAGES = {(Alert.DEGRADED, "a"), (Alert.EXPORTER_DOWN, None)}
TICKETS = {(Alert.DEGRADED, "b"), (Alert.THRESHOLD, "a"), (Alert.DROPS, None)}


def delivered(receiver: WebhookReceiver, path: str) -> set[tuple[str, str | None]]:
    """Return (alertname, agent) of every alert the receiver got on ``path``."""
    return {
        (a["labels"]["alertname"], a["labels"].get("agent"))
        for body in receiver.notifications(path)
        for a in body["alerts"]
    }


class TestAlertmanager:
    """Routing and inhibition as a running Alertmanager applies them."""

    def test_inhibition_silences_only_the_twin(self, tmp_path: Path) -> None:
        """A critical silences its warning twin, not other warnings, nor exporter warnings."""
        with running_receiver() as receiver:
            config = parse_config(
                {
                    "alerting": {
                        "alertmanager": {
                            "pager_url": receiver.url("/pager"),
                            "ticket_url": receiver.url("/ticket"),
                            "group_wait": "1s",
                            "group_interval": "1s",
                        }
                    }
                },
                source="am.yml",
            )
            generate(config, out=tmp_path / "out")
            config_file = tmp_path / "out" / "alertmanager" / "alertmanager.yml"
            with running_alertmanager(tmp_path, config_file=config_file) as manager:
                manager.post_alerts(
                    [
                        alert(Alert.DEGRADED, "critical", agent="a", dimension="coherence"),
                        alert(Alert.DEGRADED, "warning", agent="a", dimension="coherence"),
                        alert(Alert.DEGRADED, "warning", agent="b", dimension="coherence"),
                        alert(Alert.THRESHOLD, "warning", agent="a", dimension="coherence"),
                        # No agent, no dimension on either: equal labels would match.
                        alert(Alert.EXPORTER_DOWN, "critical"),
                        alert(Alert.DROPS, "warning"),
                    ]
                )
                held = inhibited(manager)
                # Delivered: the page for the critical, tickets for what was not inhibited.
                # Wait for all of them rather than a fixed time: groups flush on their own.
                wait_for(lambda: delivered(receiver, "/pager") >= PAGES, timeout=60)
                wait_for(lambda: delivered(receiver, "/ticket") >= TICKETS, timeout=60)
                time.sleep(2)  # two more group_intervals: an inhibited alert would show by now
        assert held == {
            (Alert.DEGRADED, "critical", "a", "coherence"): False,
            (Alert.DEGRADED, "warning", "a", "coherence"): True,
            (Alert.DEGRADED, "warning", "b", "coherence"): False,
            (Alert.THRESHOLD, "warning", "a", "coherence"): False,
            (Alert.EXPORTER_DOWN, "critical", "", ""): False,
            (Alert.DROPS, "warning", "", ""): False,
        }
        assert delivered(receiver, "/pager") == PAGES
        assert delivered(receiver, "/ticket") == TICKETS
