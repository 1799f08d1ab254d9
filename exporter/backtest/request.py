"""What to backtest against: the server and how to reach it, the period, the scope.

Plain data, light to import: the command line builds it for every invocation's parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Connection", "Request"]


@dataclass(frozen=True, slots=True)
class Connection:
    """Where a Prometheus is and how to authenticate to it."""

    url: str
    bearer_token_file: Path | None = None
    basic_auth_username: str | None = None
    basic_auth_password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 120.0

    def base(self) -> str:
        """Return the URL without a trailing slash."""
        return self.url.rstrip("/")


@dataclass(frozen=True, slots=True)
class Request:
    """What to backtest against: the server, the period, the agents and dimensions."""

    connection: Connection
    since: float
    until: float
    agents: tuple[str, ...] = ()
    dimensions: tuple[str, ...] = ()
    #: Seconds between rule evaluations; None: the rules' own, else the server's global.
    interval: float | None = None
