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
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

from exporter.config.duration import parse_duration
from exporter.config.model import (
    OTHER_AGENT,
    AuthConfig,
    Config,
    Dimension,
    PipelineConfig,
    SamplingConfig,
    ScorerSpec,
    ServerConfig,
    Thresholds,
    default_buckets,
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
    merged = _merge(default_document(), document)
    digest = hashlib.sha256(json.dumps(merged, sort_keys=True).encode()).hexdigest()[:16]
    return _Builder(merged, source).build(digest)


def _validate(document: Any, source: str) -> None:
    error = jsonschema.exceptions.best_match(_validator().iter_errors(document))
    if error is not None:
        raise ConfigError(_describe(error), source=source, path=error.json_path)


def _describe(error: jsonschema.ValidationError) -> str:
    """Say what was expected at the error's path, in words a config author reads."""
    expected = error.validator_value
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


def _merge(base: Any, override: Any) -> Any:
    """Merge mappings recursively; anything else in ``override`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return override


class _Builder:
    """Turns a validated, merged document into ``Config``, with the semantic checks."""

    def __init__(self, document: dict[str, Any], source: str) -> None:
        self.doc = document
        self.source = source

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, path=path)

    def build(self, digest: str) -> Config:
        dimensions = self.dimensions()
        return Config(
            server=self.server(),
            agents=self.agents(),
            sampling=self.sampling(),
            pipeline=self.pipeline(),
            dimensions=dimensions,
            scorers=self.scorers({d.name for d in dimensions}),
            source=self.source,
            digest=digest,
        )

    def server(self) -> ServerConfig:
        server = self.doc["server"]
        host, _, port = server["listen_address"].rpartition(":")
        if not 0 <= int(port) <= 65535:
            raise self.fail("$.server.listen_address", f"port {port} is out of range 0-65535")
        limits, auth = server["limits"], server["auth"]
        return ServerConfig(
            host=host.strip("[]"),
            port=int(port),
            auth=AuthConfig(
                bearer_token=self.bearer_token(auth),
                protect_metrics=bool(auth.get("protect_metrics", False)),
            ),
            max_body_bytes=limits["max_body_bytes"],
            max_batch_items=limits["max_batch_items"],
        )

    def bearer_token(self, auth: Mapping[str, Any]) -> str | None:
        env, file = auth.get("bearer_token_env"), auth.get("bearer_token_file")
        if env and file:
            raise self.fail("$.server.auth", "set bearer_token_env or bearer_token_file, not both")
        if env:
            token = os.environ.get(env)
            if not token:
                raise self.fail(
                    "$.server.auth.bearer_token_env", f"environment variable {env} is unset or empty"
                )
            return token
        if file:
            try:
                token = Path(file).read_text("utf-8").strip()
            except OSError as error:
                raise self.fail(
                    "$.server.auth.bearer_token_file", f"cannot read {file}: {error.strerror}"
                ) from error
            if not token:
                raise self.fail("$.server.auth.bearer_token_file", f"{file} is empty")
            return token
        return None

    def agents(self) -> tuple[str, ...]:
        agents = tuple(self.doc.get("agents") or ())
        if OTHER_AGENT in agents:
            index = agents.index(OTHER_AGENT)
            raise self.fail(f"$.agents[{index}]", f"{OTHER_AGENT!r} is reserved for unlisted agents")
        return agents

    def sampling(self) -> SamplingConfig:
        s = self.doc["sampling"]
        triggers, budget, late = s["boost_triggers"], s["daily_budget"], s["late_signals"]
        if s["boost_rate"] < s["base_rate"]:
            raise self.fail("$.sampling.boost_rate", "must be at least base_rate")
        maximum = budget.get("max_samples")
        if maximum is not None and budget["min_samples"] > maximum:
            raise self.fail("$.sampling.daily_budget.min_samples", "must not exceed max_samples")
        return SamplingConfig(
            base_rate=float(s["base_rate"]),
            boost_rate=float(s["boost_rate"]),
            trigger_signals=frozenset(triggers.get("signals") or ()),
            trigger_tool_error=bool(triggers.get("tool_error", False)),
            trigger_min_total_tokens=triggers.get("min_total_tokens"),
            min_daily_samples=budget["min_samples"],
            max_daily_samples=maximum,
            late_max_conversations=late["max_conversations"],
            late_max_bytes=late["max_bytes"],
            late_max_age=parse_duration(late["max_age"]),
        )

    def pipeline(self) -> PipelineConfig:
        p = self.doc["pipeline"]
        return PipelineConfig(
            queue_size=p["queue_size"],
            workers=p["workers"],
            scorer_timeout=parse_duration(p["scorer_timeout"]),
            drain_grace_period=parse_duration(p["drain_grace_period"]),
        )

    def dimensions(self) -> tuple[Dimension, ...]:
        seen: set[str] = set()
        result = []
        for index, item in enumerate(self.doc["dimensions"]):
            path = f"$.dimensions[{index}]"
            if item["name"] in seen:
                raise self.fail(f"{path}.name", f"dimension {item['name']!r} is declared twice")
            seen.add(item["name"])
            result.append(self.dimension(path, item))
        return tuple(result)

    def dimension(self, path: str, item: Mapping[str, Any]) -> Dimension:
        low, high = float(item["scale"]["min"]), float(item["scale"]["max"])
        if not low < high:
            raise self.fail(f"{path}.scale", f"min ({low:g}) must be below max ({high:g})")
        raw = item.get("thresholds") or {}
        thresholds = Thresholds(**{k: None if v is None else float(v) for k, v in raw.items()})
        for key, value in raw.items():
            if value is not None and not low <= value <= high:
                raise self.fail(
                    f"{path}.thresholds.{key}", f"{value:g} is outside the scale [{low:g}, {high:g}]"
                )
        extra = tuple(float(b) for b in item.get("buckets") or ())
        return Dimension(
            name=item["name"],
            description=item.get("description", ""),
            scale_min=low,
            scale_max=high,
            higher_is_better=bool(item.get("higher_is_better", True)),
            thresholds=thresholds,
            buckets=default_buckets(low, high, thresholds, extra),
        )

    def scorers(self, dimensions: set[str]) -> tuple[ScorerSpec, ...]:
        seen: set[str] = set()
        result = []
        for index, item in enumerate(self.doc.get("scorers") or ()):
            path = f"$.scorers[{index}]"
            name = item.get("name") or item["type"]
            if name in seen:
                raise self.fail(f"{path}.name", f"scorer name {name!r} is used twice; set `name`")
            seen.add(name)
            dimension = item.get("dimension")
            if dimension is not None and dimension not in dimensions:
                raise self.fail(f"{path}.dimension", f"{dimension!r} is not a declared dimension")
            for j, listed in enumerate(item.get("dimensions") or ()):
                if listed not in dimensions:
                    raise self.fail(
                        f"{path}.dimensions[{j}]", f"{listed!r} is not a declared dimension"
                    )
            options = {
                k: v for k, v in item.items() if k not in {"type", "name", "dimension", "timeout"}
            }
            timeout = item.get("timeout")
            result.append(
                ScorerSpec(
                    type=item["type"],
                    name=name,
                    dimension=dimension,
                    timeout=None if timeout is None else parse_duration(timeout),
                    options=MappingProxyType(options),
                )
            )
        return tuple(result)
