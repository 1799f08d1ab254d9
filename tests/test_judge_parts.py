"""The judge's parts without a server: breaker, budget, verdicts, transcripts, rubrics, config."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from exporter.config import load_config, parse_config, resolve_secrets
from exporter.config.model import Price
from exporter.exceptions import ConfigError
from exporter.metrics import Metrics
from exporter.model import Conversation
from exporter.scoring import build_scorers
from exporter.scoring.judge import (
    BreakerState,
    CircuitBreaker,
    DailyBudget,
    InvalidVerdict,
    JudgeConfirmer,
    JudgeScorer,
    Rubric,
    build_confirmers,
    make_judge_scorer,
    messages_for,
    parse_retry_after,
    parse_verdict,
    render_transcript,
    shipped_rubrics,
)
from tests.conftest import conversation

COHERENCE = Rubric("coherence", "Grade coherence.", 1.0, 5.0)
JUDGES = {
    "primary": {"base_url": "http://127.0.0.1:9/v1", "model": "judge-a"},
    "second": {"base_url": "http://127.0.0.1:9/v1", "model": "judge-b"},
}


TIER_ONE = {"type": "llm_judge", "judge": "primary", "dimension": "coherence"}


def decode(document: dict[str, Any]) -> Conversation:
    return msgspec.json.decode(json.dumps(document).encode(), type=Conversation)


class TestCircuitBreaker:
    def make(self, now: list[float]) -> tuple[CircuitBreaker, list[BreakerState]]:
        changes: list[BreakerState] = []
        breaker = CircuitBreaker(
            failures=3, cooldown=10, clock=lambda: now[0], on_change=changes.append
        )
        return breaker, changes

    def test_opens_after_consecutive_failures(self) -> None:
        """Three failures in a row open the circuit; a success in between resets the count."""
        breaker, changes = self.make([0.0])
        for _ in range(2):
            breaker.failure()
        breaker.success()
        breaker.failure()
        breaker.failure()
        assert breaker.allows()
        breaker.failure()
        assert breaker.state is BreakerState.OPEN
        assert not breaker.allows()
        assert changes == [BreakerState.OPEN]

    def test_half_open_allows_one_trial(self) -> None:
        """After the cooldown exactly one request goes out; its success closes the circuit."""
        now = [0.0]
        breaker, changes = self.make(now)
        for _ in range(3):
            breaker.failure()
        now[0] = 10.0
        assert breaker.allows()
        # One tuple: mypy would narrow breaker.state to HALF_OPEN and call the next line dead.
        assert (breaker.state, breaker.allows()) == (BreakerState.HALF_OPEN, False)
        breaker.success()
        assert breaker.state is BreakerState.CLOSED
        assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]

    def test_failed_trial_reopens(self) -> None:
        """A failed trial opens the circuit for another full cooldown."""
        now = [0.0]
        breaker, _ = self.make(now)
        for _ in range(3):
            breaker.failure()
        now[0] = 15.0
        assert breaker.allows()
        breaker.failure()
        assert breaker.state is BreakerState.OPEN
        now[0] = 24.0
        assert not breaker.allows()
        now[0] = 25.0
        assert breaker.allows()

    def test_released_trial_lets_another_try(self) -> None:
        """A trial that ended without a verdict on the endpoint frees the half-open slot."""
        now = [0.0]
        breaker, _ = self.make(now)
        for _ in range(3):
            breaker.failure()
        now[0] = 10.0
        assert breaker.allows()
        breaker.release()
        assert breaker.allows()


class TestDailyBudget:
    def test_stops_at_limit_until_the_utc_day_turns(self) -> None:
        """Spending reaches the limit, nothing more is allowed until 00:00 UTC."""
        now = [dt.datetime(2026, 11, 26, 23, 59, tzinfo=dt.UTC)]
        budget = DailyBudget(limit=1.0, clock=lambda: now[0])
        budget.spend(0.6)
        assert budget.allows()
        budget.spend(0.6)
        assert not budget.allows()
        now[0] = dt.datetime(2026, 11, 27, 0, 0, tzinfo=dt.UTC)
        assert budget.allows()
        assert budget.spent == 0

    def test_day_is_utc_not_local(self) -> None:
        """A clock in another zone still rolls over at midnight UTC."""
        plus_two = dt.timezone(dt.timedelta(hours=2))
        now = [dt.datetime(2026, 11, 27, 1, 0, tzinfo=plus_two)]  # 23:00 UTC on the 26th
        budget = DailyBudget(limit=1.0, clock=lambda: now[0])
        budget.spend(2)
        now[0] = dt.datetime(2026, 11, 27, 1, 59, tzinfo=plus_two)
        assert not budget.allows()
        now[0] = dt.datetime(2026, 11, 27, 2, 0, tzinfo=plus_two)
        assert budget.allows()

    def test_no_limit_allows_everything(self) -> None:
        """Without a limit spending is tracked but never refused."""
        budget = DailyBudget(limit=None)
        budget.spend(1e9)
        assert budget.allows()


class TestParseVerdict:
    @pytest.mark.parametrize(
        ("text", "score"),
        [
            ('{"score": 4, "reason": "fine"}', 4.0),
            ('  {"score": 2.5}\n', 2.5),
            ('```json\n{"score": 5, "reason": "clear"}\n```', 5.0),
            ('```\n{"score": 1}\n```', 1.0),
            ('{"score": "3"}', 3.0),
        ],
    )
    def test_accepts_json_and_fenced_json(self, text: str, score: float) -> None:
        """A bare or fenced JSON object with a score on the scale is a verdict."""
        assert parse_verdict(text, rubric=COHERENCE, judge="j").score == score

    @pytest.mark.parametrize(
        "text",
        [
            "The conversation is quite coherent, I would give it a 4.",
            'Sure! {"score": 4}',
            '{"score": 4',
            "[4]",
            '{"reason": "no score"}',
            '{"score": true}',
            '{"score": "four"}',
            '{"score": NaN}',
            '{"score": 6}',
            '{"score": 0}',
            "",
        ],
    )
    def test_rejects_anything_else(self, text: str) -> None:
        """Prose, broken JSON, missing, non-numeric or off-scale scores are errors."""
        with pytest.raises(InvalidVerdict):
            parse_verdict(text, rubric=COHERENCE, judge="j")

    def test_error_names_judge_and_quotes_little(self) -> None:
        """The error says which judge and shows only the start of a long answer."""
        with pytest.raises(InvalidVerdict) as caught:
            parse_verdict("word " * 500, rubric=COHERENCE, judge="primary")
        assert "judge primary" in str(caught.value)
        assert len(str(caught.value)) < 200

    @given(st.text(max_size=200))
    def test_never_crashes_on_arbitrary_text(self, text: str) -> None:
        """Any text is either a verdict on the scale or an InvalidVerdict, nothing else."""
        try:
            verdict = parse_verdict(text, rubric=COHERENCE, judge="j")
        except InvalidVerdict:
            return
        assert 1.0 <= verdict.score <= 5.0

    @given(st.floats(min_value=1, max_value=5), st.text(max_size=50))
    def test_scores_on_the_scale_round_trip(self, score: float, reason: str) -> None:
        """Every on-scale score in the answer format is read back exactly."""
        text = json.dumps({"score": score, "reason": reason})
        verdict = parse_verdict(text, rubric=COHERENCE, judge="j")
        assert (verdict.score, verdict.reason) == (score, reason)


class TestRetryAfter:
    def test_seconds_and_http_dates(self) -> None:
        """Both forms of Retry-After become seconds; garbage and absence become None."""
        now = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.UTC)
        assert parse_retry_after("2", now=now) == 2.0
        assert parse_retry_after("Thu, 26 Nov 2026 10:00:30 GMT", now=now) == 30.0
        assert parse_retry_after("Thu, 26 Nov 2026 09:00:00 GMT", now=now) == 0.0
        assert parse_retry_after("soon", now=now) is None
        assert parse_retry_after(None, now=now) is None


class TestTranscript:
    def test_renders_roles_tool_calls_and_results(self) -> None:
        """Messages, tool calls with arguments and tool results appear in order."""
        text = render_transcript(decode(conversation()), max_chars=10_000)
        assert text.splitlines() == [
            "[user] Where is my order?",
            "[assistant calls tool lookup_order] {}",
            '[tool result] {"status": "shipped"}',
            "[assistant] It ships tomorrow.",
        ]

    def test_tool_errors_are_marked(self) -> None:
        """A failed tool call is shown as an error, with its message."""
        document = conversation()
        document["messages"][2] = {"role": "tool", "content": None, "error": "timeout"}
        assert "[tool error] timeout" in render_transcript(decode(document), max_chars=10_000)

    def test_long_transcripts_keep_start_and_end(self) -> None:
        """Beyond the limit the middle is cut and the cut is said."""
        messages = [{"role": "user", "content": "START " + "x" * 5000}]
        messages.append({"role": "assistant", "content": "y" * 5000 + " END"})
        text = render_transcript(decode(conversation(messages=messages)), max_chars=1200)
        assert text.startswith("[user] START")
        assert text.endswith(" END")
        assert "characters omitted" in text
        assert len(text) < 1300

    def test_redaction_applies_before_anything_leaves(self) -> None:
        """The redact hook sees the whole transcript."""
        text = render_transcript(
            decode(conversation()), max_chars=10_000, redact=lambda t: t.replace("order", "[X]")
        )
        assert "order" not in text


class TestRubrics:
    def test_shipped_rubrics_and_scales(self) -> None:
        """The four shipped rubrics exist with their documented scales."""
        scales = {name: (r.scale_min, r.scale_max) for name, r in shipped_rubrics().items()}
        assert scales == {
            "coherence": (1, 5),
            "task_completion": (0, 1),
            "helpfulness": (1, 5),
            "groundedness": (0, 1),
        }

    def test_messages_ask_for_json_on_the_scale(self) -> None:
        """The system prompt states the scale and the JSON answer form; the transcript is data."""
        system, user = messages_for(shipped_rubrics()["coherence"], "[user] hi")
        assert "from 1 (worst) to 5 (best)" in system["content"]
        assert '{"score":' in system["content"]
        assert user == {"role": "user", "content": "<conversation>\n[user] hi\n</conversation>"}

    def test_user_rubric_uses_the_dimension_scale(self) -> None:
        """A rubric written in the config grades a user-declared dimension on its own scale."""
        config = parse_config(
            {
                "dimensions": [{"name": "politeness", "scale": {"min": 0, "max": 10}}],
                "judges": JUDGES,
                "rubrics": {"politeness": "Grade politeness."},
                "scorers": [{"type": "llm_judge", "judge": "primary", "dimension": "politeness"}],
            }
        )
        scorer = make_judge_scorer(config.scorers[0], config)
        rubric = scorer.grader.rubrics["politeness"]
        assert (rubric.prompt, rubric.scale_min, rubric.scale_max) == ("Grade politeness.", 0, 10)


class TestConfig:
    def test_default_config_has_no_judge(self) -> None:
        """The embedded default needs no API key: no judges, no confirmation."""
        config = parse_config({})
        assert dict(config.judges) == {}
        assert config.confirmation.judge is None
        assert not any(s.type == "llm_judge" for s in config.scorers)

    def test_judge_defaults_and_prices_table(self) -> None:
        """Judges start from judge_defaults; a model's price comes from `prices`."""
        config = parse_config(
            {
                "judge_defaults": {"concurrency": 32, "breaker": {"failures": 2}},
                "judges": {**JUDGES, "second": {**JUDGES["second"], "timeout": "5s"}},
                "prices": {"judge-b": {"input_per_million": 1, "output_per_million": 4}},
            }
        )
        second = config.judges["second"]
        assert (second.concurrency, second.timeout, second.breaker_failures) == (32, 5.0, 2)
        assert second.breaker_cooldown == 30.0
        assert second.price is not None
        assert second.price.cost(input_tokens=1_000_000, output_tokens=500_000) == 3.0
        assert config.judges["primary"].price is None

    def test_api_key_comes_from_env_and_is_never_shown(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The key is read from the named variable and left out of the config's repr."""
        monkeypatch.setenv("JUDGE_KEY_TEST", "sk-secret-123")
        judges = {"primary": {**JUDGES["primary"], "api_key_env": "JUDGE_KEY_TEST"}}
        config = resolve_secrets(parse_config({"judges": judges}))
        assert config.judges["primary"].api_key == "sk-secret-123"
        assert "sk-secret-123" not in repr(config)

    @pytest.mark.parametrize(
        ("document", "path", "words"),
        [
            ({"judges": {"a": {"model": "m"}}}, "$.judges.a", "base_url"),
            ({"judges": {"a": {"base_url": "x", "model": "m"}}}, "$.judges.a.base_url", "http"),
            (
                {"judges": {"a": {"base_url": "http://h", "model": "m", "daily_budget_usd": 1}}},
                "$.judges.a.daily_budget_usd",
                "needs a price",
            ),
            (
                {"scorers": [{"type": "llm_judge", "judge": "nope", "dimension": "coherence"}]},
                "$.scorers[0].judge",
                "not a judge",
            ),
            (
                {"judges": JUDGES, "scorers": [{"type": "llm_judge", "judge": "primary"}]},
                "$.scorers[0]",
                "dimension",
            ),
            (
                {
                    "judges": {**JUDGES, "same": JUDGES["primary"]},
                    "scorers": [
                        {"type": "llm_judge", "judge": "primary", "dimension": "coherence"}
                    ],
                    "confirmation": {"judge": "same"},
                },
                "$.confirmation.judge",
                "another model",
            ),
            ({"confirmation": {"flags": ["refusal"]}}, "$.confirmation.judge", "set the judge"),
            (
                {"judges": JUDGES, "confirmation": {"judge": "second"}},
                "$.confirmation.dimensions",
                "name the dimensions",
            ),
        ],
    )
    def test_errors_name_the_key(self, document: dict[str, Any], path: str, words: str) -> None:
        """Judge config mistakes are ConfigErrors naming the key path and what was expected."""
        with pytest.raises(ConfigError) as caught:
            parse_config(document)
        assert caught.value.path == path
        assert words in caught.value.message

    def test_example_config_builds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """examples/two-judges.yml loads and builds its judge scorer and confirmer."""
        monkeypatch.setenv("OPENAI_API_KEY", "sk-example")
        config = load_config(Path(__file__).parents[1] / "examples" / "two-judges.yml")
        metrics = Metrics(config, CollectorRegistry())
        judges = [s for s in build_scorers(config, metrics=metrics) if isinstance(s, JudgeScorer)]
        assert [j.dimensions for j in judges] == [("task_completion", "coherence", "groundedness")]
        assert "customer-support agent" in judges[0].grader.rubrics["task_completion"].prompt
        (confirmer,) = build_confirmers(config, metrics=metrics)
        assert isinstance(confirmer, JudgeConfirmer)
        assert confirmer.grader.client.config.model == "gpt-4.1"
        assert config.judges["careful"].price == Price(2.0, 8.0)

    def test_dimension_without_rubric(self) -> None:
        """Judging a dimension nobody wrote a rubric for is an error naming the entry's key."""
        config = parse_config(
            {
                "judges": JUDGES,
                "scorers": [
                    {"type": "llm_judge", "judge": "primary", "dimensions": ["tool_success"]}
                ],
            }
        )
        with pytest.raises(ConfigError) as caught:
            make_judge_scorer(config.scorers[0], config)
        assert caught.value.path == "$.dimensions[0]"
        assert "$.rubrics.tool_success" in caught.value.message

    def test_shipped_rubric_scale_must_match(self) -> None:
        """A shipped rubric on a dimension with another scale is refused at the confirmation."""
        config = parse_config(
            {
                "dimensions": [{"name": "helpfulness", "scale": {"min": 0, "max": 1}}],
                "judges": JUDGES,
                "confirmation": {"judge": "second", "dimensions": ["helpfulness"]},
            }
        )
        with pytest.raises(ConfigError) as caught:
            build_confirmers(config, metrics=Metrics(config, CollectorRegistry()))
        assert caught.value.path == "$.confirmation.dimensions[0]"
        assert "scores 1 to 5, but $.dimensions[0].scale is 0 to 1" in caught.value.message
