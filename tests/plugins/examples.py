"""Plugins in every shape the ``plugin`` scorer accepts, plus shapes it must reject."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

from exporter.config.model import Config, ScorerSpec
from exporter.model import Conversation
from exporter.types import ScoreResult

#: Thread idents that ran ``score_sync``: proves sync plugins leave the event loop's thread.
SYNC_THREADS: list[int] = []
#: Names of the ``Closing`` scorers closed so far.
CLOSED: list[str] = []


def score_sync(conversation: Conversation) -> dict[str, float]:
    """Score task_completion 1.0 when the agent answered, as a plain mapping."""
    SYNC_THREADS.append(threading.get_ident())
    return {"task_completion": 1.0 if conversation.final_answer() else 0.0}


async def score_async(conversation: Conversation) -> ScoreResult:
    """Score coherence 4 and flag long conversations."""
    await asyncio.sleep(0)
    flags = ("long_conversation",) if len(conversation.messages) > 10 else ()
    return ScoreResult(scores={"coherence": 4.0}, flags=flags)


def score_with_options(conversation: Conversation, options: Mapping[str, Any]) -> dict[str, float]:
    """Return the configured constant for task_completion."""
    return {"task_completion": float(options["value"])}


class SpecScorer:
    """A class-based scorer built from (spec, config)."""

    def __init__(self, spec: ScorerSpec, config: Config) -> None:
        self.name = "chosen-by-plugin"
        self.dimension = spec.dimension or "task_completion"
        self.agents = config.agents

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Score 1.0 for known agents, 0.0 for others."""
        return ScoreResult(scores={self.dimension: float(conversation.agent in self.agents)})


class OptionsScorer:
    """A class-based scorer that only wants its options."""

    def __init__(self, *, options: Mapping[str, Any]) -> None:
        self.keyword = str(options.get("keyword", "refund"))

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Flag ``mentions_keyword`` when the answer mentions the keyword."""
        hit = self.keyword in conversation.final_answer().lower()
        return ScoreResult(flags=("mentions_keyword",) if hit else ())


class SyncMethodScorer:
    """A class whose ``score`` is a plain method: it runs in a worker thread."""

    def score(self, conversation: Conversation) -> ScoreResult:
        """Record the thread and score coherence 3."""
        SYNC_THREADS.append(threading.get_ident())
        return ScoreResult(scores={"coherence": 3.0})


class Closing:
    """A scorer holding a resource: ``aclose`` must be called on shutdown."""

    def __init__(self, spec: ScorerSpec) -> None:
        self.label = spec.name

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Say nothing."""
        return ScoreResult()

    async def aclose(self) -> None:
        """Record the close."""
        CLOSED.append(self.label)


def make_scorer(options: Mapping[str, Any]) -> OptionsScorer:
    """A factory function: called once with the options, returns the scorer."""
    return OptionsScorer(options={"keyword": options.get("word", "invoice")})


#: A ready-made scorer object at module level.
READY = OptionsScorer(options={"keyword": "ready"})

NOT_CALLABLE = 42


def returns_junk(conversation: Conversation) -> object:
    """Return something that is neither a ScoreResult nor a mapping of numbers."""
    return ["not", "a", "result"]


def returns_text_scores(conversation: Conversation) -> dict[str, object]:
    """Return a mapping whose values are not numbers."""
    return {"task_completion": "high"}


def two_plain_arguments(conversation: Conversation, other: int) -> dict[str, float]:
    """Want something the loader cannot give."""
    return {}


class NeedsPort:
    """A class wanting a constructor argument that is not spec, config or options."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Say nothing."""
        return ScoreResult()


def failing_factory(options: Mapping[str, Any]) -> OptionsScorer:
    """A factory that rejects its options."""
    raise ValueError("option 'threshold' is required")


async def async_factory(options: Mapping[str, Any]) -> OptionsScorer:
    """An async factory: there is no loop to await it on at build time."""
    return OptionsScorer(options=options)


def escalations(conversation: Conversation) -> dict[str, float]:
    """Score user_feedback from a signal alone: it needs no message text."""
    return {"user_feedback": 0.0 if conversation.signals.get("escalation_requested") else 1.0}


escalations.needs_text = False  # type: ignore[attr-defined]


class ToolLatency:
    """A class-based scorer of tool outcomes only: it says so with ``needs_text``."""

    needs_text = False

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Flag ``many_tools`` past three tool results."""
        tools = sum(message.role == "tool" for message in conversation.messages)
        return ScoreResult(flags=("many_tools",) if tools > 3 else ())
