"""Export requests -> span records -> partial conversations -> the intake."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from exporter.config.model import OtlpConfig
from exporter.ingest.intake import Counts, Intake
from exporter.ingest.otlp.assemble import assemble, encode
from exporter.ingest.otlp.buffer import Partial, PartialBuffer
from exporter.ingest.otlp.spans import ends_trace, extract
from exporter.metrics import OTLP_DROP_REASONS, OTLP_SPAN_OUTCOMES, OTLP_TRIGGERS, Metrics
from exporter.model import Conversation, decode_conversation

__all__ = ["ExportResult", "TraceReceiver"]

log = logging.getLogger(__name__)

_TRACE_ID_BYTES, _SPAN_ID_BYTES = 16, 8
#: Spans read between two yields to the event loop (about 20 ms of work).
YIELD_EVERY = 512


class ExportResult(NamedTuple):
    """What to tell the exporter: spans refused and why (OTLP partial success)."""

    rejected: int
    error_message: str


def _service_name(resource: Resource) -> str | None:
    for kv in resource.attributes:
        if kv.key == "service.name" and kv.value.string_value:
            return kv.value.string_value
    return None


class TraceReceiver:
    """Assemble conversations from exported spans and hand the complete ones to the intake."""

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
        self._assembled = {t: metrics.otlp_conversations.labels(t) for t in OTLP_TRIGGERS}
        self._dropped = {r: metrics.dropped.labels(r) for r in OTLP_DROP_REASONS}
        metrics.add_gauge(
            "otlp_buffer_conversations",
            "Partial conversations assembled from spans, waiting for the rest.",
            lambda: len(buffer),
        )
        metrics.add_gauge(
            "otlp_buffer_bytes",
            "Serialized span bytes held for partial conversations.",
            lambda: buffer.nbytes,
        )

    @property
    def buffer(self) -> PartialBuffer:
        """Return the partial-conversation buffer."""
        return self._buffer

    async def export(self, request: ExportTraceServiceRequest) -> ExportResult:
        """Take one export request; complete what it completes; say which spans were refused.

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
        for outcome, count in (
            ("accepted", accepted),
            ("ignored", ignored),
            ("late", late),
            ("rejected", rejected),
        ):
            if count:
                self._spans[outcome].inc(count)
        self._complete(buffer.take_ended(), "root_span")
        self._drop(buffer.take_overflow(), "otlp_buffer_full")
        if rejected:
            return ExportResult(
                rejected, f"{rejected} span(s) without a 16-byte trace_id and an 8-byte span_id"
            )
        return ExportResult(0, "")

    def sweep(self) -> None:
        """Complete the conversations gone idle or past the maximum age."""
        idle, old = self._buffer.take_expired()
        self._complete(idle, "idle")
        self._complete(old, "max_age")

    def flush(self) -> None:
        """Complete every partial conversation with what has arrived (shutdown)."""
        self._complete(self._buffer.take_all(), "shutdown")

    def _drop(self, partials: list[Partial], reason: str) -> None:
        if partials:
            self._dropped[reason].inc(len(partials))

    def _complete(self, partials: Iterable[Partial], trigger: str) -> Counts | None:
        items: list[tuple[Conversation, bytes]] = []
        for partial in partials:
            conversation = assemble(
                key=partial.key,
                conversation_id=partial.conversation_id,
                records=partial.records,
                service=partial.service,
            )
            if conversation is None:
                self._dropped["otlp_no_messages"].inc()
                continue
            raw = encode(conversation)
            try:
                # Constructing structs does not check their constraints; decoding does.
                conversation = decode_conversation(raw)
            except msgspec.ValidationError as error:
                log.warning(
                    "conversation %r assembled from spans is invalid: %s", partial.key, error
                )
                self._dropped["otlp_invalid"].inc()
                continue
            items.append((conversation, raw))
        if not items:
            return None
        self._assembled[trigger].inc(len(items))
        return self._intake.accept(items)
