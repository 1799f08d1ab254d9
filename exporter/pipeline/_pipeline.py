"""Scores sampled conversations off the request path.

``submit`` never waits: the sender of a conversation must never be slowed by scoring, so a full
queue is a counted drop. Workers run every scorer of a conversation, each failure counted and
never taking its worker down. Everything derived from the config lives in one ``_Setup``: a
reload swaps it, evaluations already running finish with the setup they started with, and the
parts the new setup no longer uses are closed once the last of those evaluations is done.

A conversation without any user or assistant text (content capture off upstream) goes only to
the scorers that say ``needs_text = False``, and no confirmer sees it: a text check would
score the missing content as a bad answer. When those scorers say nothing either, it is
dropped as ``no_content`` rather than counted as scored.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.config.model import Config
from exporter.logs import FailureLog
from exporter.metrics import HistogramSeries, LoopChild, Metrics
from exporter.model import Conversation
from exporter.types import (
    Closeable,
    Confirmer,
    Evaluation,
    EvaluationSink,
    Scorer,
    ScoreResult,
    needs_text,
)

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

_OUTCOMES = ("ok", "error", "timeout")
#: Seconds between two log lines about one failing scorer or confirmer (the counters get all).
FAILURE_LOG_INTERVAL = 60.0


@dataclass(slots=True)
class _Job:
    conversation: Conversation
    agent: str
    reason: str


#: An inline scorer with its ``scorer_duration`` child and its ``evaluations{outcome="ok"}`` one.
_InlineRun = tuple[Scorer, HistogramSeries, LoopChild]


class _Setup:
    """The scorers, confirmers, sinks and limits of one config, with resolved metric children."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        scorers: Sequence[Scorer],
        confirmers: Sequence[Confirmer],
        sinks: Sequence[EvaluationSink],
    ) -> None:
        self._metrics = metrics
        # Inline scorers never wait: a task and a timer each would cost more than the check.
        self.inline = tuple(s for s in scorers if getattr(s, "inline", False))
        self.awaiting = tuple(s for s in scorers if not getattr(s, "inline", False))
        # What runs on a conversation without user or assistant text.
        self.awaiting_without_text = tuple(s for s in self.awaiting if not needs_text(s))
        self.without_text = any(not needs_text(s) for s in scorers)
        self.confirmers = tuple(confirmers)
        self.sinks = tuple(sinks)
        self.dimensions = {d.name: d for d in config.dimensions}
        self.timeouts = {s.name: s.timeout for s in config.scorers if s.timeout is not None}
        self.default_timeout = config.pipeline.scorer_timeout
        self.durations = {s.name: metrics.scorer_duration.labels(s.name) for s in scorers}
        self.outcomes = {
            (agent, s.name, outcome): metrics.evaluations.labels(agent, s.name, outcome)
            for agent in config.agent_labels
            for s in scorers
            for outcome in _OUTCOMES
        }
        self._inline_runs: dict[tuple[str, bool], tuple[_InlineRun, ...]] = {}
        for agent in config.agent_labels:
            self.inline_runs(agent, text=True)
            self.inline_runs(agent, text=False)
        self.active = 0  # evaluations running with this setup
        self.retired = False

    def inline_runs(self, agent: str, *, text: bool) -> tuple[_InlineRun, ...]:
        """Return the inline scorers with their duration and ``ok`` children for ``agent``.

        Without ``text``, only those that need none.
        """
        runs = self._inline_runs.get((agent, text))
        if runs is None:  # a job queued before a reload removed its agent: resolved once
            runs = self._inline_runs[agent, text] = tuple(
                (s, self.durations[s.name], self.outcome(agent, s.name, "ok"))
                for s in self.inline
                if text or not needs_text(s)
            )
        return runs

    def outcome(self, agent: str, scorer: str, outcome: str) -> LoopChild:
        """Return the ``evaluations`` child of one scorer run's outcome."""
        key = (agent, scorer, outcome)
        return self.outcomes.get(key) or self._metrics.evaluations.labels(*key)

    def parts(self) -> tuple[object, ...]:
        return (*self.inline, *self.awaiting, *self.confirmers, *self.sinks)


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
        self._metrics = metrics
        self._workers_wanted = config.pipeline.workers
        self._setup = _Setup(config, metrics, scorers, confirmers, sinks)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(config.pipeline.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._cancelled = 0  # evaluations cut short by shutdown
        self._failure_log = FailureLog(log, interval=FAILURE_LOG_INTERVAL)
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
    def scores_without_text(self) -> bool:
        """Say whether any scorer can score a conversation without user or assistant text."""
        return self._setup.without_text

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

    def reconfigure(
        self,
        config: Config,
        *,
        scorers: Sequence[Scorer],
        confirmers: Sequence[Confirmer] = (),
    ) -> None:
        """Score from now on with a reloaded ``config``'s parts; queue, workers, sinks stay."""
        old = self._setup
        self._setup = _Setup(config, self._metrics, scorers, confirmers, old.sinks)
        old.retired = True
        self._retire_if_done(old)

    async def start(self) -> None:
        """Start the workers."""
        self._accepting = True
        self._workers = [
            asyncio.create_task(self._work(), name=f"scorer-worker-{i}")
            for i in range(self._workers_wanted)
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
        if left or self._cancelled:
            # The whole of dropped{reason="shutdown"}: the last word once /metrics is gone.
            log.warning(
                "shutdown dropped %d conversations (%d queued, %d cancelled while being scored)",
                left + self._cancelled,
                left,
                self._cancelled,
            )
        await asyncio.gather(*self._closing)
        await _close(self._setup.parts())

    def _retire_if_done(self, setup: _Setup) -> None:
        if not (setup.retired and setup.active == 0):
            return
        current = {id(part) for part in self._setup.parts()}
        unused = [part for part in setup.parts() if id(part) not in current]
        if unused:
            task = asyncio.get_running_loop().create_task(_close(unused))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            self._in_flight += 1
            try:
                await self._evaluate(job)
            except asyncio.CancelledError:
                # Cancelled mid-scoring at shutdown: this one will never be scored.
                self._metrics.dropped.labels("shutdown").inc()
                self._cancelled += 1
                raise
            except Exception:
                log.exception("evaluating conversation %r failed", job.conversation.id)
            finally:
                self._in_flight -= 1
                self._queue.task_done()

    async def _evaluate(self, job: _Job) -> None:
        setup = self._setup
        setup.active += 1
        try:
            await self._evaluate_with(setup, job)
        finally:
            setup.active -= 1
            self._retire_if_done(setup)

    async def _evaluate_with(self, setup: _Setup, job: _Job) -> None:
        evaluation = Evaluation(job.conversation, job.agent, job.reason)
        text = job.conversation.has_text()
        results = await self._run_inline(setup, job, text=text)
        awaiting = setup.awaiting if text else setup.awaiting_without_text
        if len(awaiting) == 1:
            results.append(await self._run(setup, awaiting[0], job))
        elif awaiting:
            results += await asyncio.gather(*(self._run(setup, s, job) for s in awaiting))
        for result in results:
            if result is not None:
                self._merge(setup, evaluation, result)
        if not text and not (evaluation.scores or evaluation.flags):
            self._metrics.dropped.labels("no_content").inc()
            return
        for confirmer in setup.confirmers if text else ():
            extra = await self._confirm(setup, confirmer, evaluation)
            if extra is not None:
                self._merge_confirmation(setup, evaluation, extra)
        self._record(evaluation)
        for sink in setup.sinks:
            try:
                await sink.handle(evaluation)
            except Exception:
                log.exception("sink %r failed on conversation %r", sink, job.conversation.id)

    async def _run_inline(
        self, setup: _Setup, job: _Job, *, text: bool
    ) -> list[ScoreResult | None]:
        """Run the inline scorers in turn: no timeout (they never wait) and no frame each."""
        results: list[ScoreResult | None] = []
        conversation = job.conversation
        for scorer, duration, ok in setup.inline_runs(job.agent, text=text):
            started = time.perf_counter()
            try:
                results.append(await scorer.score(conversation))
            except Exception as error:
                results.append(None)
                setup.outcome(job.agent, scorer.name, "error").inc()
                self._log_failure(f"scorer {scorer.name}", f" on {conversation.id!r}", error)
            else:
                ok.inc()
            duration.observe(time.perf_counter() - started)
        return results

    async def _run(self, setup: _Setup, scorer: Scorer, job: _Job) -> ScoreResult | None:
        started = time.perf_counter()
        outcome = "ok"
        try:
            # asyncio.timeout, unlike wait_for, runs the scorer in this task: no task per call.
            async with asyncio.timeout(setup.timeouts.get(scorer.name, setup.default_timeout)):
                return await scorer.score(job.conversation)
        except TimeoutError:
            outcome = "timeout"
        except Exception as error:
            outcome = "error"
            self._log_failure(f"scorer {scorer.name}", f" on {job.conversation.id!r}", error)
        finally:
            setup.durations[scorer.name].observe(time.perf_counter() - started)
            # A job queued before a reload may carry an agent the new setup does not list.
            setup.outcome(job.agent, scorer.name, outcome).inc()
        return None

    async def _confirm(
        self, setup: _Setup, confirmer: Confirmer, evaluation: Evaluation
    ) -> ScoreResult | None:
        try:
            async with asyncio.timeout(setup.default_timeout):
                return await confirmer.confirm(evaluation)
        except TimeoutError:
            evaluation.errors[confirmer.name] = "timeout"
        except Exception as error:
            evaluation.errors[confirmer.name] = str(error)
            self._log_failure(f"confirmer {confirmer.name}", "", error)
        return None

    def _log_failure(self, what: str, where: str, error: Exception) -> None:
        """Log a failure: the first of each kind, then one a kind per interval, with counts."""
        self._failure_log.failed(what, error, where=where)

    def _merge(self, setup: _Setup, evaluation: Evaluation, result: ScoreResult) -> None:
        """Add a result; one score per dimension, the first scorer in config order wins."""
        for name, value in result.scores.items():
            reason = _rejection(setup, name, value)
            if reason is None and name in evaluation.scores:
                reason = "duplicate"
            if reason is not None:
                self._metrics.ignored_scores.labels(reason).inc()
                continue
            evaluation.scores[name] = float(value)
        if result.flags:
            evaluation.flags.extend(f for f in result.flags if f not in evaluation.flags)
        if result.explanations:
            evaluation.explanations.update(result.explanations)

    def _merge_confirmation(
        self, setup: _Setup, evaluation: Evaluation, result: ScoreResult
    ) -> None:
        """Add a confirmer's result: its scores re-score first-tier ones, never add new ones."""
        for name, value in result.scores.items():
            reason = _rejection(setup, name, value)
            if reason is None and name not in evaluation.scores:
                reason = "not_scored"
            if reason is not None:
                self._metrics.ignored_scores.labels(reason).inc()
                continue
            evaluation.confirmed[name] = float(value)
        self._merge(
            setup, evaluation, ScoreResult(flags=result.flags, explanations=result.explanations)
        )

    def _record(self, evaluation: Evaluation) -> None:
        agent = evaluation.agent
        # The confirmed score: a tier-2 judge that overturns a bad score is what pages see.
        for name, value in evaluation.final_scores.items():
            self._metrics.scores.observe(agent, name, value)
        for flag in evaluation.flags:
            self._metrics.flags.labels(agent, self._metrics.flag_label(flag)).inc()
        self._metrics.scored.labels(agent).inc()


def _rejection(setup: _Setup, name: str, value: float) -> str | None:
    dimension = setup.dimensions.get(name)
    if dimension is None:
        return "undeclared_dimension"
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "not_finite"
    if not dimension.scale_min <= value <= dimension.scale_max:
        return "off_scale"
    return None


async def _close(parts: Sequence[object]) -> None:
    for part in parts:
        if isinstance(part, Closeable):
            try:
                await part.aclose()
            except Exception:
                log.exception("closing %r failed", part)
