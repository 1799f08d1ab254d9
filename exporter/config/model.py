"""The frozen, typed configuration the rest of the code reads."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from exporter.config.alerting import AlertingConfig, DimensionAlerting

__all__ = [
    "OTHER_AGENT",
    "AuthConfig",
    "Config",
    "ConfirmationConfig",
    "DatasetConfig",
    "DatasetSelection",
    "Dimension",
    "GrafanaConfig",
    "JudgeConfig",
    "OtlpConfig",
    "PipelineConfig",
    "Price",
    "RedactionConfig",
    "SamplingConfig",
    "ScorerSpec",
    "ServerConfig",
    "Thresholds",
    "TlsConfig",
    "default_buckets",
]

#: The label value of every agent that is not in the configured allow-list.
OTHER_AGENT = "other"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per-dimension levels: ``bad`` for one conversation, ``warning``/``critical`` for the mean."""

    bad: float | None = None
    warning: float | None = None
    critical: float | None = None

    def values(self) -> tuple[float, ...]:
        """Return the configured levels."""
        return tuple(v for v in (self.bad, self.warning, self.critical) if v is not None)


@dataclass(frozen=True, slots=True)
class Dimension:
    """A quality dimension: its scale, direction, thresholds and histogram buckets."""

    name: str
    scale_min: float
    scale_max: float
    higher_is_better: bool = True
    thresholds: Thresholds = Thresholds()
    description: str = ""
    buckets: tuple[float, ...] = ()
    alerting: DimensionAlerting = field(default_factory=DimensionAlerting)

    def is_bad(self, score: float) -> bool:
        """Say whether one score is past the ``bad`` threshold.

        At or below it when higher is better, above it otherwise: exactly what the histogram
        bucket ``le=bad`` lets the generated rules count.
        """
        bad = self.thresholds.bad
        if bad is None:
            return False
        return score <= bad if self.higher_is_better else score > bad

    def clamp(self, score: float) -> float:
        """Return ``score`` limited to the dimension's scale."""
        return min(max(score, self.scale_min), self.scale_max)


@dataclass(frozen=True, slots=True)
class ScorerSpec:
    """One configured scorer: its type, unique name, dimension and type-specific options."""

    type: str
    name: str
    dimension: str | None = None
    timeout: float | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Bearer-token protection of the ingest endpoints (and optionally ``/metrics``).

    The config names where the token is (``bearer_token_env`` or ``bearer_token_file``);
    ``bearer_token`` is read from there when the daemon starts (exporter/config/secrets.py),
    so commands that never serve (``generate``, ``check-config``) need no secret.
    """

    bearer_token: str | None = field(default=None, repr=False)
    protect_metrics: bool = False
    bearer_token_env: str | None = None
    bearer_token_file: str | None = None

    @property
    def enabled(self) -> bool:
        """Return whether the config asks for a bearer token."""
        return bool(self.bearer_token_env or self.bearer_token_file)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Certificate and key for HTTPS; absent means plain HTTP."""

    cert_file: str
    key_file: str


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The HTTP listener and its limits."""

    host: str
    port: int
    auth: AuthConfig
    max_body_bytes: int
    max_batch_items: int
    tls: TlsConfig | None = None


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """Rates, boost triggers, daily budgets and the late-signal buffer."""

    base_rate: float
    boost_rate: float
    trigger_signals: frozenset[str]
    trigger_tool_error: bool
    trigger_min_total_tokens: int | None
    min_daily_samples: int
    max_daily_samples: int | None
    late_max_conversations: int
    late_max_bytes: int
    late_max_age: float


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """The scoring queue and its workers."""

    queue_size: int
    workers: int
    scorer_timeout: float
    drain_grace_period: float


@dataclass(frozen=True, slots=True)
class GrafanaConfig:
    """What the generated Grafana provisioning files point at."""

    prometheus_url: str = "http://prometheus:9090"
    dashboards_path: str = "/var/lib/grafana/dashboards/agent-quality"
    folder: str = "Agent quality"


@dataclass(frozen=True, slots=True)
class OtlpConfig:
    """OTLP/HTTP traces: when a conversation assembled from spans is complete, buffer bounds."""

    complete_on_root_span: bool = True
    idle_timeout: float = 30.0
    max_conversations: int = 10000
    max_bytes: int = 128 * 1024 * 1024
    max_age: float = 600.0


@dataclass(frozen=True, slots=True)
class Price:
    """What a model costs, in USD per million input and output tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, *, input_tokens: int, output_tokens: int) -> float:
        """Return the USD cost of one request."""
        dollars = input_tokens * self.input_per_million + output_tokens * self.output_per_million
        return dollars / 1e6


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    """One OpenAI-compatible chat-completions endpoint used as an LLM judge."""

    name: str
    base_url: str
    model: str
    #: Read from ``api_key_env`` when the daemon starts (exporter/config/secrets.py).
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    api_key_header: str = "Authorization"
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    query: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    concurrency: int = 8
    timeout: float = 20.0
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 10.0
    max_retry_after: float = 30.0
    response_format: bool = True
    temperature: float = 0.0
    max_tokens: int = 300
    max_input_chars: int = 24000
    daily_budget_usd: float | None = None
    price: Price | None = None
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    redact: bool = True


