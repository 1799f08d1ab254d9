"""Export requests -> span and event records -> partial conversations -> the intake."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import msgspec
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from prometheus_client import Counter

from exporter.config.model import OtlpConfig
from exporter.ingest.intake import Counts, Intake
from exporter.ingest.otlp.assemble import assemble, encode
from exporter.ingest.otlp.buffer import Partial, PartialBuffer
from exporter.ingest.otlp.logs import event_name, extract_event
from exporter.ingest.otlp.spans import ends_trace, extract
from exporter.metrics import OTLP_LOG_OUTCOMES, OTLP_SPAN_OUTCOMES, OTLP_TRIGGERS, Metrics
from exporter.model import Conversation, decode_conversation

__all__ = ["ExportResult", "OtlpReceiver"]

log = logging.getLogger(__name__)

_TRACE_ID_BYTES, _SPAN_ID_BYTES = 16, 8
#: Spans (or log records) read between two yields to the event loop (about 20 ms of work).
YIELD_EVERY = 512


class ExportResult(NamedTuple):
    """What to tell the exporter: spans or log records refused and why (partial success)."""

    rejected: int
    error_message: str


def _service_name(resource: Resource) -> str | None:
    for kv in resource.attributes:
        if kv.key == "service.name" and kv.value.string_value:
            return kv.value.string_value
    return None


class OtlpReceiver:
    """Assemble conversations from spans and GenAI events; hand complete ones to the intake."""

    def __init__(
        self,
        *,
        config: OtlpConfig,
        intake: Intake,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._intake = intake
        self._buffer = buffer = PartialBuffer(config, clock=clock)
        self._spans = {o: metrics.otlp_spans.labels(o) for o in OTLP_SPAN_OUTCOMES}
        self._logs = {o: metrics.otlp_log_records.labels(o) for o in OTLP_LOG_OUTCOMES}
        self._assembled = {t: metrics.otlp_conversations.labels(t) for t in OTLP_TRIGGERS}
        metrics.add_gauge(
            "otlp_buffer_conversations",
            "Partial conversations assembled from spans and events, waiting for the rest.",
            lambda: len(buffer),
        )
        metrics.add_gauge(
            "otlp_buffer_bytes",
            "Bytes held for partial conversations and the keys of those that left.",
            lambda: buffer.held,
        )

    @property
    def buffer(self) -> PartialBuffer:
        """Return the partial-conversation buffer."""
        return self._buffer

    async def export(self, request: ExportTraceServiceRequest) -> ExportResult:
        """Take one trace export request; complete what it completes; say which were refused.

        Yields to the event loop every ``YIELD_EVERY`` spans: a Collector batch of 8192 spans
        takes a few hundred milliseconds to read, which other requests (and scrapes of
        /metrics) should not wait for.
        """
        buffer = self._buffer
        accepted = ignored = late = rejected = 0
        roots: list[bytes] = []
        for resource_spans in request.resource_spans:
            service = _service_name(resource_spans.resource)
            for scope_spans in resource_spans.scope_spans:
                for n, span in enumerate(scope_spans.spans, 1):
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                    if len(span.trace_id) != _TRACE_ID_BYTES or len(span.span_id) != _SPAN_ID_BYTES:
                        rejected += 1
                        continue
                    record = extract(span)
                    if record is None:
                        ignored += 1
                        if ends_trace(span):
                            roots.append(span.trace_id)
                    elif buffer.add(record, service=service):
                        accepted += 1
                        if record.ends_conversation:
                            roots.append(record.trace_id)
                    else:
                        late += 1
        # Only now: a root span may come before its children in a batch (and another request
        # must not complete this one's conversations while it yields halfway).
        for trace in roots:
            buffer.end_trace(trace)
        _count(self._spans, accepted=accepted, ignored=ignored, late=late, rejected=rejected)
        self._settle()
        if rejected:
            return ExportResult(
                rejected, f"{rejected} span(s) without a 16-byte trace_id and an 8-byte span_id"
            )
        return ExportResult(0, "")

    async def export_logs(self, request: ExportLogsServiceRequest) -> ExportResult:
        """Take one logs export request: keep the GenAI events, count the other records.

        An event joins the conversation of its trace whether its spans came first or not yet.
        """
        buffer = self._buffer
        accepted = ignored = late = rejected = 0
        for resource_logs in request.resource_logs:
            service = _service_name(resource_logs.resource)
            for scope_logs in resource_logs.scope_logs:
                for n, entry in enumerate(scope_logs.log_records, 1):
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                    name = event_name(entry)
                    if not name.startswith("gen_ai."):
                        ignored += 1  # a log line, or another library's event
                        continue
                    # Without a trace an event cannot be placed in a conversation; without a
                    # span id it joins its trace at its own time.
                    if not entry.trace_id:
                        ignored += 1
                        continue
                    if len(entry.trace_id) != _TRACE_ID_BYTES or len(entry.span_id) not in (
                        0,
                        _SPAN_ID_BYTES,
                    ):
                        rejected += 1
                        continue
                    record = extract_event(entry, name)
                    if record is None:
                        ignored += 1
                    elif buffer.add(record, service=service):
                        accepted += 1
                    else:
                        late += 1
        _count(self._logs, accepted=accepted, ignored=ignored, late=late, rejected=rejected)
        self._settle()
        if rejected:
            return ExportResult(
                rejected,
                f"{rejected} GenAI log record(s) with a trace_id of other than 16 bytes or a "
                "span_id of other than 8",
            )
        return ExportResult(0, "")

    def _settle(self) -> None:
        """Complete what ended, then evict the oldest until the buffer is within its bounds."""
        self._complete(self._buffer.take_ended(), "root_span")
        overflow = self._buffer.take_overflow()
        for partial in overflow:
            self._intake.refuse(_agent(partial), reason="otlp_buffer_full")

    def sweep(self) -> None:
        """Complete the conversations gone idle or past the maximum age."""
        idle, old = self._buffer.take_expired()
        self._complete(idle, "idle")
        self._complete(old, "max_age")

    def flush(self) -> None:
        """Complete every partial conversation with what has arrived (shutdown)."""
        self._complete(self._buffer.take_all(), "shutdown")

    def _complete(self, partials: Iterable[Partial], trigger: str) -> Counts | None:
        items: list[tuple[Conversation, bytes]] = []
        for partial in partials:
            conversation = assemble(
                key=partial.key,
                conversation_id=partial.conversation_id,
                records=partial.records(),
                service=partial.service,
            )
            if conversation is None:
                self._intake.refuse(_agent(partial), reason="otlp_no_messages")
                continue
            raw = encode(conversation)
            try:
                # Constructing structs does not check their constraints; decoding does.
                conversation = decode_conversation(raw)
            except msgspec.ValidationError as error:
                log.warning(
                    "conversation %r assembled from spans is invalid: %s", partial.key, error
                )
                self._intake.refuse(_agent(partial), reason="otlp_invalid")
                continue
            items.append((conversation, raw))
        if not items:
            return None
        self._assembled[trigger].inc(len(items))
        return self._intake.accept(items)


def _agent(partial: Partial) -> str | None:
    """Return the agent a conversation would have been assembled under, for its label."""
    return partial.agent or partial.service


def _count(children: Mapping[str, Counter], **counts: int) -> None:
    for outcome, count in counts.items():
        if count:
            children[outcome].inc(count)
