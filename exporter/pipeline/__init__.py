"""The scoring pipeline: a bounded queue, workers, scorers with timeouts, metrics, sinks."""

from exporter.pipeline._pipeline import Pipeline

__all__ = ["Pipeline"]
