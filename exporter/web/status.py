"""Recent scores and flags in process, for the status page at ``/``.

People without Grafana yet still want to see quality move. An ``EvaluationSink`` keeps, per
configured agent and dimension, a ring of fixed-width time buckets (count and sum of scores),
plus running totals since start; per flag, the same ring of counts and its latest examples.
Memory is fixed: agents x dimensions x buckets numbers, and at most 65 flags (the flags
counter's own bound) x buckets numbers and ``flag_examples`` short records, whatever the
traffic. Prometheus remains the source of truth; this is a window into one process.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from exporter.config.model import OTHER_AGENT, Config, Dimension
from exporter.metrics import Metrics
from exporter.types import Evaluation

__all__ = ["STATUS", "FlagExample", "FlagGroup", "Series", "StatusBoard"]

#: Conversation ids come from payloads: show at most this much of one.
MAX_ID_CHARS = 64


class _Ring:
    """Count and sum of scores per time bucket, the last ``size`` buckets, and totals."""

    __slots__ = ("counts", "epochs", "size", "sums", "total_count", "total_sum")

    def __init__(self, size: int) -> None:
        self.size = size
        self.epochs = [-1] * size
        self.counts = [0] * size
        self.sums = [0.0] * size
        self.total_count = 0
        self.total_sum = 0.0

    def add(self, epoch: int, value: float) -> None:
        slot = epoch % self.size
        if self.epochs[slot] != epoch:  # a bucket from a lap ago: reuse it
            self.epochs[slot], self.counts[slot], self.sums[slot] = epoch, 0, 0.0
        self.counts[slot] += 1
        self.sums[slot] += value
        self.total_count += 1
        self.total_sum += value

    def window(self, last: int, now: int) -> tuple[int, float]:
        """Return count and sum over the buckets ``now - last + 1 .. now``."""
        count, total = 0, 0.0
        for epoch in range(now - last + 1, now + 1):
            slot = epoch % self.size
            if self.epochs[slot] == epoch:
                count += self.counts[slot]
                total += self.sums[slot]
        return count, total

    def means(self, now: int) -> list[float | None]:
        """Return each bucket's mean, oldest first; None where nothing was scored."""
        points: list[float | None] = []
        for epoch in range(now - self.size + 1, now + 1):
            slot = epoch % self.size
            fresh = self.epochs[slot] == epoch and self.counts[slot]
            points.append(self.sums[slot] / self.counts[slot] if fresh else None)
        return points


@dataclass(frozen=True, slots=True)
class Series:
    """What the page shows for one agent and dimension."""

    agent: str
    dimension: Dimension
    recent_count: int
    recent_mean: float | None
    baseline_count: int
    baseline_mean: float | None
    points: list[float | None]


@dataclass(frozen=True, slots=True)
class FlagExample:
    """One conversation a flag was raised on."""

    at: float
    agent: str
    conversation: str


@dataclass(frozen=True, slots=True)
class FlagGroup:
    """What the page shows for one flag: how often lately and since start, the latest."""

    flag: str
    recent_count: int
    total_count: int
    examples: list[FlagExample]  # newest first

    @property
    def last_at(self) -> float:
        return self.examples[0].at


class _Flag:
    """One flag's counts per time bucket and its latest examples."""

    __slots__ = ("examples", "ring")

    def __init__(self, buckets: int, examples: int) -> None:
        self.ring = _Ring(buckets)
        self.examples: deque[FlagExample] = deque(maxlen=examples)


class StatusBoard:
    """Records evaluations (as a pipeline sink) into bounded rings for the status page."""

    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics,
        clock: Callable[[], float] | None = None,
        bucket_seconds: float = 15.0,
        buckets: int = 120,
        recent_buckets: int = 20,
        flag_examples: int = 3,
    ) -> None:
        if not 0 < recent_buckets <= buckets:
            raise ValueError("recent_buckets must be between 1 and buckets")
        self._metrics = metrics
        self._clock = clock or time.time
        self.bucket_seconds = bucket_seconds
        self.buckets = buckets
        self.recent_buckets = recent_buckets
        self._rings: dict[tuple[str, str], _Ring] = {}
        self.reconfigure(config)
        self.flag_examples = flag_examples
        # Keyed by the flags counter's bounded label: at most MAX_FLAG_VALUES and `other`.
        self._flags: dict[str, _Flag] = {}

    def reconfigure(self, config: Config) -> None:
        """Show a reloaded config's agents and dimensions; existing history stays."""
        self._dimensions = config.dimensions
        self._agents = config.agent_labels
        for agent in config.agent_labels:
            for dimension in config.dimensions:
                self._rings.setdefault((agent, dimension.name), _Ring(self.buckets))

    def _epoch(self) -> int:
        return int(self._clock() // self.bucket_seconds)

    async def handle(self, evaluation: Evaluation) -> None:
        """Record the evaluation's scores and flags (O(1) per score)."""
        epoch = self._epoch()
        agent = evaluation.agent
        for name, value in evaluation.final_scores.items():
            ring = self._rings.get((agent, name))
            if ring is not None:  # the pipeline only passes declared dimensions and agents
                ring.add(epoch, value)
        if evaluation.flags:
            example = FlagExample(self._clock(), agent, evaluation.conversation.id[:MAX_ID_CHARS])
            for flag in evaluation.flags:
                # The same bounded label the flags counter uses: a plugin may echo payload text.
                label = self._metrics.flag_label(flag)
                group = self._flags.get(label)
                if group is None:
                    group = self._flags[label] = _Flag(self.buckets, self.flag_examples)
                group.ring.add(epoch, 0.0)
                group.examples.append(example)

    def flags(self) -> list[FlagGroup]:
        """Return every flag raised since start: the most raised lately first, then the latest."""
        now = self._epoch()
        groups = [
            FlagGroup(
                flag=label,
                recent_count=group.ring.window(self.recent_buckets, now)[0],
                total_count=group.ring.total_count,
                examples=list(reversed(group.examples)),
            )
            for label, group in self._flags.items()
        ]
        groups.sort(key=lambda g: (-g.recent_count, -g.last_at, g.flag))
        return groups

    def series(self) -> list[Series]:
        """Return every configured agent's dimensions, and ``other``'s once it has scores."""
        now = self._epoch()
        shown = []
        for agent in self._agents:
            rings = [(d, self._rings[agent, d.name]) for d in self._dimensions]
            if agent == OTHER_AGENT and not any(ring.total_count for _, ring in rings):
                continue
            for dimension, ring in rings:
                count, total = ring.window(self.recent_buckets, now)
                before = ring.total_count - count
                shown.append(
                    Series(
                        agent=agent,
                        dimension=dimension,
                        recent_count=count,
                        recent_mean=total / count if count else None,
                        baseline_count=before,
                        baseline_mean=(ring.total_sum - total) / before if before else None,
                        points=ring.means(now),
                    )
                )
        return shown


STATUS = web.AppKey("status", StatusBoard)
