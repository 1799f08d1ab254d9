"""The daemon's Prometheus metrics: the definitions and the collectors behind them."""

from exporter.metrics._collectors import (
    CallbackGauges,
    HistogramSeries,
    LoopChild,
    LoopCounter,
    ScoreHistograms,
    exemplar_labels,
)
from exporter.metrics._exposition import ExporterRegistry, compressed, render
from exporter.metrics._metrics import (
    DATASET_DROP_REASONS,
    DATASET_ERROR_REASONS,
    EVENT_OUTCOMES,
    HTTP_ERROR_REASONS,
    JUDGE_VERDICTS,
    MAX_FLAG_VALUES,
    OTLP_DROP_REASONS,
    OTLP_LOG_OUTCOMES,
    OTLP_SPAN_OUTCOMES,
    OTLP_TRIGGERS,
    Metrics,
)

__all__ = [
    "DATASET_DROP_REASONS",
    "DATASET_ERROR_REASONS",
    "EVENT_OUTCOMES",
    "HTTP_ERROR_REASONS",
    "JUDGE_VERDICTS",
    "MAX_FLAG_VALUES",
    "OTLP_DROP_REASONS",
    "OTLP_LOG_OUTCOMES",
    "OTLP_SPAN_OUTCOMES",
    "OTLP_TRIGGERS",
    "CallbackGauges",
    "ExporterRegistry",
    "HistogramSeries",
    "LoopChild",
    "LoopCounter",
    "Metrics",
    "ScoreHistograms",
    "compressed",
    "exemplar_labels",
    "render",
]
