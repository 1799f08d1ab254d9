"""Every Prometheus series the daemon exports, on one registry the app owns.

Label values come only from the config (agents, dimensions, scorer names) or from fixed sets
in the code (reasons, outcomes); never raw from a payload, because every distinct value is a
new series in every Prometheus that scrapes us.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.samples import Sample

from exporter._version import __version__
from exporter.config.model import OTHER_AGENT, Config
from exporter.metrics._collectors import (
    CallbackGauges,
    LoopCounter,
    LoopHistogram,
    ScoreHistograms,
    total,
)
from exporter.names import PREFIX

__all__ = [
    "DATASET_DROP_REASONS",
    "DATASET_ERROR_REASONS",
    "HTTP_ERROR_REASONS",
    "JUDGE_VERDICTS",
    "MAX_FLAG_VALUES",
    "OTLP_DROP_REASONS",
    "OTLP_LOG_OUTCOMES",
    "OTLP_SPAN_OUTCOMES",
    "OTLP_TRIGGERS",
    "Metrics",
]

# `_created` series double the series count and no rule or dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

#: Flags are named by scorer code, but a plugin could echo payload text: cap the distinct values.
MAX_FLAG_VALUES = 64
_FLAG_FORM = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

_JUDGE_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60)
_JUDGE_CALL_OUTCOMES = ("ok", "invalid_output", "failed", "breaker_open", "over_budget")
_JUDGE_REQUEST_OUTCOMES = (
    "ok",
    "rate_limited",
    "server_error",
    "client_error",
    "timeout",
    "connection_error",
    "bad_response",
)
JUDGE_VERDICTS = ("confirmed", "rejected", "error", "skipped")

#: What became of an OTLP span: kept for its conversation, not GenAI, after its conversation
#: was complete, or refused (malformed ids).
OTLP_SPAN_OUTCOMES = ("accepted", "ignored", "late", "rejected")
#: What became of an OTLP log record: a GenAI event kept for its conversation, any other record
#: (or an event without trace context), an event after its conversation was complete, refused.
OTLP_LOG_OUTCOMES = OTLP_SPAN_OUTCOMES
#: What completed a conversation assembled from spans.
OTLP_TRIGGERS = ("root_span", "idle", "max_age", "shutdown")
#: `dropped_total` reasons of partial conversations: buffer over its bounds, spans without any
#: message content, an assembly the conversation schema refuses.
OTLP_DROP_REASONS = ("otlp_buffer_full", "otlp_no_messages", "otlp_invalid")

#: Why a feedback dataset write failed: disk full, permissions, another writer's lock, other I/O.
DATASET_ERROR_REASONS = ("no_space", "permission", "locked", "io")
#: Why a selected record was lost: too many waiting (disk down), unencodable, left at shutdown.
DATASET_DROP_REASONS = ("backlog_full", "encode", "shutdown")

#: Why a request was refused before any route saw it: aiohttp's parser could not read it
#: (`too_long`: a request line or header over its limit; `bad_method`: mostly TLS or another
#: protocol on the HTTP port), or the server failed on it (`internal`).
HTTP_ERROR_REASONS = ("malformed", "too_long", "bad_method", "internal")

_SCORER_DURATION_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The daemon's metrics, built on ``registry`` for one ``config``."""

    def __init__(self, config: Config, registry: CollectorRegistry) -> None:
        self.registry = registry
        agents = config.agent_labels
        self.scores = ScoreHistograms(agents, config.dimensions)
        registry.register(self.scores)
        self.gauges = CallbackGauges()
        registry.register(self.gauges)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        def loop_counter(name: str, doc: str, labels: tuple[str, ...]) -> LoopCounter:
            return LoopCounter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        self.conversations = loop_counter("conversations", "Conversations received.", ("agent",))
        self.not_sampled = loop_counter(
            "not_sampled", "Conversations finally not chosen for scoring.", ("agent",)
        )
        self.sampled = loop_counter(
            "sampled", "Conversations chosen for scoring, by reason.", ("agent", "reason")
        )
        self.scored = loop_counter("scored", "Conversations whose scoring finished.", ("agent",))
        self.dropped = loop_counter("dropped", "Conversations not scored, by reason.", ("reason",))
        self.evaluations = loop_counter(
            "evaluations", "Scorer runs by outcome.", ("agent", "scorer", "outcome")
        )
        self.flags = loop_counter("flags", "Flags raised by scorers.", ("agent", "flag"))
        self.ignored_scores = loop_counter(
            "ignored_scores",
            "Scores not recorded (undeclared dimension, not finite, off the scale, or re-scored "
            "by a confirmer but never scored).",
            ("reason",),
        )
        self.rejected = loop_counter(
            "rejected", "Ingested items rejected, by endpoint and reason.", ("endpoint", "reason")
        )
        self.feedback = loop_counter("feedback", "Late feedback signals by outcome.", ("outcome",))
        self.http_errors = counter(
            "http_errors",
            "Requests refused before any route saw them (malformed HTTP), by reason.",
            ("reason",),
        )
        self.otlp_spans = counter("otlp_spans", "OTLP spans received, by outcome.", ("outcome",))
        self.otlp_log_records = counter(
            "otlp_log_records", "OTLP log records received, by outcome.", ("outcome",)
        )
        self.otlp_conversations = counter(
            "otlp_conversations",
            "Conversations assembled from OTLP spans, by what completed them.",
            ("trigger",),
        )
        self.judge_tokens = counter("judge_tokens", "LLM judge tokens.", ("judge", "direction"))
        self.judge_cost = counter("judge_cost_usd", "What LLM judging cost, in USD.", ("judge",))
        self.judge_calls = counter(
            "judge_calls", "Verdicts asked of an LLM judge, by outcome.", ("judge", "outcome")
        )
        self.judge_requests = counter(
            "judge_requests", "HTTP requests to an LLM judge, by outcome.", ("judge", "outcome")
        )
        self.judge_retries = counter("judge_retries", "LLM judge requests retried.", ("judge",))
        self.judge_breaker_opened = counter(
            "judge_breaker_opened", "Times a judge's circuit breaker opened.", ("judge",)
        )
        self.judge_breaker_open = Gauge(
            f"{PREFIX}_judge_breaker_open",
            "1 while a judge's circuit breaker stops calls to it.",
            ("judge",),
            registry=registry,
        )
        self.judge_request_duration = Histogram(
            f"{PREFIX}_judge_request_duration_seconds",
            "Time per HTTP request to an LLM judge.",
            ("judge",),
            buckets=_JUDGE_DURATION_BUCKETS,
            registry=registry,
        )
        self.judge_verdicts = counter(
            "judge_verdicts",
            "Second-tier verdicts on bad results (confirmed, rejected, error, skipped).",
            ("agent", "dimension", "judge", "verdict"),
        )
        self.judge_score_difference = Histogram(
            f"{PREFIX}_judge_score_difference",
            "How far the second judge's score is from the first, as a share of the scale.",
            ("dimension", "judge"),
            buckets=(0, 0.1, 0.25, 0.5, 0.75, 1),
            registry=registry,
        )
        self.agent_cost = loop_counter(
            "agent_cost_usd", "What the observed agents cost, from conversation usage.", ("agent",)
        )
        # The feedback dataset (issue 7): written in a thread; prometheus_client is thread-safe.
        self.dataset_records = counter(
            "dataset_records", "Feedback dataset records written to disk.", ("agent",)
        )
        self.dataset_bytes = counter("dataset_bytes", "Bytes written to the feedback dataset.")
        self.dataset_errors = counter(
            "dataset_write_errors", "Failed feedback dataset writes, by reason.", ("reason",)
        )
        self.dataset_dropped = counter(
            "dataset_dropped_records", "Selected records never written, by reason.", ("reason",)
        )
        self.dataset_duplicates = counter(
            "dataset_duplicates", "Selected conversations already in the dataset (by id)."
        )
        self.dataset_deleted_files = counter(
            "dataset_deleted_files",
            "Finished feedback dataset files deleted by retention (dataset.retention).",
        )
        self.dataset_rotations = counter(
            "dataset_rotations", "Feedback dataset files finished and renamed."
        )
        self.scorer_duration = LoopHistogram(
            f"{PREFIX}_scorer_duration_seconds",
            "Time per scorer run.",
            ("scorer",),
            buckets=_SCORER_DURATION_BUCKETS,
            registry=registry,
        )
        build_info = Gauge(
            f"{PREFIX}_build_info",
            "Always 1; labels carry the version.",
            ("version",),
            registry=registry,
        )
        build_info.labels(__version__).set(1)
        # Named as Prometheus and Alertmanager name theirs, so the same alerts fit.
        self.config_reload_successful = Gauge(
            f"{PREFIX}_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            registry=registry,
        )
        self.config_reload_time = Gauge(
            f"{PREFIX}_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration load.",
            registry=registry,
        )
        self.config_reload_successful.set(1)
        self.config_reload_time.set_to_current_time()
        self._known_flags: set[str] = set()
        self._dataset_enabled = config.dataset.enabled  # a restart-only setting
        self._initialise(config)

    def extend(self, config: Config) -> None:
        """Create the series a reloaded ``config`` adds; existing series keep their values."""
        self.scores.extend(config.agent_labels, config.dimensions)
        self._initialise(config)

    def _initialise(self, config: Config) -> None:
        """Create every child whose labels are known, so series exist before the first event."""
        for agent in config.agent_labels:
            self.conversations.labels(agent)
            self.not_sampled.labels(agent)
            self.scored.labels(agent)
            self.agent_cost.labels(agent)
            for reason in ("base", "boost", "min_fill"):
                self.sampled.labels(agent, reason)
            for scorer in config.scorers:
                for outcome in ("ok", "error", "timeout"):
                    self.evaluations.labels(agent, scorer.name, outcome)
        for reason in ("queue_full", "daily_budget", "shutdown", "no_content", *OTLP_DROP_REASONS):
            self.dropped.labels(reason)
        for reason in HTTP_ERROR_REASONS:
            self.http_errors.labels(reason)
        for outcome in OTLP_SPAN_OUTCOMES:
            self.otlp_spans.labels(outcome)
        for outcome in OTLP_LOG_OUTCOMES:
            self.otlp_log_records.labels(outcome)
        for trigger in OTLP_TRIGGERS:
            self.otlp_conversations.labels(trigger)
        self._initialise_judges(config)
        if config.dataset.enabled:
            for agent in config.agent_labels:
                self.dataset_records.labels(agent)
            for reason in DATASET_ERROR_REASONS:
                self.dataset_errors.labels(reason)
            for reason in DATASET_DROP_REASONS:
                self.dataset_dropped.labels(reason)
        for scorer in config.scorers:
            self.scorer_duration.labels(scorer.name)

    def _initialise_judges(self, config: Config) -> None:
        if not config.judges:
            return
        self.dropped.labels("judge_budget")
        for judge in config.judges:
            for direction in ("input", "output"):
                self.judge_tokens.labels(judge, direction)
            self.judge_cost.labels(judge)
            for outcome in _JUDGE_CALL_OUTCOMES:
                self.judge_calls.labels(judge, outcome)
            for outcome in _JUDGE_REQUEST_OUTCOMES:
                self.judge_requests.labels(judge, outcome)
            self.judge_retries.labels(judge)
            self.judge_breaker_opened.labels(judge)
            self.judge_breaker_open.labels(judge)  # 0 until a breaker opens
            self.judge_request_duration.labels(judge)
        confirming = config.confirmation.judge
        if confirming is not None:
            for dimension in config.confirmation.dimensions:
                self.judge_score_difference.labels(dimension, confirming)
                for agent in config.agent_labels:
                    for verdict in JUDGE_VERDICTS:
                        self.judge_verdicts.labels(agent, dimension, confirming, verdict)

    def totals(self) -> dict[str, int]:
        """Return the accounting totals over all agents, as whole numbers.

        ``received = not_sampled + scored + dropped_*`` once the late-signal buffer is flushed
        (``dropped_judge_budget`` aside: those conversations were scored too). Drop reasons
        that never happened are left out; the dataset's totals follow when it is enabled.
        """
        totals = {
            "received": total(self.conversations),
            "not_sampled": total(self.not_sampled),
            "scored": total(self.scored),
        }
        for (reason,), child in self.dropped.children():
            if child.value:
                totals[f"dropped_{reason}"] = child.value
        if self._dataset_enabled:
            totals["dataset_records"] = _counter_total(self.dataset_records)
            totals["dataset_duplicates"] = _counter_total(self.dataset_duplicates)
            for sample in _counted(self.dataset_dropped):
                if sample.value:
                    totals[f"dataset_dropped_{sample.labels['reason']}"] = sample.value
        return {name: round(value) for name, value in totals.items()}

    def flag_label(self, flag: str) -> str:
        """Return the label value for a flag: itself if well-formed and within the cap."""
        if flag in self._known_flags:
            return flag
        if _FLAG_FORM.match(flag) and len(self._known_flags) < MAX_FLAG_VALUES:
            self._known_flags.add(flag)
            return flag
        return OTHER_AGENT

    def add_gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Export ``read()`` as gauge ``agent_quality_<name>`` at every scrape."""
        self.gauges.add(f"{PREFIX}_{name}", documentation, read)

    def add_agent_gauge(
        self, name: str, documentation: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """Export ``read()`` (value per agent label) as gauge ``agent_quality_<name>{agent}``."""
        self.gauges.add_labelled(f"{PREFIX}_{name}", documentation, "agent", read)


def _counted(counter: Counter) -> Iterator[Sample]:
    """Yield ``counter``'s ``_total`` sample of every label set."""
    for family in counter.collect():
        yield from (sample for sample in family.samples if sample.name.endswith("_total"))


def _counter_total(counter: Counter) -> float:
    """Return the sum of ``counter`` over every label set."""
    return sum(sample.value for sample in _counted(counter))
