"""Scores sampled conversations off the request path.

``submit`` never waits: the sender of a conversation must never be slowed by scoring, so a full
queue is a counted drop. Workers run every scorer of a conversation concurrently, each under a
timeout; a failing scorer is counted and never takes its worker down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config.model import Config
from exporter.metrics import Metrics
from exporter.model import Conversation
from exporter.types import Closeable, Confirmer, Evaluation, EvaluationSink, Scorer, ScoreResult

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    conversation: Conversation
    agent: str
    reason: str


class Pipeline:
    """A bounded queue of sampled conversations and the workers that score them."""

    def __init__(
        self,
        *,
        config: Config,
        metrics: Metrics,
        scorers: Sequence[Scorer],
        confirmers: Sequence[Confirmer] = (),
        sinks: Sequence[EvaluationSink] = (),
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._scorers = tuple(scorers)
        # Inline scorers never wait: a task and a timer each would cost more than the check.
        self._inline = tuple(s for s in scorers if getattr(s, "inline", False))
        self._awaiting = tuple(s for s in scorers if not getattr(s, "inline", False))
        self._confirmers = tuple(confirmers)
        self._sinks = tuple(sinks)
        self._dimensions = {d.name: d for d in config.dimensions}
        self._timeouts = {s.name: s.timeout for s in config.scorers if s.timeout is not None}
        self._default_timeout = config.pipeline.scorer_timeout
        self._durations = {s.name: metrics.scorer_duration.labels(s.name) for s in scorers}
        self._outcomes = {
            (agent, s.name, outcome): metrics.evaluations.labels(agent, s.name, outcome)
            for agent in config.agent_labels
            for s in scorers
            for outcome in ("ok", "error", "timeout")
        }
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(config.pipeline.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._accepting = True
        metrics.add_gauge("queue_depth", "Conversations waiting to be scored.", self._depth)
        metrics.add_gauge(
            "queue_capacity", "Size of the scoring queue.", lambda: config.pipeline.queue_size
        )
        metrics.add_gauge(
            "in_flight", "Conversations being scored right now.", lambda: self._in_flight
        )

    def _depth(self) -> float:
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        """Say whether workers are running."""
        return bool(self._workers) and not all(w.done() for w in self._workers)

    @property
    def idle(self) -> bool:
        """Say whether nothing is queued or being scored."""
        return self._queue.empty() and self._in_flight == 0

    def submit(self, conversation: Conversation, *, agent: str, reason: str) -> bool:
        """Queue a conversation for scoring; return False (the caller counts a drop) if full."""
        if not self._accepting:
            return False
        try:
            self._queue.put_nowait(_Job(conversation, agent, reason))
        except asyncio.QueueFull:
            return False
        return True

    async def start(self) -> None:
        """Start the workers."""
        self._accepting = True
        self._workers = [
            asyncio.create_task(self._work(), name=f"scorer-worker-{i}")
            for i in range(self._config.pipeline.workers)
        ]

    async def drain(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the queue to empty; return whether it did."""
        try:
            await asyncio.wait_for(self._queue.join(), within)
        except TimeoutError:
            return False
        return True

    async def stop(self, *, grace: float = 0.0) -> None:
        """Stop accepting, drain for up to ``grace`` seconds, count the rest as dropped."""
        self._accepting = False
        if grace > 0:
            await self.drain(grace)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        left = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            left += 1
        if left:
            self._metrics.dropped.labels("shutdown").inc(left)
            log.warning("shutdown dropped %d queued conversations", left)
        for part in (*self._scorers, *self._confirmers, *self._sinks):
            if isinstance(part, Closeable):
                try:
                    await part.aclose()
                except Exception:
                    log.exception("closing %r failed", part)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            self._in_flight += 1
            try:
                await self._evaluate(job)
            except asyncio.CancelledError:
                # Cancelled mid-scoring at shutdown: this one will never be scored.
                self._metrics.dropped.labels("shutdown").inc()
                raise
            except Exception:
                log.exception("evaluating conversation %r failed", job.conversation.id)
            finally:
                self._in_flight -= 1
                self._queue.task_done()

    async def _evaluate(self, job: _Job) -> None:
        evaluation = Evaluation(job.conversation, job.agent, job.reason)
        results = [await self._run(s, job, inline=True) for s in self._inline]
        if len(self._awaiting) == 1:
            results.append(await self._run(self._awaiting[0], job))
        elif self._awaiting:
            results += await asyncio.gather(*(self._run(s, job) for s in self._awaiting))
        for result in results:
            if result is not None:
                self._merge(evaluation, result)
        for confirmer in self._confirmers:
            extra = await self._confirm(confirmer, evaluation)
            if extra is not None:
                self._merge(evaluation, extra)
        self._record(evaluation)
        for sink in self._sinks:
            try:
                await sink.handle(evaluation)
            except Exception:
                log.exception("sink %r failed on conversation %r", sink, job.conversation.id)

    async def _run(self, scorer: Scorer, job: _Job, *, inline: bool = False) -> ScoreResult | None:
        started = time.perf_counter()
        outcome = "ok"
        try:
            if inline:
                return await scorer.score(job.conversation)
            # asyncio.timeout, unlike wait_for, runs the scorer in this task: no task per call.
            async with asyncio.timeout(self._timeouts.get(scorer.name, self._default_timeout)):
                return await scorer.score(job.conversation)
        except TimeoutError:
            outcome = "timeout"
        except Exception as error:
            outcome = "error"
            log.warning("scorer %s failed on %r: %s", scorer.name, job.conversation.id, error)
        finally:
            self._durations[scorer.name].observe(time.perf_counter() - started)
            self._outcomes[job.agent, scorer.name, outcome].inc()
        return None

    async def _confirm(self, confirmer: Confirmer, evaluation: Evaluation) -> ScoreResult | None:
        try:
            return await asyncio.wait_for(
                confirmer.confirm(evaluation), self._config.pipeline.scorer_timeout
            )
        except TimeoutError:
            evaluation.errors[confirmer.name] = "timeout"
        except Exception as error:
            evaluation.errors[confirmer.name] = str(error)
            log.warning("confirmer %s failed: %s", confirmer.name, error)
        return None

    def _merge(self, evaluation: Evaluation, result: ScoreResult) -> None:
        """Add a result; one score per dimension, the first scorer in config order wins."""
        for name, value in result.scores.items():
            reason = self._rejection(name, value)
            if reason is None and name in evaluation.scores:
                reason = "duplicate"
            if reason is not None:
                self._metrics.ignored_scores.labels(reason).inc()
                continue
            evaluation.scores[name] = float(value)
        evaluation.flags.extend(f for f in result.flags if f not in evaluation.flags)
        evaluation.explanations.update(result.explanations)

    def _rejection(self, name: str, value: float) -> str | None:
        dimension = self._dimensions.get(name)
        if dimension is None:
            return "undeclared_dimension"
        if not isinstance(value, int | float) or not math.isfinite(value):
            return "not_finite"
        if not dimension.scale_min <= value <= dimension.scale_max:
            return "off_scale"
        return None

    def _record(self, evaluation: Evaluation) -> None:
        agent = evaluation.agent
        for name, value in evaluation.scores.items():
            self._metrics.scores.observe(agent, name, value)
        for flag in evaluation.flags:
            self._metrics.flags.labels(agent, self._metrics.flag_label(flag)).inc()
        self._metrics.scored.labels(agent).inc()
