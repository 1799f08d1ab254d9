"""The real ``openai`` client under the real GenAI instrumentations, exporting to the daemon.

Each mode runs ``tests/support/genai_driver.py`` in its own process (instrumentation patches
``openai`` globally and reads its environment when it instruments): 20 conversations against
the fake OpenAI server, two tool calls each, ``check_stock`` failing in 5, spans and log
records sent with the SDK's ``OTLPSpanExporter`` and ``OTLPLogExporter`` to a running daemon.
The modes are the instrumentations' own content settings, with the environment values
docs/otlp.md gives: content on spans, content as log records (events), no content.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import REPO, Daemon, running_daemon
from tests.support.fake_openai import FakeOpenAI, running_fake_openai
from tests.support.genai_driver import ANSWER, MODEL, MODEL_SEES, STATUS_MESSAGE, TOOL_CALLS
from tests.test_daemon import wait_for
from tests.test_faults import Scrape, assert_accounting

pytestmark = pytest.mark.slow

CONVERSATIONS, FAILING = 20, 5
CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
OPT_IN = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}
#: Every scorer of the default config; the dataset keeps the conversations whose tool failed.
CONFIG: dict[str, Any] = {
    "agents": ["support-bot"],
    "sampling": {"base_rate": 1.0},
    "otlp": {"idle_timeout": "2s"},
    "pipeline": {"drain_grace_period": "2s"},
    "dataset": {"enabled": True, "flush_interval": "100ms", "select": {"signals": []}},
}


@dataclass(frozen=True)
class Mode:
    """One way an instrumentation is set up, and what the daemon should make of it."""

    instrumentation: str
    env: dict[str, str]
    content: bool  # whether user and assistant text reach the daemon at all
    events: bool = False  # whether the content comes as log records
    first: str = "spans"  # which signal the driver flushes first
    #: What completes the conversations: their root span, or (no content on the spans and no
    #: events to wait for) the idle timeout.
    trigger: str = "root_span"
    #: The events come after their spans, which had the content already: counted as late.
    late_events: bool = False


MODES = {
    "openai-v2/span_only": Mode("openai-v2", {CAPTURE: "span_only"}, content=True),
    "openai-v2/event_only": Mode(
        "openai-v2", {CAPTURE: "event_only", **OPT_IN}, content=True, events=True
    ),
    "openai-v2/event_only/logs-first": Mode(
        "openai-v2", {CAPTURE: "event_only"}, content=True, events=True, first="logs"
    ),
    "openai-v2/span_and_event": Mode(
        "openai-v2",
        {CAPTURE: "span_and_event", **OPT_IN},
        content=True,
        events=True,
        late_events=True,
    ),
    "openai-v2/no-content": Mode("openai-v2", {}, content=False, trigger="idle"),
    "openai-v2-legacy/events": Mode(
        "openai-v2-legacy", {CAPTURE: "true"}, content=True, events=True
    ),
    "openai-v2-legacy/no-content": Mode("openai-v2-legacy", {}, content=False, events=True),
    "openinference/span": Mode("openinference", {}, content=True),
    "openinference/hidden": Mode(
        "openinference",
        {"OPENINFERENCE_HIDE_INPUTS": "true", "OPENINFERENCE_HIDE_OUTPUTS": "true"},
        content=False,
        trigger="idle",
    ),
}


@pytest.fixture(scope="module")
def fake() -> Any:
    """The fake OpenAI server, answering like an agent's model: two tool calls, then text."""
    with running_fake_openai() as server:
        yield server


def drive(fake: FakeOpenAI, daemon: Daemon, mode: Mode) -> dict[str, Any]:
    """Run the driver for ``mode``; return its summary."""
    fake.behave(MODEL, {"tool_calls": TOOL_CALLS, "content": ANSWER})
    # Only the mode's own settings: none leaks in from the environment of the test run.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENINFERENCE_"))}
    env |= {"PYTHONPATH": str(REPO), **mode.env}
    args = [sys.executable, "-m", "tests.support.genai_driver"]
    args += ["--instrumentation", mode.instrumentation, "--first", mode.first]
    args += ["--openai", fake.base_url, "--otlp", daemon.url]
    args += ["--conversations", str(CONVERSATIONS), "--failing", str(FAILING)]
    done = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def scored(daemon: Daemon, expected: int) -> Scrape:
    """Wait until ``expected`` conversations were scored or dropped, and nothing is queued."""
    scrapes: list[Scrape] = []

    def settled() -> bool:
        scrapes.append(Scrape.of(daemon))
        scrape = scrapes[-1]
        done = scrape.total("scored_total") + scrape.total("dropped_total")
        return done >= expected and scrape.quiet

    wait_for(settled, 60)
    return scrapes[-1]


