"""export-dataset: the plain JSONL and Inspect formats, filters, and the command line."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest

from exporter.cli import run as cli_run
from exporter.dataset import ExportFilter, Provenance, Record
from exporter.dataset import to_case as _to_case
from exporter.dataset import to_inspect as _to_inspect
from exporter.dataset.cli import parse_time
from exporter.dataset.export import split_turn
from exporter.dataset.record import encode_record
from exporter.dataset.segments import ACTIVE_NAME
from exporter.model import decode_conversation
from tests.conftest import conversation

UTC = dt.UTC
DAY = dt.datetime(2026, 11, 26, tzinfo=UTC)


def record(
    conversation_id: str = "c-1",
    *,
    agent: str = "support-bot",
    bad: tuple[str, ...] = ("task_completion",),
    time: dt.datetime = DAY,
    messages: list[dict[str, Any]] | None = None,
) -> Record:
    """Return a record of the example conversation of docs/api.md."""
    document = conversation(id=conversation_id, agent=agent)
    if messages is not None:
        document["messages"] = messages
    return Record(
        id=conversation_id,
        agent=agent,
        time=time,
        selected_because=[f"bad_score:{d}" for d in bad],
        sampling_reason="base",
        scores=dict.fromkeys(bad, 0.0),
        bad_dimensions=list(bad),
        flags=["refusal"],
        explanations={"task_completion": "It never said when."},
        errors={},
        conversation=decode_conversation(json.dumps(document).encode()),
        provenance=Provenance(exporter_version="0.1.0", config_digest="abc", redacted=("email",)),
    )


def to_case(item: Record) -> dict[str, Any]:
    """Return the case as a consumer reads it: through JSON."""
    result: dict[str, Any] = json.loads(json.dumps(_to_case(item)))
    return result


def to_inspect(item: Record) -> dict[str, Any]:
    """Return the Inspect sample as a consumer reads it: through JSON."""
    result: dict[str, Any] = json.loads(json.dumps(_to_inspect(item)))
    return result


def write(directory: Path, name: str, *records: Record) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(b"".join(encode_record(r) for r in records))


def export(*argv: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run the CLI; return the exit code, the JSON lines on stdout, and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = cli_run(["export-dataset", *argv], stdout, stderr)
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    return code, lines, stderr.getvalue()


TOOL_TURN: list[dict[str, Any]] = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello, how can I help?"},
    {"role": "user", "content": "Where is order 42?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t1", "name": "lookup_order", "arguments": '{"order": 42}'},
            {"id": "t2", "function": {"name": "notify", "arguments": "not json"}},
        ],
    },
    {"role": "tool", "tool_call_id": "t1", "content": "timeout", "error": True},
    {"role": "assistant", "content": "I could not find it."},
]


class TestSplit:
    """Cases split at the last user message."""

    def test_input_is_everything_up_to_the_last_user_message(self) -> None:
        """Earlier turns stay in the input; the agent's last turn is the observed output."""
        messages = record(messages=TOOL_TURN).conversation.messages
        given, observed = split_turn(messages)
        assert [m.role for m in given] == ["developer", "user", "assistant", "user"]
        assert [m.role for m in observed] == ["assistant", "tool", "assistant"]

    def test_no_user_message(self) -> None:
        """Without a user turn the first message is the input."""
        only = [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]
        given, observed = split_turn(record(messages=only).conversation.messages)
        assert (len(given), len(observed)) == (1, 1)


class TestPlainFormat:
    """The documented plain JSONL case."""

    def test_case(self) -> None:
        """Input, observed output and messages, scores, reasons and provenance."""
        case = to_case(record(messages=TOOL_TURN))
        assert case["id"] == "c-1"
        assert case["input"][-1] == {"role": "user", "content": "Where is order 42?"}
        assert case["observed_output"] == "I could not find it."
        assert len(case["observed_messages"]) == 3
        assert case["scores"] == {"task_completion": 0.0}
        assert case["bad_dimensions"] == ["task_completion"]
        assert case["selected_because"] == ["bad_score:task_completion"]
        assert case["explanations"] == {"task_completion": "It never said when."}
        assert case["provenance"]["redacted"] == ["email"]
        assert case["time"] == "2026-11-26T00:00:00Z"

    def test_no_null_fields(self) -> None:
        """Unset message fields are left out rather than written as null."""
        case = to_case(record())
        assert all(value is not None for m in case["input"] for value in m.values())

    def test_missing_answer_is_an_empty_output(self) -> None:
        """An agent that never answered has an empty observed output: that is the failure."""
        case = to_case(record(messages=[{"role": "user", "content": "Hello?"}]))
        assert (case["observed_output"], case["observed_messages"]) == ("", [])


