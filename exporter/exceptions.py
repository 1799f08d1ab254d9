"""Errors raised by the exporter; each carries the data needed to say what and where."""

from __future__ import annotations

from collections.abc import Sequence

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
    (``$.scorers[2].type``) and ``message`` what was expected there. One error can carry
    several problems (``problems``); its text is one ``file: path: message`` line each.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "<config>",
        path: str = "$",
        more: Sequence[ConfigError] = (),
    ) -> None:
        self.source = source
        self.path = path
        self.message = message
        #: Further problems found in the same pass (every schema error, every missing secret).
        self.more = tuple(problem for error in more for problem in error.problems)
        super().__init__("\n".join(p.line for p in self.problems))

    @property
    def problems(self) -> tuple[ConfigError, ...]:
        """Return this problem and every further one, one line of ``str(error)`` each."""
        return (self, *self.more)

    @property
    def line(self) -> str:
        """Return ``file: key path: message`` for this problem alone."""
        return f"{self.source}: {self.path}: {self.message}"

    @classmethod
    def of(cls, problems: Sequence[ConfigError]) -> ConfigError:
        """Return one error carrying every problem in ``problems`` (not empty), in order."""
        first, *rest = problems
        return cls(first.message, source=first.source, path=first.path, more=rest)


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
    """A scorer could not produce a result (bad output from a judge, a broken plugin).

    ``kind`` names the kind of failure in a few words (``HTTP 400``, ``timeout``): the log
    has the first failure of each kind at once, and the rest of a kind throttled.
    """

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or type(self).__name__


class BacktestError(ExporterError):
    """A backtest cannot run: Prometheus unreachable, no data, a period it does not hold."""