def dataset_records(daemon_dir: Path, expected: int) -> list[dict[str, Any]]:
    """Return the feedback dataset's records once ``expected`` are on disk."""
    path = daemon_dir / "feedback-dataset" / "current.jsonl"

    def written() -> list[dict[str, Any]]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    wait_for(lambda: len(written()) >= expected, 30)
    return written()


def tool_results(record: dict[str, Any]) -> dict[str, Any]:
    """Return a dataset record's tool messages by the name of the tool they answer."""
    messages = record["conversation"]["messages"]
    names = {
        call["id"]: call["name"] for message in messages for call in message.get("tool_calls") or ()
    }
    return {names[m["tool_call_id"]]: m for m in messages if m["role"] == "tool"}


class TestRealInstrumentations:
    @pytest.mark.parametrize("name", list(MODES))
    def test_conversations_tools_and_no_false_bad_answers(
        self, tmp_path: Path, fake: FakeOpenAI, name: str
    ) -> None:
        """Every conversation assembled; tool failures found; no content is not a bad answer."""
        mode = MODES[name]
        with running_daemon(tmp_path, CONFIG) as daemon:
            summary = drive(fake, daemon, mode)
            assert summary == {"conversations": CONVERSATIONS, "answered": CONVERSATIONS}
            scrape = scored(daemon, CONVERSATIONS)
            records = dataset_records(tmp_path, FAILING)
            assert_accounting(daemon)
            final = Scrape.of(daemon)
        # Conversations expected vs assembled, completed as the mode says.
        assert scrape.total("otlp_conversations_total") == CONVERSATIONS
        assert scrape.total("otlp_conversations_total", trigger=mode.trigger) == CONVERSATIONS
        assert scrape.total("conversations_total", agent="support-bot") == CONVERSATIONS
        assert scrape.total("scored_total", agent="support-bot") == CONVERSATIONS
        # Dimensions scored: without content, only those that need no text.
        dimensions = {
            dimension: count
            for dimension, count in scrape.by_label("score_count", "dimension").items()
            if count
        }
        expected = {"tool_success": CONVERSATIONS, "user_feedback": CONVERSATIONS}
        if mode.content:
            expected["final_answer"] = CONVERSATIONS
        assert dimensions == expected
        # Tool failures found, and not one conversation called unanswered for lack of content.
        assert scrape.total("flags_total", flag="tool_error") == FAILING
        assert scrape.total("flags_total", flag="no_final_answer") == 0
        assert scrape.total("flags_total", flag="answer_too_short") == 0
        assert scrape.total("score_sum", dimension="tool_success") == CONVERSATIONS - FAILING / 2
        if mode.content:
            assert scrape.total("score_sum", dimension="final_answer") == CONVERSATIONS
        # Log records: GenAI events kept, or late when the spans already had the content.
        logs = final.by_label("otlp_log_records_total", "outcome")
        assert logs.get("rejected", 0) == 0
        if not mode.events:
            assert sum(logs.values()) == 0
        elif mode.late_events:
            assert logs["late"] > 0
            assert logs.get("accepted", 0) == 0
        else:
            assert logs["accepted"] > 0
            assert logs.get("late", 0) == 0
        # The failed tool's result is what the model saw; its span status only says it failed.
        assert len(records) == FAILING
        for record in records:
            failed = tool_results(record)["check_stock"]
            assert failed["error"]
            assert failed["content"] == (MODEL_SEES if mode.content else STATUS_MESSAGE)
            conversation = record["conversation"]
            assert conversation["model"] == MODEL
            assert conversation["usage"]["input_tokens"] > 0
            assert conversation["signals"] == {"tool_error": True}
            texts = [m["content"] for m in conversation["messages"] if m["role"] == "assistant"]
            assert (ANSWER in texts) is mode.content


class TestWithoutTextScorers:
    def test_content_less_conversations_are_dropped_as_no_content(
        self, tmp_path: Path, fake: FakeOpenAI
    ) -> None:
        """With only scorers that need text, conversations without content are not scored."""
        config = {**CONFIG, "scorers": [{"type": "final_answer"}, {"type": "refusal"}]}
        with running_daemon(tmp_path, config) as daemon:
            drive(fake, daemon, MODES["openai-v2/no-content"])
            scrape = scored(daemon, CONVERSATIONS)
            assert_accounting(daemon)
        assert scrape.total("otlp_conversations_total") == CONVERSATIONS
        assert scrape.total("dropped_total", reason="no_content") == CONVERSATIONS
        assert scrape.total("scored_total") == 0
        assert scrape.total("sampled_total") == 0
        assert scrape.total("flags_total", flag="no_final_answer") == 0
