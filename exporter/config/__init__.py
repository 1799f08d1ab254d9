"""Configuration: YAML, validated by a shipped JSON Schema, into a frozen typed object."""

from exporter.config.duration import format_duration, parse_duration
from exporter.config.loader import (
    DEFAULT_SOURCE,
    config_schema,
    default_document,
    load_config,
    parse_config,
)
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
)
from exporter.config.secrets import Secret, needed_secrets, resolve_secrets

__all__ = [
    "DEFAULT_SOURCE",
    "OTHER_AGENT",
    "AuthConfig",
    "Config",
    "Dimension",
    "PipelineConfig",
    "SamplingConfig",
    "ScorerSpec",
    "Secret",
    "ServerConfig",
    "Thresholds",
    "config_schema",
    "default_document",
    "format_duration",
    "load_config",
    "needed_secrets",
    "parse_config",
    "parse_duration",
    "resolve_secrets",
]
