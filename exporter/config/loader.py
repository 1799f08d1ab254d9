"""Read YAML, validate it against the shipped JSON Schema, build the frozen ``Config``.

Defaults live in one place, the embedded ``default.yml``: a user file is merged over it
section by section (mappings merge, lists replace), so a two-line config is a whole config.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, cast

import jsonschema
import yaml

from exporter.config.build import build_config, merge
from exporter.config.model import (
    Config,
)
from exporter.exceptions import ConfigError

__all__ = ["DEFAULT_SOURCE", "config_schema", "default_document", "load_config", "parse_config"]

DEFAULT_SOURCE = "<embedded default.yml>"


@functools.cache
def config_schema() -> dict[str, Any]:
    """Return the shipped JSON Schema of the configuration file."""
    text = resources.files("exporter.config").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(config_schema())


def default_document() -> dict[str, Any]:
    """Return the embedded default configuration as parsed YAML (a fresh copy)."""
    text = resources.files("exporter.config").joinpath("default.yml").read_text("utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path``, or the embedded default when ``path`` is None; raise ``ConfigError``."""
    if path is None:
        return parse_config(default_document(), source=DEFAULT_SOURCE)
    source = os.fspath(path)
    try:
        text = Path(source).read_text("utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the file: {error.strerror}", source=source) from error
    except UnicodeDecodeError as error:
        raise ConfigError("the file is not UTF-8 text", source=source) from error
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"invalid YAML{where}: {problem}", source=source) from error
    if document is None:
        document = {}
    return parse_config(document, source=source)


def parse_config(document: Any, *, source: str = "<config>") -> Config:
    """Validate a parsed document and build the ``Config``; raise ``ConfigError``."""
    _validate(document, source)
    merged = merge(default_document(), document)
    digest = hashlib.sha256(json.dumps(merged, sort_keys=True).encode()).hexdigest()[:16]
    return build_config(merged, source=source, digest=digest)


def _validate(document: Any, source: str) -> None:
    """Raise one ``ConfigError`` naming every schema violation in ``document``, in key order."""
    found = [
        problem for error in _validator().iter_errors(document) for problem in _describe(error)
    ]
    found.sort(key=lambda problem: _sort_key(problem[0]))
    if found:
        raise ConfigError.of(
            [
                ConfigError(message, source=source, path=_json_path(where))
                for where, message in found
            ]
        )


_Where = tuple[str | int, ...]


def _sort_key(where: _Where) -> list[tuple[int, str]]:
    # Keys and list indexes interleave; compare indexes as numbers so [10] follows [9].
    return [(0, f"{key:020d}") if isinstance(key, int) else (1, key) for key in where]


def _json_path(where: _Where) -> str:
    """Return ``$.scorers[2].type`` for ``where``, as jsonschema writes its own paths."""
    return jsonschema.ValidationError("", path=where).json_path


def _describe(error: jsonschema.ValidationError) -> list[tuple[_Where, str]]:
    """Say what was expected where, in words a config author reads."""
    # best_match descends into anyOf/oneOf to the branch that explains the error best.
    error = jsonschema.exceptions.best_match([error]) or error
    where, expected = tuple(error.absolute_path), cast(Any, error.validator_value)
    match error.validator:
        case "additionalProperties":
            return _unknown_keys(error, where)
        case "pattern":
            schema = error.schema if isinstance(error.schema, Mapping) else {}
            form = schema.get("description") or f"the pattern {expected}"
            message = f"{error.instance!r} is not {form}"
        case "enum":
            message = (
                f"expected one of {', '.join(map(json.dumps, expected))}; got {error.instance!r}"
            )
        case "type":
            kinds = expected if isinstance(expected, str) else " or ".join(expected)
            message = f"expected {kinds}, got {type(error.instance).__name__} {error.instance!r}"
        case "anyOf" | "oneOf" if error.context:
            message = _alternatives(error)
        case _:
            message = error.message
    return [(where, message)]


def _unknown_keys(error: jsonschema.ValidationError, where: _Where) -> list[tuple[_Where, str]]:
    """Name each unknown key at its own path, with the closest known key when one is close."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    known = [key for key, allowed in schema.get("properties", {}).items() if allowed is not False]
    patterns = schema.get("patternProperties", {})
    instance = error.instance if isinstance(error.instance, Mapping) else {}
    result: list[tuple[_Where, str]] = []
    for key in map(str, instance):
        if key in known or any(re.search(pattern, key) for pattern in patterns):
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        result.append(
            ((*where, key), f"unknown key {key!r}{hint} (known keys: {', '.join(known)})")
        )
    return result


def _alternatives(error: jsonschema.ValidationError) -> str:
    """Say which forms an ``anyOf``/``oneOf`` accepts: ``a duration such as 30s, or null``."""
    forms: dict[Any, str] = {}
    for branch in error.context or ():
        schema = branch.schema if isinstance(branch.schema, Mapping) else {}
        kind = schema.get("type", "something else")
        form = schema.get("description") or (kind if isinstance(kind, str) else " or ".join(kind))
        if "const" in schema:
            form = json.dumps(schema["const"])
        forms.setdefault(branch.relative_schema_path[0], form)
    return f"expected {', or '.join(forms.values())}; got {error.instance!r}"
