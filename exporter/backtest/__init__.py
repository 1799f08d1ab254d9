"""Backtest: the alerts a config's rules would have raised on a Prometheus's history.

Beside ``exporter.generate``: it reads the rules ``generate`` writes and evaluates them with
Prometheus' own engine; nothing the daemon runs imports it. docs/backtest.md says how.
"""

from exporter.backtest.client import Connection
from exporter.backtest.evaluate import Episode
from exporter.backtest.report import render, render_compare
from exporter.backtest.run import Request, Result, backtest

__all__ = ["Connection", "Episode", "Request", "Result", "backtest", "render", "render_compare"]
