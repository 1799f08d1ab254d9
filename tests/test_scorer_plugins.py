"""User scorers loaded by dotted path: every accepted shape, and clear errors for the rest."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from exporter.config import Config, ScorerSpec
from exporter.exceptions import ConfigError, ScorerError
from exporter.model import Conversation
from exporter.scoring import build_scorers
from exporter.types import Closeable, Scorer, ScoreResult, needs_text
from tests.conftest import conversation
from tests.plugins import examples

MakeConfig = Callable[..., Config]


def _conversation(**changes: Any) -> Conversation:
    return msgspec.convert(conversation(**changes), Conversation)


def _plugin(make_config: MakeConfig, path: str, **entry: Any) -> Scorer:
    config = make_config(scorers=[{"type": "plugin", "path": path, **entry}])
    (scorer,) = build_scorers(config)
    return scorer


def _error(make_config: MakeConfig, path: str, **entry: Any) -> ConfigError:
    config = make_config(
        scorers=[{"type": "tool_success"}, {"type": "plugin", "path": path, **entry}]
    )
    with pytest.raises(ConfigError) as caught:
        build_scorers(config)
    return caught.value


class TestShapes:
    """Every plugin shape loads and scores."""

    async def test_sync_function_runs_in_a_worker_thread(self, make_config: MakeConfig) -> None:
        """A sync function's mapping becomes a ScoreResult, computed off the loop's thread."""
        scorer = _plugin(make_config, "tests.plugins.examples:score_sync")
        examples.SYNC_THREADS.clear()
        result = await scorer.score(_conversation())
        assert result == ScoreResult(scores={"task_completion": 1.0})
        assert examples.SYNC_THREADS
        assert examples.SYNC_THREADS[-1] != threading.get_ident()

    async def test_async_function_is_awaited(self, make_config: MakeConfig) -> None:
        """An async function's ScoreResult comes back as it is."""
        scorer = _plugin(make_config, "tests.plugins.examples:score_async")
        result = await scorer.score(_conversation())
        assert result.scores == {"coherence": 4.0}
        assert result.flags == ()

    async def test_function_asking_for_options(self, make_config: MakeConfig) -> None:
        """A function may name ``options`` to receive the entry's options."""
        scorer = _plugin(
            make_config, "tests.plugins.examples:score_with_options", options={"value": 0.25}
        )
        assert (await scorer.score(_conversation())).scores == {"task_completion": 0.25}

    async def test_class_built_from_spec_and_config(self, make_config: MakeConfig) -> None:
        """A class taking (spec, config) is built once; its name is the configured one."""
        scorer = _plugin(
            make_config,
            "tests.plugins.examples:SpecScorer",
            name="agent_known",
            dimension="coherence",
        )
        assert scorer.name == "agent_known"
        assert (await scorer.score(_conversation())).scores == {"coherence": 1.0}
        assert (await scorer.score(_conversation(agent="unknown"))).scores == {"coherence": 0.0}

    async def test_class_built_from_options(self, make_config: MakeConfig) -> None:
        """A class wanting only ``options`` receives them."""
        scorer = _plugin(
            make_config, "tests.plugins.examples:OptionsScorer", options={"keyword": "ships"}
        )
        assert (await scorer.score(_conversation())).flags == ("mentions_keyword",)

    async def test_factory_function(self, make_config: MakeConfig) -> None:
        """A function whose parameters are all injectable is a factory, called once."""
        scorer = _plugin(
            make_config, "tests.plugins.examples:make_scorer", options={"word": "ships"}
        )
        assert (await scorer.score(_conversation())).flags == ("mentions_keyword",)

    async def test_ready_object(self, make_config: MakeConfig) -> None:
        """A module-level object with ``score`` is used as it is, under the configured name."""
        scorer = _plugin(make_config, "tests.plugins.examples:READY", name="ready_check")
        assert scorer.name == "ready_check"
        assert (await scorer.score(_conversation())).flags == ()

    async def test_sync_score_method_runs_in_a_worker_thread(self, make_config: MakeConfig) -> None:
        """A class whose ``score`` is sync does not block the loop either."""
        scorer = _plugin(make_config, "tests.plugins.examples:SyncMethodScorer")
        examples.SYNC_THREADS.clear()
        assert (await scorer.score(_conversation())).scores == {"coherence": 3.0}
        assert examples.SYNC_THREADS[-1] != threading.get_ident()

    async def test_aclose_reaches_the_plugin(self, make_config: MakeConfig) -> None:
        """The wrapper is Closeable and closes the plugin's resources."""
        scorer = _plugin(make_config, "tests.plugins.examples:Closing", name="holder")
        assert isinstance(scorer, Closeable)
        examples.CLOSED.clear()
        await scorer.aclose()
        assert examples.CLOSED == ["holder"]

    async def test_the_lead_drain_plugin_loads(self, make_config: MakeConfig) -> None:
        """The slow plugin used by the daemon tests is a valid async function plugin."""
        scorer = _plugin(make_config, "tests.support.slow_scorer:score")
        assert (await scorer.score(_conversation())).scores == {"task_completion": 1.0}


