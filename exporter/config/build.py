"""Turn a validated, merged config document into the frozen ``Config``.

The JSON Schema checks shapes; this module checks what a schema cannot (a threshold outside
its scale, a scorer naming an undeclared dimension) and names the key path of each problem.
Secrets are not read here: exporter/config/secrets.py reads them when the daemon starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from exporter.config.alerting import build_alerting, build_dimension_alerting, check_objectives
from exporter.config.duration import parse_duration
from exporter.config.model import (
    OTHER_AGENT,
    AuthConfig,
    Config,
    ConfirmationConfig,
    DatasetConfig,
    DatasetSelection,
    Dimension,
    GrafanaConfig,
    JudgeConfig,
    OtlpConfig,
    PipelineConfig,
    Price,
    RedactionConfig,
    SamplingConfig,
    ScorerSpec,
    ServerConfig,
    Thresholds,
    TlsConfig,
    default_buckets,
)
from exporter.exceptions import ConfigError

__all__ = ["build_config", "merge"]


def merge(base: Any, override: Any) -> Any:
    """Merge mappings recursively; anything else in ``override`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base.get(key), value) if key in base else value
        return merged
    return override


def build_config(document: dict[str, Any], *, source: str, digest: str) -> Config:
    """Build the ``Config`` of a validated document merged over the defaults."""
    return _Builder(document, source).build(digest)


class _Builder:
    """Turns a validated, merged document into ``Config``, with the semantic checks."""

    def __init__(self, document: dict[str, Any], source: str) -> None:
        self.doc = document
        self.source = source

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, path=path)

    def build(self, digest: str) -> Config:
        dimensions = self.dimensions()
        judges = self.judges()
        scorers = self.scorers({d.name for d in dimensions})
        alerting = build_alerting(self.doc["alerting"], self.fail)
        check_objectives(alerting, self.objectives(dimensions), self.fail)
        return Config(
            server=self.server(),
            agents=self.agents(),
            sampling=self.sampling(),
            pipeline=self.pipeline(),
            dimensions=dimensions,
            scorers=scorers,
            source=self.source,
            digest=digest,
            judges=MappingProxyType(judges),
            rubrics=MappingProxyType(dict(self.doc.get("rubrics") or {})),
            confirmation=self.confirmation(judges, scorers, {d.name for d in dimensions}),
            dataset=self.dataset({d.name for d in dimensions}),
            otlp=self.otlp(),
            grafana=GrafanaConfig(**self.doc["grafana"]),
            alerting=alerting,
        )

    def objectives(self, dimensions: tuple[Dimension, ...]) -> dict[str, float]:
        """Return each SLO objective by where it was set (the dimension's own, or the default)."""
        found = {}
        for index, (item, dimension) in enumerate(
            zip(self.doc["dimensions"], dimensions, strict=True)
        ):
            if dimension.alerting.objective is None:
                continue
            own = "objective" in (item.get("alerting") or {})
            where = (
                f"$.dimensions[{index}].alerting.objective"
                if own
                else f"$.alerting.defaults.objective (dimension {dimension.name})"
            )
            found[where] = dimension.alerting.objective
        return found

    def otlp(self) -> OtlpConfig:
        raw = self.doc["otlp"]
        buffer = raw["buffer"]
        idle, age = parse_duration(raw["idle_timeout"]), parse_duration(buffer["max_age"])
        if idle <= 0:
            raise self.fail("$.otlp.idle_timeout", "must be longer than 0s")
        if idle >= age:
            raise self.fail(
                "$.otlp.idle_timeout", f"must be shorter than buffer.max_age ({buffer['max_age']})"
            )
        return OtlpConfig(
            complete_on_root_span=raw["complete_on_root_span"],
            idle_timeout=idle,
            max_conversations=buffer["max_conversations"],
            max_bytes=buffer["max_bytes"],
            max_age=age,
        )

    def dataset(self, declared: set[str]) -> DatasetConfig:
        raw, path = self.doc["dataset"], "$.dataset"
        select = raw["select"]
        bad = select["bad_dimensions"]
        if bad != "all":
            for index, name in enumerate(bad):
                if name not in declared:
                    raise self.fail(
                        f"{path}.select.bad_dimensions[{index}]",
                        f"{name!r} is not a declared dimension",
                    )
        # Relative to the config file, as Prometheus resolves rule_files, so the daemon and
        # `export-dataset --config.file` find the same directory from any working directory.
        base = Path.cwd() if self.source.startswith("<") else Path(self.source).parent
        retention = raw["retention"]
        max_age = retention["max_age"]
        return DatasetConfig(
            enabled=raw["enabled"],
            path=os.path.abspath(base / raw["path"]),
            select=DatasetSelection(
                bad_dimensions=None if bad == "all" else tuple(bad),
                flags=frozenset(select["flags"]),
                signals=frozenset(select["signals"]),
                exclude_flags=frozenset(select["exclude_flags"]),
            ),
            flush_interval=parse_duration(raw["flush_interval"]),
            max_pending_records=raw["max_pending_records"],
            rotate_max_bytes=raw["rotation"]["max_bytes"],
            rotate_max_age=parse_duration(raw["rotation"]["max_age"]),
            retention_max_bytes=retention["max_bytes"],
            retention_max_age=None if max_age is None else parse_duration(max_age),
            dedup_max_ids=raw["dedup"]["max_ids"],
            redaction=self.redaction(f"{path}.redaction", raw["redaction"]),
        )

    def redaction(self, path: str, raw: Mapping[str, Any]) -> RedactionConfig:
        """Build a ``redaction:`` block (``$defs/redaction`` in the schema) found at ``path``."""
        patterns: dict[str, str] = {}
        for index, item in enumerate(raw.get("patterns") or ()):
            where = f"{path}.patterns[{index}]"
            if item["name"] in patterns or item["name"] in (raw.get("kinds") or ()):
                raise self.fail(f"{where}.name", f"{item['name']!r} is already a redaction kind")
            try:
                re.compile(item["regex"])
            except re.error as error:
                raise self.fail(f"{where}.regex", f"not a valid regex: {error}") from error
            patterns[item["name"]] = item["regex"]
        return RedactionConfig(
            enabled=raw.get("enabled", True),
            kinds=tuple(raw.get("kinds") or ()),
            patterns=MappingProxyType(patterns),
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
            auth=self.auth(auth),
            max_body_bytes=limits["max_body_bytes"],
            max_batch_items=limits["max_batch_items"],
            tls=self.tls(server.get("tls") or {}),
        )

    def tls(self, tls: Mapping[str, Any]) -> TlsConfig | None:
        cert, key = tls.get("cert_file"), tls.get("key_file")
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise self.fail("$.server.tls", "set both cert_file and key_file, or neither")
        for name, path in (("cert_file", cert), ("key_file", key)):
            if not Path(path).is_file():
                raise self.fail(f"$.server.tls.{name}", f"{path} is not a readable file")
        return TlsConfig(cert_file=cert, key_file=key)

    def auth(self, auth: Mapping[str, Any]) -> AuthConfig:
        # Only where the token is: it is read when the daemon starts (secrets.py).
        env, file = auth.get("bearer_token_env"), auth.get("bearer_token_file")
        if env and file:
            raise self.fail("$.server.auth", "set bearer_token_env or bearer_token_file, not both")
        return AuthConfig(
            protect_metrics=bool(auth.get("protect_metrics", False)),
            bearer_token_env=env or None,
            bearer_token_file=file or None,
        )

    def agents(self) -> tuple[str, ...]:
        agents = tuple(self.doc.get("agents") or ())
        if OTHER_AGENT in agents:
            index = agents.index(OTHER_AGENT)
            raise self.fail(
                f"$.agents[{index}]", f"{OTHER_AGENT!r} is reserved for unlisted agents"
            )
        return agents

    def sampling(self) -> SamplingConfig:
        s = self.doc["sampling"]
        triggers, budget, late = s["boost_triggers"], s["daily_budget"], s["late_signals"]
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
                    f"{path}.thresholds.{key}",
                    f"{value:g} is outside the scale [{low:g}, {high:g}]",
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
            alerting=build_dimension_alerting(
                item,
                self.doc["alerting"]["defaults"],
                path=path,
                scale=(low, high),
                has_bad_threshold=thresholds.bad is not None,
                fail=self.fail,
            ),
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
            if item["type"] == "llm_judge":
                self.check_llm_judge(path, item)
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

    def check_llm_judge(self, path: str, item: Mapping[str, Any]) -> None:
        if item["judge"] not in (self.doc.get("judges") or {}):
            raise self.fail(f"{path}.judge", f"{item['judge']!r} is not a judge under $.judges")
        if not item.get("dimension") and not item.get("dimensions"):
            raise self.fail(path, "an llm_judge scorer needs `dimension` or `dimensions`")

    def judges(self) -> dict[str, JudgeConfig]:
        defaults, prices = self.doc["judge_defaults"], self.doc.get("prices") or {}
        result = {}
        for name, raw in (self.doc.get("judges") or {}).items():
            path, item = f"$.judges.{name}", merge(defaults, raw)
            found = item.get("price") or prices.get(item["model"])
            price = None if found is None else Price(**{k: float(v) for k, v in found.items()})
            if item.get("daily_budget_usd") is not None and price is None:
                raise self.fail(
                    f"{path}.daily_budget_usd",
                    f"a budget needs a price: set {path}.price or $.prices.{item['model']}",
                )
            budget = item.get("daily_budget_usd")
            breaker = item["breaker"]
            result[name] = JudgeConfig(
                name=name,
                base_url=item["base_url"].rstrip("/"),
                model=item["model"],
                api_key_env=item.get("api_key_env") or None,  # read at start: secrets.py
                api_key_header=item["api_key_header"],
                headers=MappingProxyType(dict(item["headers"])),
                query=MappingProxyType(dict(item["query"])),
                concurrency=item["concurrency"],
                timeout=parse_duration(item["timeout"]),
                retries=item["retries"],
                backoff=parse_duration(item["backoff"]),
                max_backoff=parse_duration(item["max_backoff"]),
                max_retry_after=parse_duration(item["max_retry_after"]),
                response_format=item["response_format"],
                temperature=float(item["temperature"]),
                max_tokens=item["max_tokens"],
                max_input_chars=item["max_input_chars"],
                daily_budget_usd=None if budget is None else float(budget),
                price=price,
                breaker_failures=breaker["failures"],
                breaker_cooldown=parse_duration(breaker["cooldown"]),
                redact=item["redact"],
            )
        return result

    def confirmation(
        self, judges: Mapping[str, JudgeConfig], scorers: tuple[ScorerSpec, ...], declared: set[str]
    ) -> ConfirmationConfig:
        raw, path = self.doc["confirmation"], "$.confirmation"
        name = raw.get("judge")
        if name is None:
            if raw.get("dimensions") or raw.get("flags"):
                raise self.fail(f"{path}.judge", "set the judge that confirms")
            return ConfirmationConfig()
        if name not in judges:
            raise self.fail(f"{path}.judge", f"{name!r} is not a judge under $.judges")
        tier1 = [s for s in scorers if s.type == "llm_judge"]
        for spec in tier1:
            first = judges[spec.options["judge"]]
            if (first.base_url, first.model) == (judges[name].base_url, judges[name].model):
                raise self.fail(
                    f"{path}.judge",
                    f"must use another model than scorer {spec.name!r} ({first.model})",
                )
        dimensions = list(raw.get("dimensions") or ())
        for index, dimension in enumerate(dimensions):
            if dimension not in declared:
                raise self.fail(
                    f"{path}.dimensions[{index}]", f"{dimension!r} is not a declared dimension"
                )
        if not dimensions:
            for spec in tier1:
                listed = spec.options.get("dimensions") or [spec.dimension]
                dimensions += [d for d in listed if d not in dimensions]
        if not dimensions:
            raise self.fail(f"{path}.dimensions", "name the dimensions the judge re-scores")
        return ConfirmationConfig(
            judge=name, dimensions=tuple(dimensions), flags=frozenset(raw.get("flags") or ())
        )
