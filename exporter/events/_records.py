"""One score of one evaluation -> the attributes of its ``gen_ai.evaluation.result`` event."""

from __future__ import annotations

from typing import Any

from exporter.config.model import Dimension
from exporter.redaction import Redactor
from exporter.types import Evaluation

__all__ = ["EVENT_NAME", "event_attributes", "score_label"]

#: The OpenTelemetry GenAI semantic conventions' event for an evaluation result.
EVENT_NAME = "gen_ai.evaluation.result"
#: Explanations are a judge's few sentences; anything longer is cut, not sent whole.
MAX_EXPLANATION = 4096


def score_label(dimension: Dimension, value: float) -> str | None:
    """Return ``bad`` or ``good`` from the dimension's ``bad`` threshold; None without one."""
    if dimension.thresholds.bad is None:
        return None
    return "bad" if dimension.is_bad(value) else "good"


def event_attributes(
    evaluation: Evaluation,
    *,
    dimension: Dimension,
    value: float,
    redactor: Redactor | None,
) -> dict[str, Any]:
    """Return the event's attributes: the GenAI conventions' names, then the daemon's own."""
    conversation = evaluation.conversation
    attributes: dict[str, Any] = {
        "gen_ai.evaluation.name": dimension.name,
        "gen_ai.evaluation.score.value": float(value),
    }
    label = score_label(dimension, value)
    if label is not None:
        attributes["gen_ai.evaluation.score.label"] = label
    explanation = evaluation.explanations.get(dimension.name)
    if explanation:
        explanation = explanation[:MAX_EXPLANATION]
        attributes["gen_ai.evaluation.explanation"] = (
            redactor.redact(explanation) if redactor is not None else explanation
        )
    response_id = conversation.metadata.get("gen_ai.response.id")
    if isinstance(response_id, str) and response_id:
        attributes["gen_ai.response.id"] = response_id[:512]
    attributes["gen_ai.agent.name"] = conversation.agent
    attributes["gen_ai.conversation.id"] = conversation.id
    # The `agent` label of the metrics (config-bounded), so a logs query matches a dashboard's.
    attributes["agent_quality.agent"] = evaluation.agent
    scorer = evaluation.sources.get(dimension.name)
    if scorer is not None:
        attributes["agent_quality.scorer"] = scorer
    return attributes
