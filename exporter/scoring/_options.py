"""What every scorer factory needs: typed option reading with errors that name the key.

Factories see one ``ScorerSpec`` and never its index, so errors carry paths relative to the
scorer's entry (``$.max_chars``); ``build_scorers`` rebases them onto ``$.scorers[i]``.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar

from exporter.config.model import Config, ScorerSpec
from exporter.exceptions import ConfigError
from exporter.types import ScoreResult

__all__ = ["NOTHING", "ScorerOptions", "is_set", "off_loop"]

T = TypeVar("T")

#: The result of a scorer with nothing to say; immutable, so one instance serves every call.
NOTHING: Final = ScoreResult(scores=MappingProxyType({}))

# Texts longer than this are scanned in a worker thread so a huge answer cannot stall the loop;
# below it the thread hop (~50 us) costs more than the scan.
_OFF_LOOP_CHARS: Final = 64 * 1024

_FALSE_WORDS: Final = frozenset({"", "0", "false", "no", "off", "none", "null"})
_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def is_set(value: object) -> bool:
    """Say whether a signal or error value means "yes" (``True``, ``1``, ``"timeout"``).

    Upstream senders write booleans as strings often enough (``"false"``, ``"0"``) that plain
    truthiness would raise false alarms.
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


async def off_loop(function: Callable[[str], T], text: str) -> T:
    """Run ``function(text)`` inline for ordinary texts, in a worker thread for huge ones."""
    if len(text) > _OFF_LOOP_CHARS:
        return await asyncio.to_thread(function, text)
    return function(text)


class ScorerOptions:
    """Reads one scorer's options, raising ``ConfigError`` that names the offending key."""

    def __init__(self, spec: ScorerSpec, config: Config, *, allowed: Collection[str]) -> None:
        self.spec = spec
        self.config = config
        unknown = sorted(set(spec.options) - set(allowed))
        if unknown:
            expected = ", ".join(sorted(allowed)) or "none"
            raise self.error(unknown[0], f"unknown option for {spec.type!r} (expected: {expected})")

    def error(self, key: str | None, message: str) -> ConfigError:
        """Return a ``ConfigError`` about ``key`` (``None``: the whole entry)."""
        path = "$" if key is None else f"$.{key}"
        return ConfigError(message, source=self.config.source, path=path)

    def value(self, key: str, kinds: tuple[type, ...]) -> Any:
        """Return option ``key`` (``None`` when absent) after checking it is one of ``kinds``."""
        value = self.spec.options.get(key)
        if value is None:
            return None
        # bool is an int subclass; a `true` where a number belongs is a mistake worth naming.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.error(key, f"expected {_kind_name(kinds)}, got {value!r}")
        return value

    def integer(self, key: str, *, minimum: int = 0) -> int | None:
        """Return an optional integer option of at least ``minimum``."""
        value: int | None = self.value(key, (int,))
        if value is not None and value < minimum:
            raise self.error(key, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        """Return an optional list of strings."""
        value = self.value(key, (list, tuple))
        if value is None:
            return None
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{index}]", f"expected a string, got {item!r}")
        return tuple(value)

    def names(self, key: str) -> tuple[str, ...] | None:
        """Return an optional list of snake_case names (they become flag labels)."""
        value = self.strings(key)
        for index, item in enumerate(value or ()):
            if not _NAME.match(item):
                raise self.error(f"{key}[{index}]", f"{item!r} is not a snake_case name")
        return value

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        """Return an optional mapping option."""
        value: Mapping[str, Any] | None = self.value(key, (Mapping,))
        return value

    def declared(self, default: str | None, *, unit: bool = True) -> str | None:
        """Return the dimension this scorer scores, or ``None`` when it is not declared.

        A built-in whose dimension the config does not declare only raises flags. ``unit``
        scorers score 0 to 1, so their dimension's scale must hold both ends: the pipeline
        would drop every off-scale score, silently.
        """
        name = self.spec.dimension or default
        dimension = None if name is None else self.config.dimension(name)
        if dimension is None:
            if self.spec.dimension is not None:
                raise self.error("dimension", f"{name!r} is not a declared dimension")
            return None
        if unit and not dimension.scale_min <= 0 < 1 <= dimension.scale_max:
            where = "dimension" if self.spec.dimension else None
            raise self.error(
                where,
                f"{self.spec.type} scores 0 to 1, outside dimension {name!r}'s scale "
                f"[{dimension.scale_min:g}, {dimension.scale_max:g}]",
            )
        return name


def _kind_name(kinds: tuple[type, ...]) -> str:
    words = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        tuple: "a list",
        Mapping: "a mapping",
    }
    return " or ".join(dict.fromkeys(words.get(k, k.__name__) for k in kinds))
