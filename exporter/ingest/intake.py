"""The one door every conversation goes through, from the JSON sink and OTLP alike.

Here a conversation gets its agent label (from the allow-list only), is counted, and is either
queued for scoring, dropped with a reason, or parked in the late-signal buffer. The counters
here are lock-free ``LoopCounter`` children resolved once, so an item costs a few attribute
updates beyond the sampling decision.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from exporter.config.model import OTHER_AGENT, Config
from exporter.metrics import LoopChild as _Child
from exporter.metrics import Metrics
from exporter.model import Conversation, Feedback, decode_conversation
from exporter.pipeline import Pipeline
from exporter.sampling import LateSignalBuffer, Sampler

__all__ = ["Counts", "Intake"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Counts:
    """What happened to the conversations of one request."""

    accepted: int = 0
    sampled: int = 0
    dropped: int = 0


class Intake:
    """Labels, counts and routes conversations to scoring or the late-signal buffer."""

    def __init__(
        self,
        *,
        config: Config,
        metrics: Metrics,
        sampler: Sampler,
        late_buffer: LateSignalBuffer,
        pipeline: Pipeline,
    ) -> None:
        self._labels: dict[str, str] = {}
        self._metrics = metrics
        self._sampler = sampler
        self._late = late_buffer
        self._pipeline = pipeline
        # Children resolved once: `.labels()` costs more than the increment itself.
        self._received: dict[str, _Child] = {}
        self._not_sampled: dict[str, _Child] = {}
        self._agent_cost: dict[str, _Child] = {}
        self._use_agents(config)
        self._budget_drops = metrics.dropped.labels("daily_budget")
        self._queue_drops = metrics.dropped.labels("queue_full")
        self._no_content = metrics.dropped.labels("no_content")
        metrics.add_gauge(
            "late_buffer_conversations",
            "Unsampled conversations kept for late feedback signals.",
            lambda: len(late_buffer),
        )
        metrics.add_gauge(
            "late_buffer_bytes", "Bytes held by the late-signal buffer.", lambda: late_buffer.nbytes
        )
        metrics.add_agent_gauge(
            "sampling_rate",
            "Share of the agent's conversations sampled without a boost trigger now: "
            "sampling.base_rate, halved while the daily budget is paced, plus min-fill.",
            lambda: sampler.rates(self._agent_labels),
        )

    def _use_agents(self, config: Config) -> None:
        self._labels = {agent: agent for agent in config.agents}
        self._agent_labels = config.agent_labels
        # Children of agents a reload removed stay: buffered and queued conversations of
        # theirs are still counted when they leave.
        for agent in config.agent_labels:
            self._received[agent] = self._metrics.conversations.labels(agent)
            self._not_sampled[agent] = self._metrics.not_sampled.labels(agent)
            self._agent_cost[agent] = self._metrics.agent_cost.labels(agent)

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded config's agents and sampling; buffered conversations stay."""
        self._use_agents(config)
        self._sampler.reconfigure(config.sampling)

    def accept(self, items: Iterable[tuple[Conversation, bytes]]) -> Counts:
        """Take decoded conversations (with their raw JSON) and route each one."""
        counts = Counts()
        labels, decide, late, submit = self._labels, self._sampler.decide, self._late, self._submit
        # Without a scorer that needs no text, a conversation without any is not worth a
        # sample: it is dropped before it takes a place in the day's budget.
        text_needed = not self._pipeline.scores_without_text
        for conversation, raw in items:
            agent = labels.get(conversation.agent, OTHER_AGENT)
            self._received[agent].inc()
            usage = conversation.usage
            if usage is not None and usage.cost_usd:
                self._agent_cost[agent].inc(usage.cost_usd)
            counts.accepted += 1
            if text_needed and not conversation.has_text():
                self._no_content.inc()
                counts.dropped += 1
                continue
            verdict = decide(conversation, agent)
            reason = verdict.reason
            if reason is None:
                if verdict.promotable:  # kept for a while: a late signal may still boost it
                    for left in late.put(conversation.id, agent, raw):
                        self._not_sampled[left].inc()
                else:
                    self._not_sampled[agent].inc()
            elif submit(conversation, agent, reason):
                counts.sampled += 1
            else:
                counts.dropped += 1
        return counts

    def refuse(self, agent: str | None, *, reason: str, count: int = 1) -> None:
        """Count conversations received but never passed on (an OTLP assembly that failed).

        They count as received and as dropped for ``reason``, so the books still balance.
        """
        self._received[self._labels.get(agent or "", OTHER_AGENT)].inc(count)
        self._metrics.dropped.labels(reason).inc(count)

    def _submit(self, conversation: Conversation, agent: str, reason: str) -> bool:
        """Queue a sampled conversation, or count why it was dropped; return whether queued."""
        if reason == "daily_budget":
            self._budget_drops.inc()
            return False
        self._metrics.sampled.labels(agent, reason).inc()
        if self._pipeline.submit(conversation, agent=agent, reason=reason):
            return True
        self._queue_drops.inc()
        return False

    def feedback(self, feedback: Feedback) -> str:
        """Apply a late signal; return the outcome (``sampled``, ``not_sampled``, ``unknown``)."""
        outcome = self._feedback(feedback)
        self._metrics.feedback.labels(outcome).inc()
        return outcome

    def _feedback(self, feedback: Feedback) -> str:
        entry = self._late.pop(feedback.id)
        if entry is None:
            if not self._sampler.can_promote(feedback.id):
                # Outside the boost band no signal gets a conversation scored, so none of
                # these is kept: the answer follows from the id alone, in every replica.
                return "not_sampled"
            # Already sampled, never seen, or aged out of the buffer: nothing left to decide.
            return "unknown"
        agent, raw = entry
        conversation = decode_conversation(raw)
        conversation = msgspec.structs.replace(
            conversation, signals={**conversation.signals, **feedback.signals}
        )
        # The same decision the conversation would have had with the signal on arrival.
        verdict = self._sampler.decide(conversation, agent)
        if verdict.reason is not None:
            return "sampled" if self._submit(conversation, agent, verdict.reason) else "dropped"
        if verdict.promotable:  # still in the band: another signal may yet boost it
            self._not_sampled_after(self._late.put(conversation.id, agent, _encode(conversation)))
        else:
            self._not_sampled[agent].inc()
        return "not_sampled"

    def _not_sampled_after(self, agents: list[str]) -> None:
        for agent in agents:
            self._not_sampled[agent].inc()

    def expire(self) -> None:
        """Count conversations that aged out of the late-signal buffer as not sampled."""
        self._not_sampled_after(self._late.expire())

    def close(self) -> None:
        """Count what the late-signal buffer still holds as not sampled (shutdown)."""
        self._not_sampled_after(self._late.drain())


def _encode(conversation: Conversation) -> bytes:
    return msgspec.json.encode(conversation)
