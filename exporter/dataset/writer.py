"""The dataset writer: an ``EvaluationSink`` that appends selected evaluations off the loop.

``handle`` runs on the event loop and only selects and queues (a few microseconds). A dedicated
thread wakes every ``flush_interval``, or sooner once a tenth of ``max_pending_records`` is
waiting, deduplicates, redacts, encodes and appends the batch with one write and one fsync, so
a crash loses at most one interval and a burst is written as fast as the disk takes it (at
most ``max_pending_records`` an interval before issue 16: 2,000 a second by default). When the
disk is full or the directory unwritable, the encoded batch is kept and retried each interval
(not sooner: a failing disk is not hammered); the failure is counted every time and logged at
most once per ``error_log_interval``; new records beyond ``max_pending_records`` are dropped
and counted. Scoring never waits for any of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from exporter.config.model import DatasetConfig
from exporter.dataset.dedup import IdFilter
from exporter.dataset.policy import Selection, SelectionPolicy
from exporter.dataset.reader import read_ids
from exporter.dataset.record import Provenance, Record, encode_record
from exporter.dataset.segments import DirectoryLocked, Segments
from exporter.metrics import Metrics
from exporter.redaction import Redactor
from exporter.types import Evaluation

__all__ = ["DatasetWriter"]

log = logging.getLogger(__name__)

#: Seconds between retention checks when no rotation prompts one: the age bound is in days.
RETENTION_INTERVAL = 60.0
#: The writer wakes before its interval once 1/FLUSH_SHARE of ``max_pending_records`` waits.
FLUSH_SHARE = 10

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_PERMISSION = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def _reason(error: OSError) -> str:
    if isinstance(error, DirectoryLocked):
        return "locked"
    if error.errno in _NO_SPACE:
        return "no_space"
    if error.errno in _PERMISSION:
        return "permission"
    return "io"


@dataclass(slots=True)
class _Pending:
    """A selected evaluation, copied: the pipeline may reuse its containers afterwards."""

    evaluation: Evaluation
    selection: Selection
    time: float


class DatasetWriter:
    """Appends selected evaluations to the dataset directory; close with ``aclose``."""

    def __init__(
        self,
        *,
        config: DatasetConfig,
        policy: SelectionPolicy,
        provenance: Provenance,
        metrics: Metrics,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.time,
        error_log_interval: float = 60.0,
        close_timeout: float = 10.0,
    ) -> None:
        self._config = config
        self._policy = policy
        self._provenance = provenance
        self._metrics = metrics
        self._redactor = redactor
        self._clock = clock
        self._error_log_interval = error_log_interval
        self._close_timeout = close_timeout
        self._segments = Segments(
            Path(config.path),
            max_bytes=config.rotate_max_bytes,
            max_age=config.rotate_max_age,
            retention_bytes=config.retention_max_bytes,
            retention_age=config.retention_max_age,
            clock=clock,
        )
        self._retention_due = float("-inf")  # when the directory is next checked
        self._seen = IdFilter(config.dedup_max_ids)
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._flush_at = max(1, config.max_pending_records // FLUSH_SHARE)
        self._wake = threading.Event()  # set by handle() at _flush_at, and by aclose()
        self._closed = False
        # Owned by the writer thread: encoded lines not yet on disk, with their agent labels.
        self._backlog: list[tuple[str, bytes]] = []
        self._backlog_size = 0
        self._ready = False
        self._failures = 0
        self._last_report = float("-inf")
        self._stop = threading.Event()
        self.flushed = threading.Event()  # set after every flush cycle; tests wait on it
        metrics.add_gauge(
            "dataset_pending_records",
            "Selected records waiting to be written to the feedback dataset.",
            lambda: len(self._pending) + self._backlog_size,
        )
        self._thread = threading.Thread(target=self._run, name="dataset-writer", daemon=True)
        self._thread.start()

    async def handle(self, evaluation: Evaluation) -> None:
        """Queue ``evaluation`` if the policy selects it; never blocks."""
        selection = self._policy.select(evaluation)
        if selection is None:
            return
        snapshot = Evaluation(
            evaluation.conversation,
            evaluation.agent,
            evaluation.reason,
            dict(evaluation.scores),
            list(evaluation.flags),
            dict(evaluation.explanations),
            dict(evaluation.errors),
            set(evaluation.overturned),
        )
        with self._lock:
            waiting = len(self._pending) + self._backlog_size
            full = waiting >= self._config.max_pending_records
            if not (self._closed or full):
                self._pending.append(_Pending(snapshot, selection, self._clock()))
                if waiting + 1 >= self._flush_at and not self._wake.is_set():
                    self._wake.set()
                return
        self._metrics.dataset_dropped.labels("shutdown" if self._closed else "backlog_full").inc()

    async def aclose(self) -> None:
        """Write what is queued, finish the active file, stop the thread."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        await asyncio.to_thread(self._thread.join, self._close_timeout)
        if self._thread.is_alive():
            log.error("feedback dataset writer did not stop within %gs", self._close_timeout)

    def _run(self) -> None:
        interval = self._config.flush_interval
        while True:
            if self._failures:  # the disk is failing: retry on the interval only
                stopping = self._stop.wait(interval)
            else:
                self._wake.wait(interval)
                stopping = self._stop.is_set()
            self._wake.clear()  # before taking the batch: what arrives later wakes it again
            try:
                self._cycle()
            except Exception:  # a bug must not silently end the thread
                log.exception("feedback dataset writer failed")
            self.flushed.set()
            if stopping:
                break
        self._shutdown()

    def _cycle(self) -> None:
        if not self._ready:
            try:
                self._segments.open()
                limit = self._config.dedup_max_ids
                for conversation_id in read_ids(self._segments.directory, limit=limit):
                    self._seen.add(conversation_id)
            except OSError as error:
                self._failed(error)
                return
            self._ready = True
        with self._lock:
            batch, self._pending = self._pending, []
        for item in batch:
            self._encode(item)
        self._backlog_size = len(self._backlog)
        rotations = self._segments.rotations
        try:
            if self._backlog:
                self._write()
            self._segments.rotate_if_due()
            self._retain(rotated=self._segments.rotations > rotations)
        except OSError as error:
            self._failed(error)
        finally:
            self._metrics.dataset_rotations.inc(self._segments.rotations - rotations)

    def _retain(self, *, rotated: bool) -> None:
        """Apply retention after a rotation, and otherwise once per ``RETENTION_INTERVAL``."""
        now = self._clock()
        if rotated or now >= self._retention_due:
            self._retention_due = now + RETENTION_INTERVAL
            self._metrics.dataset_deleted_files.inc(self._segments.enforce_retention())

    def _encode(self, item: _Pending) -> None:
        conversation = item.evaluation.conversation
        if not self._seen.add(conversation.id):
            self._metrics.dataset_duplicates.inc()
            return
        try:
            self._backlog.append((item.evaluation.agent, encode_record(self._record(item))))
        except (msgspec.EncodeError, TypeError, ValueError) as error:
            self._metrics.dataset_dropped.labels("encode").inc()
            log.warning("feedback dataset: cannot encode %r: %s", conversation.id, error)

    def _record(self, item: _Pending) -> Record:
        evaluation, redactor = item.evaluation, self._redactor
        conversation, explanations, errors = (
            evaluation.conversation,
            evaluation.explanations,
            evaluation.errors,
        )
        if redactor is not None:  # judges quote the conversation: redact their words too
            conversation = redactor.redact_conversation(conversation)
            explanations = {k: redactor.redact(v) for k, v in explanations.items()}
            errors = {k: redactor.redact(v) for k, v in errors.items()}
        return Record(
            id=conversation.id,
            agent=evaluation.agent,
            time=dt.datetime.fromtimestamp(item.time, dt.UTC),
            selected_because=list(item.selection.reasons),
            sampling_reason=evaluation.reason,
            scores=evaluation.scores,
            bad_dimensions=list(item.selection.bad_dimensions),
            flags=evaluation.flags,
            explanations=explanations,
            errors=errors,
            conversation=conversation,
            provenance=self._provenance,
        )

    def _write(self) -> None:
        while self._backlog:
            count = self._segments.append([line for _, line in self._backlog])
            for agent, line in self._backlog[:count]:
                self._metrics.dataset_records.labels(agent).inc()
                self._metrics.dataset_bytes.inc(len(line))
            del self._backlog[:count]
            self._backlog_size = len(self._backlog)
        if self._failures:
            log.info("feedback dataset: writing again after %d failures", self._failures)
            self._failures = 0
            self._last_report = float("-inf")

    def _failed(self, error: OSError) -> None:
        """Count every failure; log the first and then at most once per interval."""
        self._metrics.dataset_errors.labels(_reason(error)).inc()
        self._failures += 1
        now = time.monotonic()
        if now - self._last_report >= self._error_log_interval:
            self._last_report = now
            log.warning(
                "feedback dataset: cannot write to %s: %s (%d failures so far; %d records "
                "waiting, retried every %gs)",
                self._segments.directory,
                error,
                self._failures,
                len(self._backlog) + len(self._pending),
                self._config.flush_interval,
            )

    def _shutdown(self) -> None:
        with self._lock:  # still pending if the directory never opened
            left = len(self._backlog) + len(self._pending)
            self._pending = []
        if left:
            self._metrics.dataset_dropped.labels("shutdown").inc(left)
            log.error("feedback dataset: %d records could not be written before shutdown", left)
        rotations = self._segments.rotations
        try:
            self._segments.close()
        except OSError as error:
            self._failed(error)
        self._metrics.dataset_rotations.inc(self._segments.rotations - rotations)
