"""Judge trouble shows where people look: the log, the breaker, /metrics and the status page.

The daemon runs as a process with two judges on a real OpenAI-compatible server process: the
first-tier judge scores every conversation badly, so each goes to the confirmation judge,
which names a model the server does not have (HTTP 400 on every call, as a mistyped model
name gets from LiteLLM). Issue 16 saw no log line at all for this, no open breaker, and no
sign of it on the status page.
"""

from __future__ import annotations

import html
import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import conversation
from tests.support.daemon import Daemon, running_daemon
from tests.support.fake_openai import FakeOpenAI
from tests.test_daemon import wait_for

FIRST, SECOND = "judge-a", "no-such-model"
MISSING = f"The model `{SECOND}` does not exist or you do not have access to it."


def config(fake: FakeOpenAI) -> dict[str, Any]:
    judge = {"base_url": fake.base_url, "backoff": "10ms"}
    return {
        "sampling": {"base_rate": 1.0},
        "judges": {
            "first": {**judge, "model": FIRST},
            "careful": {**judge, "model": SECOND, "breaker": {"failures": 5, "cooldown": "1h"}},
        },
        "scorers": [
            {"type": "llm_judge", "name": "judge", "judge": "first", "dimension": "coherence"}
        ],
        "confirmation": {"judge": "careful"},
    }


def post(daemon: Daemon, count: int) -> None:
    for index in range(count):
        body = json.dumps(conversation(id=f"bad-{index}")).encode()
        request = urllib.request.Request(
            f"{daemon.url}/v1/conversations",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202


def scrape(daemon: Daemon) -> str:
    with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return text


def verdicts(daemon: Daemon, verdict: str) -> float:
    prefix = "agent_quality_judge_verdicts_total{"
    total = 0.0
    for line in scrape(daemon).splitlines():
        if line.startswith(prefix) and f'verdict="{verdict}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def page(daemon: Daemon) -> str:
    with urllib.request.urlopen(f"{daemon.url}/", timeout=10) as response:
        text: str = response.read().decode()
    return text


class TestMisconfiguredConfirmationJudge:
    def test_logged_once_per_kind_with_the_answer_breaker_open_and_shown(
        self, fake: FakeOpenAI, tmp_path: Path
    ) -> None:
        """Twelve bad conversations, each confirmed in vain: two log lines, not twelve."""
        fake.behave(FIRST, {"score": 1})  # coherence 1: bad, so the second judge is asked
        fake.behave(SECOND, {"status": 400, "error": MISSING})
        with running_daemon(tmp_path, config(fake)) as daemon:
            post(daemon, 12)
            wait_for(lambda: verdicts(daemon, "error") == 12)
            metrics = scrape(daemon)
            text = page(daemon)
            log = daemon.log()
        assert 'agent_quality_judge_breaker_open{judge="careful"} 1.0' in metrics
        assert 'agent_quality_judge_breaker_open{judge="first"} 0.0' in metrics
        # Five in a row open the breaker (a few more were already in flight): then it spares
        # the endpoint.
        assert 5 <= len(fake.requests(SECOND)) < 12
        lines = [line for line in log.splitlines() if "confirmation judge careful failed" in line]
        # The first failure of each kind, at once: the endpoint's 400, then the open breaker.
        assert len(lines) == 2, lines
        assert "(coherence): judge careful: HTTP 400: The model" in lines[0]
        assert "does not exist or you do not have access to it." in lines[0]
        assert "circuit open after repeated failures" in lines[1]
        assert "judge careful: circuit open, no calls for 3600s" in log
        assert "Traceback" not in log
        # The status page's judge section names both judges; the confirmation one in trouble.
        assert '<tr data-judge="careful" data-breaker="open" class=trouble>' in text
        assert '<tr data-judge="first" data-breaker="closed">' in text
        assert "confirmation (tier 2)" in text
        assert "100% of the last 12" in text
        assert html.escape(f"judge careful: HTTP 400: {MISSING}") in text
