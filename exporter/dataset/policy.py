"""Which scored conversations become dataset records, and the reasons recorded with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config.model import DatasetSelection, Dimension
from exporter.types import Evaluation

__all__ = ["Selection", "SelectionPolicy"]

# Signals are scalars sent by agents; "false" and 0 are how many of them say "no".
_FALSY = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Selection:
    """Why an evaluation was selected, and which dimensions it scored badly in."""

    reasons: tuple[str, ...]
    bad_dimensions: tuple[str, ...]


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSY
    return bool(value)


class SelectionPolicy:
    """Selects an evaluation when a chosen dimension is bad, a chosen flag or signal is set.

    Reasons read ``bad_score:<dimension>``, ``flag:<flag>``, ``signal:<signal>``; any
    ``exclude_flags`` flag vetoes the selection. A bad score that the confirming judge re-scored
    as fine (``evaluation.overturned``) is not bad here: the dataset keeps confirmed failures.
    """

    def __init__(self, *, selection: DatasetSelection, dimensions: Sequence[Dimension]) -> None:
        self._all = {d.name: d for d in dimensions}
        wanted = selection.bad_dimensions
        self._selecting = frozenset(self._all if wanted is None else wanted)
        self._flags = selection.flags
        self._signals = tuple(sorted(selection.signals))
        self._exclude = selection.exclude_flags

    def select(self, evaluation: Evaluation) -> Selection | None:
        """Return why ``evaluation`` belongs in the dataset, or None when it does not."""
        if self._exclude and not self._exclude.isdisjoint(evaluation.flags):
            return None
        overturned = evaluation.overturned
        bad = tuple(
            name
            for name, value in evaluation.scores.items()
            if (dimension := self._all.get(name)) is not None
            and dimension.is_bad(value)
            and name not in overturned
        )
        signals = evaluation.conversation.signals
        reasons = (
            *(f"bad_score:{name}" for name in bad if name in self._selecting),
            *(f"flag:{flag}" for flag in evaluation.flags if flag in self._flags),
            *(f"signal:{name}" for name in self._signals if _truthy(signals.get(name))),
        )
        return Selection(reasons, bad) if reasons else None
