"""Synthetic exporter series for ``promtool test rules``: scores drawn step by step.

Each stream is one (agent, dimension): a Poisson number of scored conversations per scrape
interval, each score drawn from the dimension's healthy distribution (or a degraded one),
accumulated into exactly the counters the daemon exports: ``_count``, ``_sum``,
``_squares_total`` (the squares of the same scores) and the ``_bucket`` at every threshold
(inclusive ``le``). Rates are per minute and times are minutes from the start, whatever the
scrape interval, so one scenario reads the same at 15s, 1m or 2m.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from exporter.config.model import Dimension
from exporter.generate.conventions import SCORE, le_value

__all__ = [
    "HEALTHY",
    "INSTANCE",
    "JOB",
    "Series",
    "Stream",
    "constant",
    "counter_series",
    "diurnal",
    "healthy",
    "input_series",
    "poisson",
    "ramp",
    "step",
]

Draw = Callable[[random.Random], float]
#: A function of the time in minutes from the start of the series.
Rate = Callable[[float], float]
Shift = Callable[[float], float]
#: One promtool ``input_series`` entry: ``{"series": ..., "values": ...}``.
Series = dict[str, str]

JOB = "agent-quality-exporter"
INSTANCE = "exporter-0:10340"

#: Healthy score distributions of the default dimensions (mean, sd in comments).
HEALTHY: Mapping[str, Draw] = {
    # mean 0.80, sd 0.20; ~10% at or below 0.5 (the SLO objective 0.8 allows 20%)
    "task_completion": lambda rng: rng.betavariate(2.4, 0.6),
    # integers 1-5: mean 4.14, sd 0.88; 5% at or below 2
    "coherence": lambda rng: float(rng.choices((1, 2, 3, 4, 5), (1, 4, 15, 40, 40))[0]),
    # mostly every tool call fine: mean 0.95; 5% at or below 0.5
    "tool_success": lambda rng: 1.0 if rng.random() < 0.9 else rng.random(),
    # 3% of conversations end without an answer
    "final_answer": lambda rng: 0.0 if rng.random() < 0.03 else 1.0,
    # 5% thumbs down or escalation
    "user_feedback": lambda rng: 0.0 if rng.random() < 0.05 else 1.0,
}


def healthy(dimension: Dimension) -> Draw:
    """Return the healthy distribution of ``dimension``.

    The default dimensions have their own; any other gets task_completion's shape (mean at
    80% of the way to the good end, sd 20% of the scale) on its own scale and direction.
    """
    known = HEALTHY.get(dimension.name)
    if known is not None:
        return known
    low, span = dimension.scale_min, dimension.scale_max - dimension.scale_min

    def draw(rng: random.Random) -> float:
        good = rng.betavariate(2.4, 0.6)
        return low + span * (good if dimension.higher_is_better else 1 - good)

    return draw


def constant(value: float) -> Rate:
    """Return a rate of ``value`` scored conversations a minute."""
    return lambda minute: value


def diurnal(average: float, swing: float = 0.6) -> Rate:
    """Return a rate swinging +-``swing`` around ``average`` once a day (night: low)."""
    return lambda minute: average * (1 + swing * math.sin(2 * math.pi * minute / 1440))


def step(at: float, size: float, *, until: float | None = None) -> Shift:
    """Return a change of ``size`` from minute ``at`` (to ``until``, exclusive)."""
    return lambda minute: size if at <= minute and (until is None or minute < until) else 0.0


def ramp(at: float, size: float, over: float) -> Shift:
    """Return a drop growing linearly from 0 at ``at`` to ``size`` ``over`` minutes later."""
    return lambda minute: size * min(max(minute - at, 0) / over, 1.0)


def _none(minute: float) -> float:
    return 0.0


@dataclass(frozen=True)
class Stream:
    """One agent's scores on one dimension.

    ``shift`` moves every score towards bad by that much; ``bad_share`` instead makes that
    share of the conversations bad (uniform past ``thresholds.bad``) and keeps the rest as
    healthy as before (drawn again until not bad): the error budget burns at a chosen rate.
    """

    agent: str
    dimension: Dimension
    rate: Rate
    shift: Shift = _none
    bad_share: Shift = _none
    draw: Draw | None = field(default=None, compare=False)

    def score(self, rng: random.Random, minute: float) -> float:
        """Draw one score at ``minute``."""
        dimension = self.dimension
        draw = self.draw or healthy(dimension)
        share = self.bad_share(minute)
        if share > 0 and dimension.thresholds.bad is not None:
            return self._mixed(rng, draw, share)
        value = draw(rng)
        drop = self.shift(minute)
        value = value - drop if dimension.higher_is_better else value + drop
        return dimension.clamp(value)

    def _mixed(self, rng: random.Random, draw: Draw, share: float) -> float:
        dimension, bad = self.dimension, self.dimension.thresholds.bad
        assert bad is not None
        if rng.random() < share:
            if dimension.higher_is_better:
                return rng.uniform(dimension.scale_min, bad)
            return rng.uniform(bad, dimension.scale_max)
        for _ in range(1000):
            value = draw(rng)
            if not dimension.is_bad(value):
                return value
        raise ValueError(f"{dimension.name}: the healthy distribution is almost always bad")


def poisson(rng: random.Random, mean: float) -> int:
    """Draw a Poisson count (Knuth below 30, else a rounded normal: fast and close enough)."""
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _labels(pairs: Mapping[str, str]) -> str:
    pairs = {**pairs, "instance": INSTANCE, "job": JOB}
    return ",".join(f'{key}="{value}"' for key, value in pairs.items())


def _values(points: Iterable[float]) -> str:
    return " ".join(f"{value:.12g}" for value in points)


def counter_series(name: str, labels: Mapping[str, str], points: Iterable[float]) -> Series:
    """Return one input series of the exporter's job from its value at each step."""
    return {"series": f"{name}{{{_labels(labels)}}}", "values": _values(points)}


def input_series(
    streams: Iterable[Stream], *, minutes: float, seed: int, interval: float = 60.0
) -> list[Series]:
    """Return promtool ``input_series`` for ``minutes`` of every stream, one point a scrape.

    The first point is at time 0; the counters at step ``i`` hold every score drawn before.
    """
    rng = random.Random(seed)
    steps = round(minutes * 60 / interval)
    series = [counter_series("up", {}, [1.0] * (steps + 1))]
    for stream in streams:
        bounds = stream.dimension.thresholds.values()
        count, total, squares = [0.0], [0.0], [0.0]
        buckets: dict[float, list[float]] = {bound: [0.0] for bound in bounds}
        per_step = interval / 60
        for index in range(steps):
            minute = index * per_step
            mean = stream.rate(minute) * per_step
            scores = [stream.score(rng, minute) for _ in range(poisson(rng, mean))]
            count.append(count[-1] + len(scores))
            total.append(total[-1] + sum(scores))
            squares.append(squares[-1] + sum(score * score for score in scores))
            for bound, points in buckets.items():
                points.append(points[-1] + sum(1 for score in scores if score <= bound))
        labels = {"agent": stream.agent, "dimension": stream.dimension.name}
        series.append(counter_series(f"{SCORE}_count", labels, count))
        series.append(counter_series(f"{SCORE}_sum", labels, total))
        series.append(counter_series(f"{SCORE}_squares_total", labels, squares))
        for bound, points in buckets.items():
            bucket = {**labels, "le": le_value(bound)}
            series.append(counter_series(f"{SCORE}_bucket", bucket, points))
    return series