class TestInspectFormat:
    """Samples that Inspect's json_dataset loads as they are."""

    def test_messages(self) -> None:
        """Roles Inspect knows, content never null, tool calls as function + arguments."""
        sample = to_inspect(record(messages=TOOL_TURN))
        assert sample["target"] == ""
        assert [m["role"] for m in sample["input"]] == ["system", "user", "assistant", "user"]
        assert all(isinstance(m["content"], str) for m in sample["input"])
        assert sample["metadata"]["observed_output"] == "I could not find it."

    def test_tool_calls_and_errors(self) -> None:
        """A tool turn inside the input keeps its calls, ids and errors."""
        messages = [*TOOL_TURN, {"role": "user", "content": "And now?"}]
        given = to_inspect(record(messages=messages))["input"]
        calls = given[4]["tool_calls"]
        assert calls[0] == {
            "id": "t1",
            "function": "lookup_order",
            "arguments": {"order": 42},
            "type": "function",
        }
        assert calls[1]["function"] == "notify"
        assert calls[1]["arguments"] == {"raw": "not json"}
        assert given[5]["tool_call_id"] == "t1"
        assert given[5]["tool_error"] == {"type": "unknown", "message": "timeout"}

    def test_inspect_loads_the_export(self, tmp_path: Path) -> None:
        """Inspect AI's own json_dataset reads the exported file into samples."""
        # Imported by this test alone: inspect_ai takes about 2 s to import.
        from inspect_ai.dataset import json_dataset
        from inspect_ai.model import ChatMessageAssistant, ChatMessageTool

        messages = [*TOOL_TURN, {"role": "user", "content": "And now?"}]
        write(tmp_path / "ds", "feedback-a.jsonl", record("c-1", messages=messages), record("c-2"))
        out = tmp_path / "cases.jsonl"
        code, _, _ = export(
            "--dataset.path", str(tmp_path / "ds"), "--format", "inspect", "--out", str(out)
        )
        assert code == 0
        samples = list(json_dataset(str(out)))
        assert [s.id for s in samples] == ["c-1", "c-2"]
        first = samples[0].input
        assert not isinstance(first, str)
        assert isinstance(first[4], ChatMessageAssistant)
        assert first[4].tool_calls is not None
        assert first[4].tool_calls[0].arguments == {"order": 42}
        assert isinstance(first[5], ChatMessageTool)
        assert samples[1].metadata is not None
        assert samples[1].metadata["bad_dimensions"] == ["task_completion"]


