"""agent-quality-exporter: watch the quality of AI agents in production with Prometheus."""

from exporter._version import __version__

__all__ = ["__version__"]
