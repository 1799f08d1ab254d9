"""Build judges from the config: the ``llm_judge`` scorer factory and the confirmers."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry

from exporter.config.model import Config, ScorerSpec
from exporter.metrics import Metrics
from exporter.redaction import Redactor
from exporter.scoring.judge._client import JudgeClient
from exporter.scoring.judge._confirm import JudgeConfirmer
from exporter.scoring.judge._grader import Grader
from exporter.scoring.judge._rubrics import Rubric, rubric_for
from exporter.scoring.judge._scorer import JudgeScorer
from exporter.types import Confirmer

__all__ = [
    "build_confirmers",
    "fresh_clients",
    "judge_client",
    "judge_clients",
    "make_judge_scorer",
]

# One client per judge name and app (keyed by the app's Metrics): scorers and the confirmer
# naming the same judge share its pool, concurrency cap, breaker and budget.
_CLIENTS: weakref.WeakKeyDictionary[Metrics, dict[str, JudgeClient]] = weakref.WeakKeyDictionary()


def judge_client(config: Config, name: str, *, metrics: Metrics) -> JudgeClient:
    """Return the app's client for the judge called ``name``, creating it once."""
    clients = _CLIENTS.setdefault(metrics, {})
    if name not in clients:
        clients[name] = JudgeClient(config=config.judges[name], metrics=metrics)
    return clients[name]


def judge_clients(metrics: Metrics) -> dict[str, JudgeClient]:
    """Return the clients of the app's judges in use now (after a reload: the new ones)."""
    return dict(_CLIENTS.get(metrics, {}))


@contextlib.contextmanager
def fresh_clients(metrics: Metrics) -> Iterator[None]:
    """Build judges with new clients inside the block (a config reload).

    Parts still scoring with the old clients close them when they retire, so new parts must
    not share them. Today's spend carries over to the new client of the same judge, so a
    reload never resets a daily budget. If the block fails, the old clients stay in use.
    """
    previous = _CLIENTS.pop(metrics, {})
    try:
        yield
    except BaseException:
        _CLIENTS[metrics] = previous  # nothing new was used yet: no pool to close
        raise
    for name, client in _CLIENTS.get(metrics, {}).items():
        if name in previous:
            client.budget.spend(previous[name].budget.spent)


def _redactor(config: Config) -> Callable[[str], str]:
    # The dataset's redaction settings say what this operator counts as personal data.
    redaction = config.dataset.redaction
    return Redactor(kinds=redaction.kinds, patterns=redaction.patterns).redact


def _grader(config: Config, judge: str, rubrics: Sequence[Rubric], metrics: Metrics) -> Grader:
    return Grader(
        client=judge_client(config, judge, metrics=metrics),
        rubrics={r.dimension: r for r in rubrics},
        metrics=metrics,
        redact=_redactor(config),
    )


def make_judge_scorer(
    spec: ScorerSpec, config: Config, *, metrics: Metrics | None = None
) -> JudgeScorer:
    """Build the ``llm_judge`` scorer of ``spec``; ``ConfigError`` paths are entry-relative."""
    if metrics is None:
        metrics = Metrics(config, CollectorRegistry())  # built standalone: counts go nowhere
    listed = spec.options.get("dimensions")
    if listed:
        pairs = [(d, f"$.dimensions[{j}]") for j, d in enumerate(listed)]
    else:
        pairs = [(str(spec.dimension), "$.dimension")]
    rubrics = [rubric_for(config, dimension, path=path) for dimension, path in pairs]
    return JudgeScorer(
        name=spec.name,
        grader=_grader(config, spec.options["judge"], rubrics, metrics),
        dimensions=[r.dimension for r in rubrics],
        metrics=metrics,
    )


def build_confirmers(config: Config, *, metrics: Metrics) -> list[Confirmer]:
    """Return the configured second-tier judge as a ``Confirmer`` list (empty when off)."""
    confirmation = config.confirmation
    if confirmation.judge is None:
        return []
    rubrics = [
        rubric_for(config, dimension, path=f"$.confirmation.dimensions[{j}]")
        for j, dimension in enumerate(confirmation.dimensions)
    ]
    dimensions = {}
    for dimension in confirmation.dimensions:
        declared = config.dimension(dimension)
        assert declared is not None  # the loader checked every confirmation dimension
        dimensions[dimension] = declared
    confirmer = JudgeConfirmer(
        grader=_grader(config, confirmation.judge, rubrics, metrics),
        dimensions=dimensions,
        flags=confirmation.flags,
        metrics=metrics,
        # The pipeline cancels a confirmer at scorer_timeout; stop a little earlier, and count.
        deadline=config.pipeline.scorer_timeout * 0.9,
    )
    return [confirmer]
