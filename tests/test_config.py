"""The config loader: defaults, validation errors that say where, the frozen result."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import (
    OTHER_AGENT,
    Secret,
    default_document,
    format_duration,
    load_config,
    needed_secrets,
    parse_config,
    parse_duration,
    resolve_secrets,
)
from exporter.exceptions import ConfigError


class TestDefault:
    def test_embedded_default_loads_without_any_key(self) -> None:
        """The default config needs no file, no environment and no API key."""
        config = load_config()
        assert config.sampling.base_rate == 0.05
        assert config.sampling.boost_rate == 0.25
        assert config.server.port == 10340
        assert config.server.auth.bearer_token is None
        assert {d.name for d in config.dimensions} >= {"task_completion", "coherence"}

    def test_buckets_include_every_threshold(self) -> None:
        """Each dimension's buckets contain its bad/warning/critical levels."""
        for dimension in load_config().dimensions:
            for value in dimension.thresholds.values():
                assert value in dimension.buckets, (dimension.name, value)
            assert dimension.buckets == tuple(sorted(dimension.buckets))

    def test_partial_file_merges_over_default(self, tmp_path: Path) -> None:
        """A file with one key changes that key and keeps every other default."""
        path = tmp_path / "c.yml"
        path.write_text("sampling:\n  base_rate: 0.5\n")
        config = load_config(path)
        assert config.sampling.base_rate == 0.5
        assert config.sampling.boost_rate == 0.25
        assert config.source == str(path)
        assert config.digest != load_config().digest

    def test_config_is_frozen(self) -> None:
        """The config object cannot be changed by the code that reads it."""
        config = load_config()
        with pytest.raises(AttributeError):
            config.agents = ()  # type: ignore[misc]  # mypy refuses it too: that is the point

    def test_agent_labels_end_with_other(self) -> None:
        """Unlisted agents share the label value `other`."""
        assert load_config().agent_labels[-1] == OTHER_AGENT


BAD_CONFIGS: list[tuple[dict[str, Any], str, str]] = [
    ({"scorers": [{"type": "tool_success"}, {"type": "bogus"}]}, "$.scorers[1].type", "one of"),
    ({"sampling": {"base_rate": 1.5}}, "$.sampling.base_rate", "1.5"),
    ({"sampling": {"base_rate": "x"}}, "$.sampling.base_rate", "expected number"),
    (
        {"sampling": {"daily_budget": {"min_samples": 10, "max_samples": 5}}},
        "$.sampling.daily_budget.min_samples",
        "max_samples",
    ),
    ({"pipeline": {"scorer_timeout": "10 s"}}, "$.pipeline.scorer_timeout", "duration"),
    ({"server": {"limits": {"max_body": 1}}}, "$.server.limits", "max_body"),
    ({"server": {"listen_address": "localhost"}}, "$.server.listen_address", "HOST:PORT"),
    ({"server": {"listen_address": ":99999"}}, "$.server.listen_address", "out of range"),
    ({"agents": ["ok", "other"]}, "$.agents[1]", "reserved"),
    ({"agents": ["bad label!"]}, "$.agents[0]", "bad label!"),
    ({"dimensions": [{"name": "x"}]}, "$.dimensions[0]", "scale"),
    (
        {"dimensions": [{"name": "x", "scale": {"min": 1, "max": 1}}]},
        "$.dimensions[0].scale",
        "below max",
    ),
    (
        {"dimensions": [{"name": "x", "scale": {"min": 0, "max": 1}, "thresholds": {"bad": 2}}]},
        "$.dimensions[0].thresholds.bad",
        "outside the scale",
    ),
    (
        {
            "dimensions": [
                {"name": "x", "scale": {"min": 0, "max": 1}},
                {"name": "x", "scale": {"min": 0, "max": 1}},
            ]
        },
        "$.dimensions[1].name",
        "twice",
    ),
    ({"scorers": [{"type": "plugin"}]}, "$.scorers[0]", "path"),
    ({"scorers": [{"type": "json_validity"}]}, "$.scorers[0]", "schema"),
    (
        {"scorers": [{"type": "tool_success", "dimension": "nope"}]},
        "$.scorers[0].dimension",
        "not a declared dimension",
    ),
    ({"scorers": [{"type": "pii"}, {"type": "pii"}]}, "$.scorers[1].name", "twice"),
    (
        {"server": {"auth": {"bearer_token_env": "A", "bearer_token_file": "/f"}}},
        "$.server.auth",
        "not both",
    ),
    ({"samplng": {"base_rate": 0.1}}, "$.samplng", "did you mean 'sampling'?"),
    (
        {"dimensions": [{"name": "x", "scale": {"min": 0, "max": 1}, "direction": "up"}]},
        "$.dimensions[0].direction",
        "higher_is_better",
    ),
    ({"dataset": {"retention": {"max_age": 5}}}, "$.dataset.retention.max_age", "or null"),
]