@dataclass(frozen=True, slots=True)
class ConfirmationConfig:
    """The second-tier judge: which judge, and which bad dimensions or flags call for it."""

    judge: str | None = None
    dimensions: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RedactionConfig:
    """Which personal data to replace with placeholders, plus the operator's own regexes."""

    enabled: bool = True
    kinds: tuple[str, ...] = ("email", "card", "ip", "phone")
    patterns: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class DatasetSelection:
    """Which scored conversations become feedback-dataset records.

    ``bad_dimensions`` None means every declared dimension; a conversation is selected when any
    listed dimension is bad, any ``flags`` or truthy ``signals`` is present, and no
    ``exclude_flags`` is.
    """

    bad_dimensions: tuple[str, ...] | None = None
    flags: frozenset[str] = frozenset({"confirmed_bad"})
    signals: frozenset[str] = frozenset({"user_thumbs_down"})
    exclude_flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DatasetConfig:
    """The feedback dataset: where, what, how often it is flushed and rotated, redaction."""

    enabled: bool = False
    path: str = "feedback-dataset"
    select: DatasetSelection = DatasetSelection()
    flush_interval: float = 5.0
    max_pending_records: int = 10000
    rotate_max_bytes: int = 64 * 1024 * 1024
    rotate_max_age: float = 3600.0
    #: Finished files are deleted, oldest first, past these (None: no limit).
    retention_max_bytes: int | None = 1 << 30
    retention_max_age: float | None = 30 * 86400.0
    dedup_max_ids: int = 100000
    redaction: RedactionConfig = RedactionConfig()


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    server: ServerConfig
    agents: tuple[str, ...]
    sampling: SamplingConfig
    pipeline: PipelineConfig
    dimensions: tuple[Dimension, ...]
    scorers: tuple[ScorerSpec, ...]
    source: str = "<default>"
    digest: str = ""
    judges: Mapping[str, JudgeConfig] = field(default_factory=lambda: MappingProxyType({}))
    rubrics: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    confirmation: ConfirmationConfig = ConfirmationConfig()
    dataset: DatasetConfig = DatasetConfig()
    otlp: OtlpConfig = OtlpConfig()
    grafana: GrafanaConfig = GrafanaConfig()
    #: The generated rules' settings (exporter/config/alerting.py); None only in hand-built
    #: configs of unit tests, which `generate` refuses.
    alerting: AlertingConfig | None = None

    def dimension(self, name: str) -> Dimension | None:
        """Return the dimension called ``name``, if declared."""
        for dimension in self.dimensions:
            if dimension.name == name:
                return dimension
        return None

    @property
    def agent_labels(self) -> tuple[str, ...]:
        """Return every ``agent`` label value the exporter can emit."""
        return (*self.agents, OTHER_AGENT)


def _nice_step(span: float) -> float:
    """Return a 1-2-5 step giving about ten buckets across ``span``."""
    raw = span / 10
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def default_buckets(
    scale_min: float, scale_max: float, thresholds: Thresholds, extra: tuple[float, ...] = ()
) -> tuple[float, ...]:
    """Return sorted bucket bounds across the scale, always including every threshold."""
    bounds: set[float] = {round(v, 10) for v in (*thresholds.values(), *extra)}
    if not extra:
        step = _nice_step(scale_max - scale_min)
        count = round((scale_max - scale_min) / step)
        bounds.update(round(scale_min + i * step, 10) for i in range(count + 1))
    return tuple(sorted(bounds))