class TestRuntimeErrors:
    """Bad results are scorer errors, counted by the pipeline, never scores."""

    async def test_junk_result(self, make_config: MakeConfig) -> None:
        """A list is neither a ScoreResult nor a mapping."""
        scorer = _plugin(make_config, "tests.plugins.examples:returns_junk")
        with pytest.raises(ScorerError, match=r"examples:returns_junk returned \['not'"):
            await scorer.score(_conversation())

    async def test_non_numeric_scores(self, make_config: MakeConfig) -> None:
        """Mapping values must be numbers."""
        scorer = _plugin(make_config, "tests.plugins.examples:returns_text_scores")
        with pytest.raises(ScorerError, match="mapping of dimension name to number"):
            await scorer.score(_conversation())


class TestConfigErrors:
    """Every broken path is a ConfigError at start-up naming $.scorers[i].path and the cause."""

    def test_missing_module(self, make_config: MakeConfig) -> None:
        """A module that is not installed says so, with a hint."""
        error = _error(make_config, "no_such_package.scorers:score")
        assert error.path == "$.scorers[1].path"
        assert error.source == "test.yml"
        assert "cannot import 'no_such_package.scorers'" in error.message
        assert "PYTHONPATH" in error.message

    def test_module_failing_on_import(self, make_config: MakeConfig) -> None:
        """A plugin module that raises while importing names the exception."""
        error = _error(make_config, "tests.plugins.broken:score")
        assert error.path == "$.scorers[1].path"
        assert "RuntimeError: plugin misconfigured" in error.message

    def test_missing_attribute(self, make_config: MakeConfig) -> None:
        """An attribute typo names the module and the missing name."""
        error = _error(make_config, "tests.plugins.examples:scroe_sync")
        assert error.path == "$.scorers[1].path"
        assert "'tests.plugins.examples' has no attribute 'scroe_sync'" in error.message

    def test_not_callable(self, make_config: MakeConfig) -> None:
        """A constant is neither callable nor a scorer."""
        error = _error(make_config, "tests.plugins.examples:NOT_CALLABLE")
        assert "is a int, not a callable" in error.message

    def test_too_many_parameters(self, make_config: MakeConfig) -> None:
        """A function wanting more than the conversation is rejected before it runs."""
        error = _error(make_config, "tests.plugins.examples:two_plain_arguments")
        assert "takes (conversation, other)" in error.message

    def test_class_with_unknown_arguments(self, make_config: MakeConfig) -> None:
        """A class needing arguments the loader cannot provide says which."""
        error = _error(make_config, "tests.plugins.examples:NeedsPort")
        assert "needs (port)" in error.message

    def test_factory_raising(self, make_config: MakeConfig) -> None:
        """A factory's own error is shown with its type."""
        error = _error(make_config, "tests.plugins.examples:failing_factory")
        assert "ValueError: option 'threshold' is required" in error.message

    def test_async_factory(self, make_config: MakeConfig) -> None:
        """An async factory cannot be awaited at build time: say what to do instead."""
        error = _error(make_config, "tests.plugins.examples:async_factory")
        assert "async factory" in error.message

    def test_path_without_callable_is_a_schema_error(self, make_config: MakeConfig) -> None:
        """The schema already rejects a path without ``:callable``."""
        with pytest.raises(ConfigError) as caught:
            make_config(scorers=[{"type": "plugin", "path": "tests.plugins.examples"}])
        assert caught.value.path == "$.scorers[0].path"

    def test_path_checked_without_the_schema(self, make_config: MakeConfig) -> None:
        """A Config built in code gets the same check from the factory."""
        spec = ScorerSpec(type="plugin", name="p", options={"path": "no colon here"})
        bad = dataclasses.replace(make_config(), scorers=(spec,))
        with pytest.raises(ConfigError) as caught:
            build_scorers(bad)
        assert caught.value.path == "$.scorers[0].path"
        assert "package.module:callable" in caught.value.message


class TestNeedsText:
    """A plugin says whether it scores conversations without user or assistant text."""

    def test_plugins_need_text_unless_they_say_otherwise(self, make_config: MakeConfig) -> None:
        """Unmarked plugins need text; a function's or a class's needs_text = False is kept."""
        assert needs_text(_plugin(make_config, "tests.plugins.examples:score_sync"))
        assert not needs_text(_plugin(make_config, "tests.plugins.examples:escalations"))
        assert not needs_text(_plugin(make_config, "tests.plugins.examples:ToolLatency"))

    def test_builtins_that_read_no_text(self, make_config: MakeConfig) -> None:
        """tool_success, user_feedback and passthrough need no text; the checks of text do."""
        scorers = build_scorers(make_config())
        assert {s.name for s in scorers if not needs_text(s)} == {
            "tool_success",
            "user_feedback",
            "passthrough",
        }
