"""User scorers loaded by dotted path (``package.module:callable``), sync or async.

``path`` names one of:

- a class or factory whose parameters are all named ``spec``, ``config`` or ``options``
  (the ``ScorerSpec``, the whole ``Config``, the entry's ``options`` mapping); it is called
  once at start-up and must return an object with a ``score(conversation)`` method;
- an object with a ``score(conversation)`` method;
- a function ``(conversation)`` returning a ``ScoreResult`` or a mapping of dimension to
  number; it may also ask for ``spec``, ``config`` or ``options`` by name.

Async callables are awaited; sync ones run in a worker thread so they cannot block the event
loop. Every plugin is wrapped so its ``name`` is the configured one (label values come from the
config, never from code we do not control) and its results are checked. A plugin that scores
conversations without any user or assistant text sets ``needs_text = False`` on its object,
class or function (``exporter.types.Scorer``); otherwise it never sees them.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from exporter.config.model import Config, ScorerSpec
from exporter.exceptions import ScorerError
from exporter.model import Conversation
from exporter.scoring._options import ScorerOptions
from exporter.types import ScoreResult, needs_text

__all__ = ["PluginScorer", "plugin"]

_INJECTABLE: Final = frozenset({"spec", "config", "options"})
_PATH: Final = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PluginScorer:
    """A user's scorer under its configured name, with its results checked."""

    __slots__ = ("_call", "_close", "_is_async", "name", "needs_text", "target")

    def __init__(
        self,
        *,
        name: str,
        target: str,
        call: Callable[[Conversation], Any],
        close: Callable[[], Any] | None = None,
        needs_text: bool = True,
    ) -> None:
        self.name = name
        self.target = target
        self.needs_text = needs_text
        self._call = call
        self._close = close
        self._is_async = _is_async(call)

    async def score(self, conversation: Conversation) -> ScoreResult:
        """Run the plugin and return its result as a ``ScoreResult``."""
        if self._is_async:
            result = await self._call(conversation)
        else:
            result = await asyncio.to_thread(self._call, conversation)
            if inspect.isawaitable(result):  # a sync wrapper around a coroutine
                result = await result
        return self._checked(result)

    async def aclose(self) -> None:
        """Close the plugin when it has ``aclose`` (sync or async)."""
        if self._close is not None:
            result = self._close()
            if inspect.isawaitable(result):
                await result

    def _checked(self, result: object) -> ScoreResult:
        if isinstance(result, ScoreResult):
            return result
        if isinstance(result, Mapping):
            scores: dict[str, float] = {}
            for key, value in result.items():
                if not isinstance(key, str) or isinstance(value, bool):
                    raise self._bad(result)
                if not isinstance(value, int | float):
                    raise self._bad(result)
                scores[key] = float(value)
            return ScoreResult(scores=scores)
        raise self._bad(result)

    def _bad(self, result: object) -> ScorerError:
        shown = repr(result)
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        return ScorerError(
            f"plugin {self.target} returned {shown}; expected a ScoreResult "
            "or a mapping of dimension name to number"
        )


def plugin(spec: ScorerSpec, config: Config) -> PluginScorer:
    """Import ``path`` and build the user's scorer; raise ``ConfigError`` naming the cause."""
    options = ScorerOptions(spec, config, allowed=("path", "options"))
    path = options.value("path", (str,))
    if path is None or not _PATH.match(path):
        raise options.error("path", f"expected 'package.module:callable', got {path!r}")
    own = MappingProxyType(dict(options.mapping("options") or {}))
    target = _resolve(options, path)
    inject = {"spec": spec, "config": config, "options": own}
    if _is_factory(options, path, target):
        try:
            target = target(**_wanted(target, inject))
        except Exception as error:
            raise options.error("path", f"{path}(...) raised {_describe(error)}") from error
    return _adapt(options, path, target, inject)


def _resolve(options: ScorerOptions, path: str) -> Any:
    """Import the module and walk the attribute path."""
    module_name, _, attributes = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # Only when the plugin itself is missing; a missing dependency of it needs no hint.
        ours = error.name is not None and f"{module_name}.".startswith(f"{error.name}.")
        hint = " (is it installed, or on PYTHONPATH?)" if ours else ""
        raise options.error("path", f"cannot import {module_name!r}: {error}{hint}") from error
    except Exception as error:
        # A plugin's own bug (SyntaxError, a failing import) surfaces at start-up, not later.
        message = f"importing {module_name!r} raised {_describe(error)}"
        raise options.error("path", message) from error
    walked = module_name
    for attribute in attributes.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise options.error("path", f"{walked!r} has no attribute {attribute!r}") from None
        walked = f"{walked}:{attribute}" if walked == module_name else f"{walked}.{attribute}"
    return target


def _adapt(
    options: ScorerOptions, path: str, target: Any, inject: Mapping[str, Any]
) -> PluginScorer:
    """Wrap a scorer object or a scoring function."""
    name = options.spec.name
    text = needs_text(target)
    score = getattr(target, "score", None)
    if score is not None and callable(score):
        close = getattr(target, "aclose", None)
        return PluginScorer(
            name=name,
            target=path,
            call=score,
            close=close if callable(close) else None,
            needs_text=text,
        )
    if callable(target):
        wanted = _wanted(target, inject)
        if _is_async(target) and wanted:
            target = _bind_async(target, wanted)
        elif wanted:
            target = functools.partial(target, **wanted)
        return PluginScorer(name=name, target=path, call=target, needs_text=text)
    raise options.error(
        "path", f"{path} is a {type(target).__name__}, not a callable or an object with score()"
    )


def _bind_async(
    function: Callable[..., Awaitable[Any]], wanted: Mapping[str, Any]
) -> Callable[[Conversation], Awaitable[Any]]:
    # functools.partial hides a coroutine function from inspect in some versions: say it plainly.
    async def call(conversation: Conversation) -> Any:
        return await function(conversation, **wanted)

    return call


def _is_factory(options: ScorerOptions, path: str, target: Any) -> bool:
    """Say whether ``target`` builds a scorer (a class, or only injectable parameters)."""
    if not callable(target) or (hasattr(target, "score") and not inspect.isclass(target)):
        return False
    parameters = _parameters(target)
    if parameters is None:
        return inspect.isclass(target)
    plain = [p.name for p in parameters if p.name not in _INJECTABLE and _required(p)]
    if inspect.isclass(target):
        if plain:
            raise options.error(
                "path",
                f"{path} needs ({', '.join(plain)}); a scorer class may only ask for "
                "spec, config or options",
            )
        return True
    if len(plain) > 1:
        raise options.error(
            "path",
            f"{path} takes ({', '.join(plain)}); expected (conversation) or a factory "
            "of spec, config or options",
        )
    if plain or not (any(p.name in _INJECTABLE for p in parameters) or not parameters):
        return False
    if _is_async(target):
        raise options.error(
            "path", f"{path} is an async factory; make it sync or take (conversation)"
        )
    return True


def _wanted(target: Any, inject: Mapping[str, Any]) -> dict[str, Any]:
    """Return the injectable arguments that ``target`` names."""
    parameters = _parameters(target) or []
    return {p.name: inject[p.name] for p in parameters if p.name in inject and _keyword(p)}


def _parameters(target: Any) -> list[inspect.Parameter] | None:
    try:
        return list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return None


def _required(parameter: inspect.Parameter) -> bool:
    return parameter.default is inspect.Parameter.empty and parameter.kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _keyword(parameter: inspect.Parameter) -> bool:
    return parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _is_async(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
