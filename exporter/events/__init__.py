"""Evaluation results sent out as OpenTelemetry ``gen_ai.evaluation.result`` log records.

``build_event_export`` returns the sink for an enabled ``otel_export`` section. The
OpenTelemetry SDK (a LoggerProvider, a BatchLogRecordProcessor, the OTLP/HTTP log exporter)
is imported only then, so a daemon without the section does not pay for it at start-up.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.config.model import Config
from exporter.events._records import EVENT_NAME, event_attributes, score_label
from exporter.metrics import Metrics
from exporter.types import EvaluationSink

__all__ = ["EVENT_NAME", "build_event_export", "event_attributes", "score_label"]


def build_event_export(
    config: Config, *, metrics: Metrics, deadline: Callable[[], float | None]
) -> EvaluationSink | None:
    """Return the sink that exports evaluation events, or None when ``otel_export`` is off.

    ``deadline`` returns the ``time.monotonic()`` by which shutdown must end (the drain's),
    or None before shutdown; the final flush stays within it.
    """
    if not config.otel_export.enabled:
        return None
    # Lazy: the SDK and its HTTP client cost start-up time only to those who export.
    from exporter.events._otel import EventExport

    return EventExport(config, metrics=metrics, deadline=deadline)
