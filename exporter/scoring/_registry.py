"""Scorer types by name, and the functions that build the configured scorers and confirmers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeAlias

from exporter.config.model import Config, ScorerSpec
from exporter.exceptions import ConfigError
from exporter.metrics import Metrics
from exporter.scoring import _answer, _conversation, _plugin
from exporter.scoring.judge import build_confirmers, make_judge_scorer
from exporter.types import Confirmer, Scorer

__all__ = [
    "ScorerFactory",
    "build_scorers",
    "build_scoring",
    "register_scorer_type",
    "scorer_types",
]

#: Builds one scorer from its entry and the whole config. Factories run once at start-up; they
#: raise ``ConfigError`` with a path relative to the entry (``$.max_chars``) for bad options,
#: and acquire connections lazily (in the first ``score``), so a later failing entry leaks none.
ScorerFactory: TypeAlias = Callable[[ScorerSpec, Config], Scorer]

_FACTORIES: dict[str, ScorerFactory] = {
    "tool_success": _conversation.tool_success,
    "final_answer": _conversation.final_answer,
    "user_feedback": _conversation.user_feedback,
    "passthrough": _conversation.passthrough,
    "refusal": _answer.refusal,
    "pii": _answer.pii,
    "json_validity": _answer.json_validity,
    "answer_length": _answer.answer_length,
    "plugin": _plugin.plugin,
    "llm_judge": make_judge_scorer,
}


class _MeteredFactory(Protocol):
    """A factory whose scorer records metrics of its own (the LLM judge: tokens, cost)."""

    def __call__(
        self, spec: ScorerSpec, config: Config, *, metrics: Metrics | None = None
    ) -> Scorer: ...


#: The types whose factory ``build_scorers`` passes the app's metrics.
_METERED: dict[str, _MeteredFactory] = {"llm_judge": make_judge_scorer}


def register_scorer_type(type_name: str, factory: ScorerFactory, *, replace: bool = False) -> None:
    """Make ``type_name`` in a ``scorers`` entry build its scorer with ``factory``."""
    if type_name in _FACTORIES and not replace and _FACTORIES[type_name] is not factory:
        raise ValueError(f"scorer type {type_name!r} is already registered")
    _FACTORIES[type_name] = factory
    _METERED.pop(type_name, None)


def scorer_types() -> tuple[str, ...]:
    """Return the registered scorer type names."""
    return tuple(_FACTORIES)


def build_scorers(config: Config, *, metrics: Metrics | None = None) -> list[Scorer]:
    """Build the configured scorers in order; raise ``ConfigError`` naming ``$.scorers[i]``.

    ``metrics`` reaches the factories that record metrics of their own, the LLM judge's
    (without it they count privately).
    """
    scorers: list[Scorer] = []
    for index, spec in enumerate(config.scorers):
        where = f"$.scorers[{index}]"
        factory = _factory(spec.type, config, where)
        try:
            metered = _METERED.get(spec.type)
            if metered is None:
                scorer = factory(spec, config)
            else:
                scorer = metered(spec, config, metrics=metrics)
        except ConfigError as error:
            # Factories name keys relative to their entry; say where the entry is.
            raise ConfigError(
                error.message, source=config.source, path=where + error.path.removeprefix("$")
            ) from error
        if not isinstance(getattr(scorer, "name", None), str) or not callable(
            getattr(scorer, "score", None)
        ):
            raise ConfigError(
                f"the {spec.type!r} factory returned {type(scorer).__name__}, not a Scorer",
                source=config.source,
                path=where,
            )
        scorers.append(scorer)
    return scorers


def build_scoring(config: Config, *, metrics: Metrics) -> tuple[list[Scorer], list[Confirmer]]:
    """Build the first-tier scorers and the second-tier confirmers of ``config``."""
    return build_scorers(config, metrics=metrics), build_confirmers(config, metrics=metrics)


def _factory(type_name: str, config: Config, where: str) -> ScorerFactory:
    factory = _FACTORIES.get(type_name)
    if factory is None:
        known = ", ".join(sorted(_FACTORIES))
        raise ConfigError(
            f"unknown scorer type {type_name!r} (expected one of {known})",
            source=config.source,
            path=f"{where}.type",
        )
    return factory
