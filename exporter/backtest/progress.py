"""Progress on a terminal: one bar per stage on stderr, nothing when stderr is not a TTY."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol, TextIO

from tqdm import tqdm

__all__ = ["Advance", "Progress", "TerminalProgress"]

Advance = Callable[[float], None]


class Progress(Protocol):
    """Where the backtest reports how far it is."""

    def stage(
        self, name: str, *, total: float, unit: str
    ) -> contextlib.AbstractContextManager[Advance]:
        """Return a context manager for one stage, yielding a function to advance it."""
        ...


class TerminalProgress:
    """tqdm bars on ``stream``, shown only when it is a terminal (``disable=None``)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @contextlib.contextmanager
    def stage(self, name: str, *, total: float, unit: str) -> Iterator[Advance]:
        """Show one bar while the stage runs; remove it afterwards."""
        with tqdm(
            total=total,
            desc=f"{name:<9}",
            unit=unit,
            file=self._stream,
            disable=None,
            leave=False,
            dynamic_ncols=True,
            bar_format="{desc} {bar} {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}]",
        ) as bar:

            def advance(amount: float) -> None:
                bar.update(amount)

            yield advance