class TestFilters:
    """Agent, dimension and time filters, and dedup across files."""

    @pytest.fixture
    def directory(self, tmp_path: Path) -> Path:
        directory = tmp_path / "ds"
        write(
            directory,
            "feedback-20261125T000000.000000Z.jsonl",
            record(
                "a", agent="support-bot", bad=("task_completion",), time=DAY - dt.timedelta(days=1)
            ),
            record("b", agent="billing-bot", bad=("coherence",), time=DAY),
        )
        write(
            directory,
            ACTIVE_NAME,
            record(
                "c",
                agent="support-bot",
                bad=("coherence", "tool_success"),
                time=DAY + dt.timedelta(hours=5),
            ),
            record("a", agent="support-bot"),  # a second replica's copy
        )
        return directory

    def ids(self, directory: Path, *argv: str) -> list[str]:
        code, lines, _ = export("--dataset.path", str(directory), *argv)
        assert code == 0
        return [line["id"] for line in lines]

    def test_everything_once(self, directory: Path) -> None:
        """Without filters every id is exported once, finished files first."""
        assert self.ids(directory) == ["a", "b", "c"]

    def test_agent(self, directory: Path) -> None:
        """--agent keeps that agent's records; repeating it adds agents."""
        assert self.ids(directory, "--agent", "billing-bot") == ["b"]
        assert self.ids(directory, "--agent", "billing-bot", "--agent", "support-bot") == [
            "a",
            "b",
            "c",
        ]

    def test_dimension(self, directory: Path) -> None:
        """--dimension keeps records scored bad in it."""
        assert self.ids(directory, "--dimension", "coherence") == ["b", "c"]
        assert self.ids(directory, "--dimension", "tool_success") == ["c"]

    def test_time_range(self, directory: Path) -> None:
        """--since is inclusive, --until exclusive; dates are UTC midnight."""
        assert self.ids(directory, "--since", "2026-11-26") == ["b", "c"]
        assert self.ids(directory, "--until", "2026-11-26T00:00:00Z") == ["a"]
        assert self.ids(directory, "--since", "2026-11-26", "--until", "2026-11-26T05:00:00Z") == [
            "b"
        ]

    def test_combined(self, directory: Path) -> None:
        """Filters combine with AND."""
        assert self.ids(directory, "--agent", "support-bot", "--dimension", "coherence") == ["c"]

    def test_filter_matches_conversation_agent_name(self) -> None:
        """An unlisted agent (label `other`) is found by the name it was sent with."""
        item = record(agent="other")
        item.conversation.agent = "shadow-bot"
        assert ExportFilter(agents=frozenset({"shadow-bot"})).matches(item)


class TestCommandLine:
    """Exit codes, --out, --config.file and the summary on stderr."""

    def test_summary_on_stderr(self, tmp_path: Path) -> None:
        """stderr says how many cases were exported and what was skipped."""
        write(tmp_path / "ds", ACTIVE_NAME, record("a"))
        with open(tmp_path / "ds" / ACTIVE_NAME, "ab") as file:
            file.write(b'{"format": "agent-qual')  # torn
        code, lines, stderr = export("--dataset.path", str(tmp_path / "ds"))
        assert code == 0
        assert len(lines) == 1
        assert "1 cases (jsonl)" in stderr
        assert "1 torn" in stderr

    def test_out_file(self, tmp_path: Path) -> None:
        """--out writes the file and leaves no temporary file behind."""
        write(tmp_path / "ds", ACTIVE_NAME, record("a"), record("b"))
        out = tmp_path / "out" / "cases.jsonl"
        out.parent.mkdir()
        code, lines, _ = export("--dataset.path", str(tmp_path / "ds"), "--out", str(out))
        assert (code, lines) == (0, [])
        assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]
        assert [p.name for p in out.parent.iterdir()] == ["cases.jsonl"]

    def test_dataset_path_from_config_file(self, tmp_path: Path) -> None:
        """A relative dataset.path is resolved against the config file's directory."""
        write(tmp_path / "etc" / "feedback", ACTIVE_NAME, record("a"))
        config = tmp_path / "etc" / "config.yml"
        config.write_text("dataset:\n  path: feedback\n")
        code, lines, _ = export("--config.file", str(config))
        assert code == 0
        assert [line["id"] for line in lines] == ["a"]

    def test_missing_directory(self, tmp_path: Path) -> None:
        """No dataset directory is a runtime failure (1), naming the path."""
        code, _, stderr = export("--dataset.path", str(tmp_path / "nope"))
        assert code == 1
        assert str(tmp_path / "nope") in stderr

    def test_bad_time(self, tmp_path: Path) -> None:
        """An unreadable --since is a usage error (2) that says what is accepted."""
        code, _, stderr = export("--dataset.path", str(tmp_path), "--since", "yesterday")
        assert code == 2
        assert "RFC 3339" in stderr

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-11-26T10:00:00Z", dt.datetime(2026, 11, 26, 10, tzinfo=UTC)),
            ("2026-11-26T12:00:00+02:00", dt.datetime(2026, 11, 26, 10, tzinfo=UTC)),
            ("2026-11-26", dt.datetime(2026, 11, 26, tzinfo=UTC)),
            ("36h", DAY - dt.timedelta(hours=36)),
        ],
    )
    def test_parse_time(self, text: str, expected: dt.datetime) -> None:
        """RFC 3339, plain dates (UTC) and durations ago."""
        assert parse_time(text, now=DAY) == expected
