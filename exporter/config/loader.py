"""Read YAML, validate it against the shipped JSON Schema, build the frozen ``Config``.

Defaults live in one place, the embedded ``default.yml``: a user file is merged over it
section by section (mappings merge, lists replace), so a two-line config is a whole config.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

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
    error = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if error is not None:
        raise ConfigError(_describe(error), source=source, path=error.json_path)


def _describe(error: jsonschema.ValidationError) -> str:
    """Say what was expected at the error's path, in words a config author reads."""
    expected: Any = error.validator_value
    match error.validator:
        case "additionalProperties":
            return f"unknown key: {error.message}"
        case "pattern":
            schema = error.schema if isinstance(error.schema, Mapping) else {}
            form = schema.get("description") or f"the pattern {expected}"
            return f"{error.instance!r} is not {form}"
        case "enum":
            return f"expected one of {', '.join(map(json.dumps, expected))}; got {error.instance!r}"
        case "type":
            kinds = expected if isinstance(expected, str) else " or ".join(expected)
            return f"expected {kinds}, got {type(error.instance).__name__} {error.instance!r}"
        case _:
            return f"{error.message}"