class TestErrors:
    @pytest.mark.parametrize(("document", "path", "words"), BAD_CONFIGS)
    def test_error_names_path_and_expectation(
        self, document: dict[str, Any], path: str, words: str
    ) -> None:
        """Every bad config raises ConfigError naming the file, the key path and the problem."""
        with pytest.raises(ConfigError) as caught:
            parse_config(document, source="bad.yml")
        assert caught.value.source == "bad.yml"
        assert caught.value.path.startswith(path)
        assert words in str(caught.value)

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A missing file is a ConfigError naming it."""
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(tmp_path / "missing.yml")

    def test_invalid_yaml_names_line(self, tmp_path: Path) -> None:
        """YAML syntax errors carry the line and column."""
        path = tmp_path / "c.yml"
        path.write_text("sampling:\n  base_rate: [1,\n")
        with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
            load_config(path)

    def test_every_schema_error_is_reported(self, tmp_path: Path) -> None:
        """All schema errors come at once, in key order, each with the file and its key path."""
        path = tmp_path / "c.yml"
        path.write_text(
            "samplng: {}\n"
            "sampling: {base_rate: 7, boost_rat: 0.5}\n"
            "scorers: [{type: nope}, {type: refusal, patern: [x]}]\n"
        )
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        lines = str(caught.value).splitlines()
        assert [problem.path for problem in caught.value.problems] == [
            "$.sampling.base_rate",
            "$.sampling.boost_rat",
            "$.samplng",
            "$.scorers[0].type",
            "$.scorers[1].patern",
        ]
        assert all(line.startswith(f"{path}: $.") for line in lines)
        assert len(lines) == 5
        assert "did you mean 'boost_rate'?" in lines[1]
        assert "did you mean 'patterns'?" in lines[4]

    def test_unknown_key_far_from_any_lists_the_known_ones(self) -> None:
        """Without a close match, the message lists the keys that level takes."""
        with pytest.raises(ConfigError) as caught:
            parse_config({"pipeline": {"zzz": 1}})
        assert caught.value.path == "$.pipeline.zzz"
        assert "did you mean" not in caught.value.message
        assert "known keys: queue_size, workers" in caught.value.message

    def test_top_level_must_be_a_mapping(self) -> None:
        """A list at the top level is rejected at `$`."""
        with pytest.raises(ConfigError) as caught:
            parse_config([1, 2])
        assert caught.value.path == "$"

    @settings(max_examples=200, deadline=None)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["sampling", "base_rate", "dimensions", "name", "scale", "x"]),
                    inner,
                    max_size=3,
                )
            ),
            max_leaves=8,
        )
    )
    def test_any_document_is_config_or_config_error(self, document: Any) -> None:
        """Whatever YAML parses to, the loader returns a Config or raises ConfigError."""
        with contextlib.suppress(ConfigError):
            parse_config(document)


class TestSecrets:
    def test_loading_reads_no_secret(self) -> None:
        """A config naming unset variables and a missing file loads: only the daemon reads them."""
        judges = {"j": {"base_url": "http://h", "model": "m", "api_key_env": "AQE_TEST_UNSET_1"}}
        config = parse_config({"judges": judges})
        assert config.judges["j"].api_key is None
        assert config.judges["j"].api_key_env == "AQE_TEST_UNSET_1"
        config = parse_config({"server": {"auth": {"bearer_token_file": "/nonexistent/token"}}})
        assert config.server.auth.enabled
        assert config.server.auth.bearer_token is None

    def test_needed_secrets_name_each_key(self) -> None:
        """needed_secrets lists what the daemon will read, with the key that names it."""
        judges = {
            name: {"base_url": "http://h", "model": name, "api_key_env": "KEY"}
            for name in ("a", "b")
        }
        config = parse_config({"judges": judges, "server": {"auth": {"bearer_token_env": "TOK"}}})
        assert needed_secrets(config) == (
            Secret("$.server.auth.bearer_token_env", env="TOK"),
            Secret("$.judges.a.api_key_env", env="KEY"),
            Secret("$.judges.b.api_key_env", env="KEY"),
        )
        assert needed_secrets(load_config()) == ()

    def test_token_from_env_is_not_in_repr(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The bearer token is read from the environment at start and never printed."""
        monkeypatch.setenv("AQE_TOKEN", "s3cret-value")
        config = parse_config({"server": {"auth": {"bearer_token_env": "AQE_TOKEN"}}})
        resolved = resolve_secrets(config)
        assert resolved.server.auth.bearer_token == "s3cret-value"
        assert "s3cret-value" not in repr(resolved)

    def test_token_from_file(self, tmp_path: Path) -> None:
        """A token file is read and stripped of its trailing newline."""
        token = tmp_path / "token"
        token.write_text("abc\n")
        config = parse_config({"server": {"auth": {"bearer_token_file": str(token)}}})
        assert resolve_secrets(config).server.auth.bearer_token == "abc"

    def test_every_missing_secret_is_named(self, tmp_path: Path) -> None:
        """Resolving fails once, naming each missing secret with the file and key path."""
        path = tmp_path / "c.yml"
        path.write_text(
            "server: {auth: {bearer_token_file: /nonexistent/token}}\n"
            "judges: {j: {base_url: 'http://h', model: m, api_key_env: AQE_TEST_UNSET_2}}\n"
        )
        with pytest.raises(ConfigError) as caught:
            resolve_secrets(load_config(path))
        assert str(caught.value).splitlines() == [
            f"{path}: $.server.auth.bearer_token_file: file /nonexistent/token is unreadable: "
            "No such file or directory",
            f"{path}: $.judges.j.api_key_env: environment variable AQE_TEST_UNSET_2 is unset "
            "or empty",
        ]


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h30m", 5400), ("2d", 172800)]
    )
    def test_round_trip(self, text: str, seconds: int) -> None:
        """Prometheus durations parse to seconds and format back."""
        assert parse_duration(text) == seconds
        assert format_duration(seconds) == text

    @pytest.mark.parametrize("text", ["", "10", "1x", "m5", "1h 30m"])
    def test_rejects_malformed(self, text: str) -> None:
        """Anything that is not a duration is refused."""
        with pytest.raises(ValueError):
            parse_duration(text)


def test_default_document_is_a_fresh_copy() -> None:
    """Mutating the returned default cannot change the next load."""
    document = default_document()
    document["sampling"]["base_rate"] = 0.9
    assert load_config().sampling.base_rate == 0.05
