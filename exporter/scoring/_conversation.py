"""Built-in scorers that read the conversation's structure: tools, ending, signals, scores."""

from __future__ import annotations

import math

from exporter.config.model import Config, ScorerSpec
from exporter.model import Conversation
from exporter.scoring._options import NOTHING, ScorerOptions, is_set
from exporter.types import ScoreResult

__all__ = [
    "DEFAULT_NEGATIVE_SIGNALS",
    "FinalAnswer",
    "Passthrough",
    "ToolSuccess",
    "UserFeedback",
    "final_answer",
    "passthrough",
    "tool_success",
    "user_feedback",
]

#: Signals that always count against ``user_feedback``; ``signals`` in the options adds more.
DEFAULT_NEGATIVE_SIGNALS = ("user_thumbs_down", "escalation_requested")

# Roles that frame a conversation rather than take part in it.
_FRAMING_ROLES = frozenset({"system", "developer"})


class ToolSuccess:
    """Score the share of tool results without an error; say nothing when no tool ran."""

    inline = True  # CPU-bound on the input, never waits for I/O
    needs_text = False  # reads tool results and their errors
    __slots__ = ("dimension", "name")

    def __init__(self, *, name: str, dimension: str | None) -> None:
        self.name = name
        self.dimension = dimension

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return the success ratio and ``tool_error`` when any tool failed."""
        total = failed = 0
        for message in conversation.messages:
            if message.role == "tool":
                total += 1
                failed += is_set(message.error)
        # No tool call is not a success: a 1.0 here would dilute the dimension's mean.
        if not total:
            return NOTHING
        flags = ("tool_error",) if failed else ()
        scores = {self.dimension: (total - failed) / total} if self.dimension else {}
        return ScoreResult(scores=scores, flags=flags)


class FinalAnswer:
    """Score 1 when the conversation ends with an assistant message that has text."""

    inline = True  # CPU-bound on the input, never waits for I/O
    __slots__ = ("dimension", "name")

    def __init__(self, *, name: str, dimension: str | None) -> None:
        self.name = name
        self.dimension = dimension

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return 1.0, or 0.0 and ``no_final_answer``."""
        last = next(
            (m for m in reversed(conversation.messages) if m.role not in _FRAMING_ROLES), None
        )
        answered = last is not None and last.role == "assistant" and bool(last.text().strip())
        scores = {self.dimension: 1.0 if answered else 0.0} if self.dimension else {}
        return ScoreResult(scores=scores, flags=() if answered else ("no_final_answer",))


class UserFeedback:
    """Score 0 when any negative signal is set, else 1; flag each signal that is set."""

    inline = True  # CPU-bound on the input, never waits for I/O
    needs_text = False  # reads signals
    __slots__ = ("dimension", "name", "signals")

    def __init__(self, *, name: str, dimension: str | None, signals: tuple[str, ...]) -> None:
        self.name = name
        self.dimension = dimension
        self.signals = signals

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return the feedback score and one flag per negative signal."""
        received = conversation.signals
        flags = tuple(s for s in self.signals if is_set(received.get(s))) if received else ()
        scores = {self.dimension: 0.0 if flags else 1.0} if self.dimension else {}
        return ScoreResult(scores=scores, flags=flags)


class Passthrough:
    """Return the upstream ``scores`` of the listed declared dimensions."""

    inline = True  # CPU-bound on the input, never waits for I/O
    needs_text = False  # reads upstream scores
    __slots__ = ("dimensions", "name")

    def __init__(self, *, name: str, dimensions: frozenset[str]) -> None:
        self.name = name
        self.dimensions = dimensions

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Return the finite upstream scores for the configured dimensions."""
        if not conversation.scores:
            return NOTHING
        # Undeclared names are left out here; the pipeline counts what it ignores.
        scores = {
            name: float(value)
            for name, value in conversation.scores.items()
            if name in self.dimensions and math.isfinite(value)
        }
        return ScoreResult(scores=scores) if scores else NOTHING


def tool_success(spec: ScorerSpec, config: Config) -> ToolSuccess:
    """Build a ``tool_success`` scorer."""
    options = ScorerOptions(spec, config, allowed=())
    return ToolSuccess(name=spec.name, dimension=options.declared("tool_success"))


def final_answer(spec: ScorerSpec, config: Config) -> FinalAnswer:
    """Build a ``final_answer`` scorer."""
    options = ScorerOptions(spec, config, allowed=())
    return FinalAnswer(name=spec.name, dimension=options.declared("final_answer"))


def user_feedback(spec: ScorerSpec, config: Config) -> UserFeedback:
    """Build a ``user_feedback`` scorer; ``signals`` adds negative signals to the defaults."""
    options = ScorerOptions(spec, config, allowed=("signals",))
    signals = tuple(dict.fromkeys((*DEFAULT_NEGATIVE_SIGNALS, *(options.names("signals") or ()))))
    return UserFeedback(
        name=spec.name, dimension=options.declared("user_feedback"), signals=signals
    )


def passthrough(spec: ScorerSpec, config: Config) -> Passthrough:
    """Build a ``passthrough`` scorer for ``dimensions`` (default: every declared one)."""
    options = ScorerOptions(spec, config, allowed=("dimensions",))
    listed = options.names("dimensions")
    if listed is None:
        listed = (spec.dimension,) if spec.dimension else tuple(d.name for d in config.dimensions)
    for index, name in enumerate(listed):
        if config.dimension(name) is None:
            raise options.error(f"dimensions[{index}]", f"{name!r} is not a declared dimension")
    options.declared(None, unit=False)  # checks an explicit `dimension` too
    return Passthrough(name=spec.name, dimensions=frozenset(listed))
