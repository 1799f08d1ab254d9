"""Backtest: the alerts a config's rules would have raised on a Prometheus's history.

Beside ``exporter.generate``: it reads the rules ``generate`` writes and evaluates them with
Prometheus' own engine; nothing the daemon runs imports it. docs/backtest.md says how.
Public names load on first use: the command line registers ``backtest`` for every command,
and ``agent-quality-exporter run`` should not load this machinery.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Connection",
    "Episode",
    "Request",
    "Result",
    "backtest",
    "render",
    "render_compare",
]

_WHERE = {
    "Connection": "exporter.backtest.request",
    "Request": "exporter.backtest.request",
    "Episode": "exporter.backtest.evaluate",
    "Result": "exporter.backtest.run",
    "backtest": "exporter.backtest.run",
    "render": "exporter.backtest.report",
    "render_compare": "exporter.backtest.report",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
