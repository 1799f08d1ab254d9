"""A busy day through the real sampler: the exporter's counters, step by step.

Conversations arrive at a steady rate; the real ``Sampler`` (with a clock on the series'
timeline, which starts at UTC midnight) decides each one, and every sampled conversation is
scored and counted as the daemon would: conversations, sampled by reason, daily-budget drops,
scorer runs, the score histogram and the sampling-rate gauge.
"""

from __future__ import annotations

import random
from collections import defaultdict

from exporter.config.model import Config, Dimension, SamplingConfig
from exporter.generate.conventions import SCORE, le_value
from exporter.model import Conversation, Message
from exporter.names import PREFIX
from exporter.sampling import Sampler
from exporter.scenarios._synthetic import Series, counter_series, healthy, poisson

__all__ = ["sampled_day"]

_MESSAGES = [Message(role="user", content="Where is my order?"), Message(role="assistant")]


def sampled_day(
    config: Config,
    dimension: Dimension,
    *,
    agent: str,
    per_minute: float,
    minutes: float,
    interval: float,
    seed: int,
    sampling: SamplingConfig | None = None,
) -> list[Series]:
    """Return the exporter's series for ``per_minute`` conversations of ``agent``.

    Each sampled conversation gets one score on ``dimension``, healthy throughout.
    """
    rng = random.Random(seed)
    now = [0.0]
    sampler = Sampler(sampling or config.sampling, clock=lambda: now[0])
    draw = healthy(dimension)
    bounds = list(dimension.thresholds.values())
    steps = round(minutes * 60 / interval)
    totals: defaultdict[str, float] = defaultdict(float)
    points: dict[str, list[float]] = {}
    rates: list[float] = []
    number = 0
    for index in range(steps + 1):
        for key in ("conversations", "base", "boost", "min_fill", "budget", "count", "sum"):
            points.setdefault(key, []).append(totals[key])
        for bound in bounds:
            points.setdefault(f"le{bound}", []).append(totals[f"le{bound}"])
        points.setdefault("squares", []).append(totals["squares"])
        rates.append(sampler.rates((agent,))[agent])
        if index == steps:
            break
        arrivals = poisson(rng, per_minute * interval / 60)
        for arrival in range(arrivals):
            now[0] = index * interval + interval * arrival / max(arrivals, 1)
            number += 1
            conversation = Conversation(id=f"c-{seed}-{number}", agent=agent, messages=_MESSAGES)
            totals["conversations"] += 1
            reason = sampler.decide(conversation, agent).reason
            if reason == "daily_budget":
                totals["budget"] += 1
            elif reason is not None:
                totals[reason] += 1
                score = draw(rng)
                totals["count"] += 1
                totals["sum"] += score
                totals["squares"] += score * score
                for bound in bounds:
                    totals[f"le{bound}"] += score <= bound
        now[0] = (index + 1) * interval
    who = {"agent": agent}
    scored = {**who, "dimension": dimension.name}
    series = [
        counter_series(f"{PREFIX}_conversations_total", who, points["conversations"]),
        counter_series(f"{PREFIX}_dropped_total", {"reason": "daily_budget"}, points["budget"]),
        counter_series(f"{PREFIX}_sampling_rate", who, rates),
        counter_series(f"{SCORE}_count", scored, points["count"]),
        counter_series(f"{SCORE}_sum", scored, points["sum"]),
        counter_series(f"{SCORE}_squares_total", scored, points["squares"]),
        counter_series(
            f"{PREFIX}_evaluations_total",
            {**who, "scorer": "passthrough", "outcome": "ok"},
            points["count"],
        ),
    ]
    series.extend(
        counter_series(f"{PREFIX}_sampled_total", {**who, "reason": reason}, points[reason])
        for reason in ("base", "boost", "min_fill")
    )
    series.extend(
        counter_series(f"{SCORE}_bucket", {**scored, "le": le_value(bound)}, points[f"le{bound}"])
        for bound in bounds
    )
    return series
