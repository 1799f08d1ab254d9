"""The OpenTelemetry SDK's logs pipeline, bounded so that the endpoint never slows scoring.

``handle`` runs on the event loop: it builds the records and hands them to the SDK's
``BatchLogRecordProcessor``, whose own thread batches and exports them with the SDK's
``OTLPLogExporter`` (OTLP/HTTP protobuf, retries within ``timeout``). Records waiting to be
sent are bounded by ``queue.max_records``: past it a record is dropped and counted before it
is built, so a dead or hanging endpoint costs the loop one counter increment per score. The
SDK's own queue has the same bound and so never drops silently. Shutdown flushes within what
is left of the drain's grace period; what is still waiting then is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    set_span_in_context,
)

from exporter._version import __version__
from exporter.config.model import Config, Dimension
from exporter.events._records import EVENT_NAME, event_attributes
from exporter.metrics import EVENT_OUTCOMES, Metrics
from exporter.redaction import Redactor
from exporter.types import Evaluation

__all__ = ["EventExport"]

log = logging.getLogger(__name__)

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
#: The least time the final flush gets, even when the drain used up the grace period.
_MIN_FLUSH = 0.5


class _Counting(LogRecordExporter):
    """The SDK's exporter, with every batch's fate reported (sent or failed) as it ends."""

    def __init__(self, inner: LogRecordExporter, *, done: Callable[[int, bool], None]) -> None:
        self._inner = inner
        self._done = done

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = LogRecordExportResult.FAILURE
        try:
            result = self._inner.export(batch)
        finally:
            self._done(len(batch), result is LogRecordExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]  # untyped upstream

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class EventExport:
    """An ``EvaluationSink``: each score becomes a ``gen_ai.evaluation.result`` log record."""

    def __init__(
        self, config: Config, *, metrics: Metrics, deadline: Callable[[], float | None]
    ) -> None:
        settings = config.otel_export
        self._dimensions: dict[str, Dimension] = {d.name: d for d in config.dimensions}
        redaction = settings.redaction
        self._redactor = (
            Redactor(kinds=redaction.kinds, patterns=redaction.patterns)
            if redaction.enabled
            else None
        )
        self._capacity = settings.max_records
        self._timeout = settings.timeout
        self._deadline = deadline
        self._lock = threading.Lock()  # `_waiting` changes on the loop and the export thread
        self._waiting = 0
        self._closed = False  # after shutdown, a late batch is already counted as dropped
        self._sent, self._failed, self._dropped = (
            metrics.evaluation_events.labels(outcome) for outcome in EVENT_OUTCOMES
        )
        self.state = "running"
        self.last_error: str | None = None
        self._exporter = exporter = OTLPLogExporter(
            endpoint=settings.endpoint,
            headers=dict(settings.headers),
            timeout=settings.timeout,
        )
        self._processor = BatchLogRecordProcessor(
            _Counting(exporter, done=self._finished),
            schedule_delay_millis=settings.delay * 1000,
            max_export_batch_size=settings.batch_size,
            max_queue_size=settings.max_records,
            export_timeout_millis=settings.timeout * 1000,
        )
        resource = Resource.create(
            {"service.name": "agent-quality-exporter", "service.version": __version__}
        )
        # shutdown_on_exit off: the daemon shuts it down itself, within the drain's grace.
        self._provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_log_record_processor(self._processor)
        self._logger = self._provider.get_logger("agent-quality-exporter", __version__)
        metrics.add_gauge(
            "evaluation_events_waiting",
            "Evaluation events waiting to be sent (otel_export).",
            lambda: self._waiting,
        )

    @property
    def waiting(self) -> int:
        """Return how many records wait to be sent."""
        return self._waiting

    async def handle(self, evaluation: Evaluation) -> None:
        """Emit one record per scored dimension, or count it dropped when the queue is full."""
        scores = [
            (self._dimensions[name], value)
            for name, value in evaluation.final_scores.items()  # what the metrics record
            if name in self._dimensions
        ]
        # One reservation for the whole evaluation: with the endpoint down the queue is full,
        # and then this is all a conversation costs.
        with self._lock:
            room = max(self._capacity - self._waiting, 0)
            taken = min(room, len(scores))
            self._waiting += taken
        if taken < len(scores):
            self._dropped.inc(len(scores) - taken)
        if not taken:
            return
        conversation = evaluation.conversation
        context = _context(conversation.trace_id, conversation.span_id)
        now = time.time_ns()
        for dimension, value in scores[:taken]:
            self._logger.emit(
                timestamp=now,
                context=context,
                event_name=EVENT_NAME,
                attributes=event_attributes(
                    evaluation, dimension=dimension, value=value, redactor=self._redactor
                ),
            )

    def _finished(self, count: int, sent: bool) -> None:
        """Count a batch's records (export thread)."""
        with self._lock:
            if self._closed:
                return
            self._waiting -= count
        (self._sent if sent else self._failed).inc(count)
        self.state = "sending" if sent else "failing"
        if not sent:
            self.last_error = "the endpoint refused or did not answer in time"

    async def aclose(self) -> None:
        """Flush within what is left of the drain's grace; count what is left as dropped."""
        deadline = self._deadline()
        within = self._timeout if deadline is None else deadline - time.monotonic()
        within = max(within, _MIN_FLUSH)
        loop, done = asyncio.get_running_loop(), asyncio.Event()

        def shutdown() -> None:
            try:
                # Sends what waits; bounded by the SDK at 30s, by us at `within`.
                self._processor.shutdown()  # type: ignore[no-untyped-call]  # untyped upstream
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may be gone by then
                    loop.call_soon_threadsafe(done.set)

        # A daemon thread, not the loop's executor: the loop would wait for it when it closes.
        threading.Thread(target=shutdown, name="evaluation-events-flush", daemon=True).start()
        timed_out = False
        try:
            await asyncio.wait_for(done.wait(), within)
        except TimeoutError:
            timed_out = True
        with self._lock:
            left, self._waiting, self._closed = self._waiting, 0, True
        if timed_out:
            # Ends the exporter's retries at once; a request in flight ends within `timeout`.
            self._exporter.shutdown()  # type: ignore[no-untyped-call]  # untyped upstream
            log.warning("evaluation events: the final flush did not end within %.1fs", within)
        if left > 0:
            self._dropped.inc(left)
            log.warning("evaluation events: %d not sent at shutdown, counted as dropped", left)
        self.state = "stopped"


def _context(trace_id: str | None, span_id: str | None) -> Context:
    """Return a context whose current span is the evaluated one (none without a trace)."""
    if trace_id is None:
        return Context()
    span = SpanContext(
        int(trace_id, 16),
        int(span_id, 16) if span_id is not None else 0,
        is_remote=True,
        trace_flags=_SAMPLED,
    )
    return set_span_in_context(NonRecordingSpan(span), Context())
