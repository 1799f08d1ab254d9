"""The extension points: small Protocols that built-ins implement as a user's plugin would."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from exporter.model import Conversation

__all__ = [
    "Closeable",
    "Confirmer",
    "Evaluation",
    "EvaluationSink",
    "ScoreResult",
    "Scorer",
    "needs_text",
]


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """What one scorer says about one conversation.

    ``scores`` maps dimension names to values in the dimension's scale; ``flags`` are short
    snake_case names (``refusal``, ``pii_email``); ``explanations`` hold a judge's reasons per
    dimension, kept for the feedback dataset, never exported as labels.
    """

    scores: Mapping[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    explanations: Mapping[str, str] = field(default_factory=_empty)


@runtime_checkable
class Scorer(Protocol):
    """Scores a conversation. Built-ins and plugins alike.

    A scorer may set a class attribute ``inline = True`` to say that ``score`` does CPU work
    bounded by the input and does not wait for I/O (the built-in checks). The pipeline then
    runs it in the worker's own task, without a task or timer of its own; every other scorer
    (judges, plugins) runs concurrently under the per-scorer timeout.

    A scorer may set ``needs_text = False`` to say that it can score a conversation without
    any user or assistant text: tool outcomes, signals, upstream scores (``tool_success``,
    ``user_feedback``, ``passthrough``). Such conversations (content capture off in the
    agent's instrumentation) go only to those scorers, and are dropped as ``no_content`` when
    there is none; a scorer without the attribute needs text (``needs_text()`` reads it).
    """

    name: str

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return scores and flags for ``conversation``; raise to count an error."""
        ...


def needs_text(scorer: object) -> bool:
    """Say whether ``scorer`` needs user or assistant text (true unless it says otherwise)."""
    return getattr(scorer, "needs_text", True) is not False


@runtime_checkable
class Closeable(Protocol):
    """A scorer or sink holding resources (connection pools, files) to release on shutdown."""

    async def aclose(self) -> None:
        """Release resources; called once, after the last ``score``/``handle``."""
        ...


@dataclass(slots=True)
class Evaluation:
    """Everything the pipeline learned about one sampled conversation."""

    conversation: Conversation
    agent: str
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    explanations: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: Dimensions scored bad by the first tier that the confirming judge re-scored as fine.
    overturned: set[str] = field(default_factory=set)
    #: Scores a confirmer gave on re-scoring (the tier-2 judge's), by dimension.
    confirmed: dict[str, float] = field(default_factory=dict)

    @property
    def final_scores(self) -> dict[str, float]:
        """Return the scores the metrics record: a confirmer's where it re-scored, else ``scores``.

        A tier-2 judge that re-scores a bad first score as fine thereby changes what the
        histogram (and so every alert) sees; ``scores`` keeps the first tier's.
        """
        if not self.confirmed:
            return self.scores
        return {name: self.confirmed.get(name, value) for name, value in self.scores.items()}


class EvaluationSink(Protocol):
    """Receives each finished evaluation (the feedback dataset writer is one)."""

    async def handle(self, evaluation: Evaluation) -> None:
        """Take one evaluation; must not block the event loop."""
        ...


class Confirmer(Protocol):
    """A second opinion on evaluations that look bad (the tier-2 LLM judge is one).

    The pipeline calls ``confirm`` after every first-tier scorer has finished; the confirmer
    decides from the evaluation (bad scores, flags) whether it has anything to do. Scores in
    its result re-score dimensions the first tier scored (into ``Evaluation.confirmed``): the
    metrics record them instead of the first tier's; flags and explanations are added.
    """

    name: str

    async def confirm(self, evaluation: Evaluation) -> ScoreResult | None:
        """Return extra scores/flags for ``evaluation``, or None when it needs no confirming."""
        ...
