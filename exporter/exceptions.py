"""Errors raised by the exporter; each carries the data needed to say what and where."""

from __future__ import annotations

__all__ = [
    "BacktestError",
    "ConfigError",
    "ExporterError",
    "GenerateError",
    "InvalidPayload",
    "PayloadTooLarge",
    "ScorerError",
]


class ExporterError(Exception):
    """Base class of every error the exporter raises on purpose."""


class ConfigError(ExporterError):
    """A configuration file is unreadable or does not match the schema.

    ``source`` names the file, ``path`` the JSON path of the offending key
    (``$.scorers[2].type``) and ``message`` what was expected there.
    """

    def __init__(self, message: str, *, source: str = "<config>", path: str = "$") -> None:
        self.source = source
        self.path = path
        self.message = message
        super().__init__(f"{source}: {path}: {message}")


class InvalidPayload(ExporterError):
    """An ingested document is malformed; ``where`` locates it (``$[3].messages[0].role``)."""

    def __init__(self, message: str, *, where: str = "$") -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


class PayloadTooLarge(InvalidPayload):
    """An ingested document is valid but over a configured limit (batch length)."""


class GenerateError(ExporterError):
    """Rules, routing or dashboards cannot be generated from a config (nothing to alert on)."""


class ScorerError(ExporterError):
    """A scorer could not produce a result (bad output from a judge, a broken plugin)."""


class BacktestError(ExporterError):
    """A backtest cannot run: Prometheus unreachable, no data, a period it does not hold."""
