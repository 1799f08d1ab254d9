"""End to end: the daemon, a real Prometheus with the generated rules, a real Alertmanager.

Windows are scaled down from hours to seconds (the test config below) so a baseline fills in
about a minute. Good conversations first, then bad ones: the pager receives the page with the
right labels, and nothing arrives before the drop.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.config import parse_config
from exporter.generate import generate
from tests.support.daemon import running_daemon
from tests.support.promstack import (
    WebhookReceiver,
    running_alertmanager,
    running_prometheus,
    running_receiver,
    seconds_alerting,
)
from tests.test_daemon import post

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

AGENT = "support-bot"
#: Good traffic long enough for the baseline window (60s, ending 20s ago) to fill.
GOOD_SECONDS = 85.0
RATE = 10  # conversations a second, every one scored (base_rate 1.0)


def scaled_config(receiver: WebhookReceiver) -> dict[str, Any]:
    """Return a config whose alerting windows are seconds instead of hours."""
    return {
        "agents": [AGENT],
        # Everything scored: no daily maximum to pace 600 conversations a minute down to.
        "sampling": {"base_rate": 1.0, "boost_rate": 1.0, "daily_budget": {"max_samples": None}},
        "dimensions": [
            {
                "name": "task_completion",
                "scale": {"min": 0, "max": 1},
                "thresholds": {"bad": 0.5, "critical": 0.7},
            }
        ],
        "scorers": [{"type": "passthrough"}],
        "alerting": {
            **seconds_alerting(),
            "alertmanager": {
                "pager_url": receiver.url("/pager"),
                "ticket_url": receiver.url("/ticket"),
                "group_wait": "1s",
                "group_interval": "1s",
            },
        },
    }


def send(url: str, *, seconds: float, score: float, rng: random.Random, start: int) -> int:
    """Post ``RATE`` conversations a second scored around ``score``; return the next id."""
    deadline, number = time.monotonic() + seconds, start
    while time.monotonic() < deadline:
        batch = []
        for _ in range(RATE):
            value = min(max(rng.gauss(score, 0.08), 0.0), 1.0)
            batch.append(
                {
                    "id": f"c-{number}",
                    "agent": AGENT,
                    "messages": [
                        {"role": "user", "content": "Where is my order?"},
                        {"role": "assistant", "content": "It ships tomorrow."},
                    ],
                    "scores": {"task_completion": value},
                }
            )
            number += 1
        status, _ = post(f"{url}/v1/conversations", batch)
        assert status == 202
        time.sleep(1.0)
    return number


def is_page(body: dict[str, Any]) -> bool:
    return any(
        alert["labels"].get("alertname") == "AgentQualityDegraded" and alert["status"] == "firing"
        for alert in body["alerts"]
    )


class TestAlertingEndToEnd:
    """Daemon -> Prometheus (generated rules) -> Alertmanager (generated routing) -> webhook."""

    def test_drop_pages_and_nothing_before(self, tmp_path: Path) -> None:
        """Good scores raise nothing; a drop pages the pager with agent, dimension, severity."""
        with running_receiver() as receiver:
            document = scaled_config(receiver)
            written = generate(parse_config(document, source="e2e.yml"), out=tmp_path / "out")
            rules = [path for path in written if path.name.endswith(".rules.yml")]
            manager_file = tmp_path / "out" / "alertmanager" / "alertmanager.yml"
            with (
                running_alertmanager(tmp_path, config_file=manager_file) as alertmanager,
                running_daemon(tmp_path, document) as daemon,
                running_prometheus(
                    tmp_path,
                    targets=[f"127.0.0.1:{daemon.port}"],
                    rule_files=rules,
                    alertmanager=alertmanager.url,
                ) as prometheus,
            ):
                rng = random.Random(3)
                number = send(daemon.url, seconds=GOOD_SECONDS, score=0.9, rng=rng, start=0)
                baseline = prometheus.query(
                    f'agent_dimension:agent_quality_score:mean_baseline{{agent="{AGENT}"}}'
                )
                assert baseline, prometheus.log()
                assert float(baseline[0]["value"][1]) > 0.85
                assert receiver.notifications() == [], "an alert before the drop"
                drop_at = time.monotonic()
                while time.monotonic() - drop_at < 60 and not receiver.notifications("/pager"):
                    number = send(daemon.url, seconds=1, score=0.2, rng=rng, start=number)
                body, arrived = receiver.wait_for(is_page, path="/pager", timeout=30)
            page = next(
                alert
                for alert in body["alerts"]
                if alert["labels"]["alertname"] == "AgentQualityDegraded"
            )
            assert page["labels"]["agent"] == AGENT
            assert page["labels"]["dimension"] == "task_completion"
            assert page["labels"]["severity"] == "critical"
            assert page["annotations"]["runbook_url"].endswith("#agentqualitydegraded")
            shown = re.search(r"baseline of ([0-9.]+)", page["annotations"]["description"])
            assert shown is not None, page["annotations"]
            assert float(shown.group(1)) > 0.85
            # Window 10s + for 10s + scrape, evaluation and group_wait delays.
            assert arrived - drop_at < 40
            assert all(
                alert["labels"]["severity"] == "critical"
                for note in receiver.notifications("/pager")
                for alert in note["alerts"]
            )
