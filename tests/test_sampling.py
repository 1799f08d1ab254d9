"""Tests for the sampler: stable hash, rates, boost triggers, daily budget and min-fill pace."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
from freezegun import freeze_time

import exporter.sampling
from exporter.config import SamplingConfig, load_config
from exporter.model import Conversation, Message, Usage
from exporter.sampling import (
    HASH_SPACE,
    SAMPLED_REASONS,
    Sampler,
    Verdict,
    rate_threshold,
    stable_hash,
)

N_IDS = 100_000


def make_config(**overrides: Any) -> SamplingConfig:
    """Return a sampling config with no daily budget, changed by ``overrides``."""
    base = SamplingConfig(
        base_rate=0.05,
        boost_rate=0.25,
        trigger_signals=frozenset({"user_thumbs_down", "escalation_requested"}),
        trigger_tool_error=True,
        trigger_min_total_tokens=8000,
        min_daily_samples=0,
        max_daily_samples=None,
        late_max_conversations=100,
        late_max_bytes=1 << 20,
        late_max_age=60.0,
    )
    return dataclasses.replace(base, **overrides)


def make_conversation(conversation_id: str = "c-1", **fields: Any) -> Conversation:
    """Return a small conversation without any boost trigger unless ``fields`` add one."""
    fields.setdefault(
        "messages",
        [
            Message(role="user", content="Where is my order?"),
            Message(role="assistant", content="Tomorrow."),
        ],
    )
    return Conversation(id=conversation_id, agent="support-bot", **fields)


def utc(text: str) -> float:
    """Return the epoch seconds of an ISO 8601 time with an offset."""
    return dt.datetime.fromisoformat(text).timestamp()


def sequential_ids() -> list[str]:
    """Return ids like an agent's counter would produce."""
    return [f"conv-{i}" for i in range(N_IDS)]


def uuid_ids() -> list[str]:
    """Return random-looking UUID ids, reproducibly."""
    rng = random.Random(20261126)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(N_IDS)]


def within_sigmas(observed: int, *, n: int, p: float, sigmas: float = 5.0) -> bool:
    """Say whether a binomial count is within ``sigmas`` standard deviations of ``n * p``."""
    return abs(observed - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# A child process that prints the hash and verdict of every id it reads on stdin.
_CHILD = """
import json, sys
from exporter.config import SamplingConfig
from exporter.model import Conversation, Message
from exporter.sampling import Sampler, stable_hash

fields = json.loads(sys.argv[1])
config = SamplingConfig(**fields, trigger_signals=frozenset({"user_thumbs_down"}))
sampler = Sampler(config)
out = []
for index, cid in enumerate(json.load(sys.stdin)):
    signals = {"user_thumbs_down": index % 2 == 0}
    conversation = Conversation(id=cid, agent="a", messages=[Message(role="user")], signals=signals)
    out.append([stable_hash(cid), sampler.decide(conversation).reason])
json.dump(out, sys.stdout)
"""


def decisions_here(config: SamplingConfig, ids: list[str]) -> list[list[Any]]:
    """Return ``[hash, reason]`` per id, decided in this process as the child does."""
    sampler = Sampler(config)
    out = []
    for index, cid in enumerate(ids):
        signals: dict[str, Any] = {"user_thumbs_down": index % 2 == 0}
        conversation = Conversation(
            id=cid, agent="a", messages=[Message(role="user")], signals=signals
        )
        out.append([stable_hash(cid), sampler.decide(conversation).reason])
    return out


def decisions_in_child(
    config: SamplingConfig, ids: list[str], *, hash_seed: str
) -> list[list[Any]]:
    """Return ``[hash, reason]`` per id, decided by a fresh interpreter with ``hash_seed``."""
    fields = dataclasses.asdict(config)
    del fields["trigger_signals"]
    root = str(Path(exporter.sampling.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(fields)],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    decided: list[list[Any]] = json.loads(result.stdout)
    return decided


class TestStableHash:
    def test_pinned_value(self) -> None:
        """The hash of a known id never changes: replicas on different versions must agree."""
        assert stable_hash("c-7f3a") == 0x3AC30265BD97BF5F
        assert stable_hash("") == 13020603013274838756

    def test_range(self) -> None:
        """Hashes are 64-bit unsigned integers."""
        values = [stable_hash(f"id-{i}") for i in range(10_000)]
        assert all(0 <= v < HASH_SPACE for v in values)
        assert max(values) > HASH_SPACE // 2 > min(values)

    def test_unicode_and_lone_surrogate(self) -> None:
        """Non-ASCII ids hash, and an id with a lone surrogate hashes instead of raising."""
        assert stable_hash("gespräch-1") != stable_hash("gesprach-1")
        assert 0 <= stable_hash("bad-\ud800-id") < HASH_SPACE

    def test_same_decisions_across_processes(self) -> None:
        """Two interpreters with different PYTHONHASHSEED decide exactly as this one does."""
        config = make_config(base_rate=0.1, boost_rate=0.5)
        ids = [f"conv-{i}" for i in range(5000)]
        here = decisions_here(config, ids)
        assert decisions_in_child(config, ids, hash_seed="1") == here
        assert decisions_in_child(config, ids, hash_seed="4242") == here
        # The comparison is not vacuous: every outcome appears.
        assert {reason for _, reason in here} == {"base", "boost", None}


class TestRateThreshold:
    def test_edges_are_exact(self) -> None:
        """Rate 0 is the bound nothing is below; rate 1 the bound everything is below."""
        assert rate_threshold(0.0) == 0
        assert rate_threshold(1.0) == HASH_SPACE
        assert rate_threshold(0.5) == HASH_SPACE // 2

    def test_just_below_one_stays_below_the_space(self) -> None:
        """The largest rate below 1 does not round up to sampling everything."""
        assert rate_threshold(math.nextafter(1.0, 0.0)) < HASH_SPACE

    @pytest.mark.parametrize("rate", [-0.01, 1.01, math.nan])
    def test_out_of_range(self, rate: float) -> None:
        """A rate outside [0, 1] is refused with the value in the message."""
        with pytest.raises(ValueError, match="within"):
            rate_threshold(rate)


class TestRates:
    @pytest.mark.parametrize("ids", [sequential_ids, uuid_ids], ids=["sequential", "uuid"])
    def test_base_rate_within_bounds(self, ids: Any) -> None:
        """Over 100k ids without triggers the base rate is met within 5 sigma, and nothing else."""
        sampler = Sampler(make_config())
        template = make_conversation()
        reasons = Counter(
            sampler.decide(msgspec.structs.replace(template, id=cid)).reason for cid in ids()
        )
        assert set(reasons) == {"base", None}
        assert within_sigmas(reasons["base"], n=N_IDS, p=0.05)

    @pytest.mark.parametrize("ids", [sequential_ids, uuid_ids], ids=["sequential", "uuid"])
    def test_boost_rate_within_bounds(self, ids: Any) -> None:
        """Over 100k triggered ids, base and boost together meet boost_rate within 5 sigma."""
        sampler = Sampler(make_config())
        template = make_conversation(signals={"user_thumbs_down": True})
        reasons = Counter(
            sampler.decide(msgspec.structs.replace(template, id=cid)).reason for cid in ids()
        )
        assert within_sigmas(reasons["base"], n=N_IDS, p=0.05)
        assert within_sigmas(reasons["boost"], n=N_IDS, p=0.20)
        assert within_sigmas(reasons["base"] + reasons["boost"], n=N_IDS, p=0.25)
        assert sampler.sampled_today == reasons["base"] + reasons["boost"]

    def test_decision_follows_the_thresholds(self) -> None:
        """Each id's reason is exactly what its hash says: base below the base bound, and so on."""
        sampler = Sampler(make_config())
        template = make_conversation(signals={"escalation_requested": True})
        base, boost = rate_threshold(0.05), rate_threshold(0.25)
        for cid in (f"x{i}" for i in range(20_000)):
            h = stable_hash(cid)
            expected = "base" if h < base else "boost" if h < boost else None
            assert sampler.decide(msgspec.structs.replace(template, id=cid)).reason == expected

    def test_rate_one_samples_everything(self) -> None:
        """base_rate 1.0 samples every id."""
        sampler = Sampler(make_config(base_rate=1.0, boost_rate=1.0))
        template = make_conversation()
        assert all(
            sampler.decide(msgspec.structs.replace(template, id=f"a{i}")).reason == "base"
            for i in range(20_000)
        )

    def test_boost_rate_one_samples_every_triggered(self) -> None:
        """boost_rate 1.0 samples every triggered id, and base_rate 0 none as base."""
        sampler = Sampler(make_config(base_rate=0.0, boost_rate=1.0))
        template = make_conversation(signals={"user_thumbs_down": True})
        assert all(
            sampler.decide(msgspec.structs.replace(template, id=f"a{i}")).reason == "boost"
            for i in range(20_000)
        )

    def test_rate_zero_samples_nothing(self) -> None:
        """Both rates 0 sample nothing, even with every trigger holding."""
        sampler = Sampler(make_config(base_rate=0.0, boost_rate=0.0))
        template = make_conversation(
            signals={"user_thumbs_down": True}, usage=Usage(input_tokens=10**6)
        )
        assert not any(
            sampler.decide(msgspec.structs.replace(template, id=f"a{i}")).sampled
            for i in range(20_000)
        )
        assert sampler.sampled_today == 0

    def test_base_wins_over_boost(self) -> None:
        """An id under the base bound is counted as base even when a trigger holds."""
        sampler = Sampler(make_config(base_rate=1.0, boost_rate=1.0))
        conversation = make_conversation(signals={"user_thumbs_down": True})
        assert sampler.decide(conversation) == Verdict("base")

    def test_invalid_rate_refused(self) -> None:
        """A config built around the schema with a rate above 1 is refused."""
        with pytest.raises(ValueError):
            Sampler(make_config(boost_rate=1.5))

    def test_default_config(self) -> None:
        """The embedded default config samples by its documented rates and triggers."""
        config = load_config(None).sampling
        assert (config.base_rate, config.boost_rate) == (0.05, 0.25)
        midnight = utc("2026-11-26T00:00:00+00:00")  # min-fill's target is still 0
        sampler = Sampler(config, clock=lambda: midnight)
        hashes = {cid: stable_hash(cid) for cid in (f"d{i}" for i in range(1000))}
        between = next(
            c for c, h in hashes.items() if rate_threshold(0.05) <= h < rate_threshold(0.25)
        )
        above = next(c for c, h in hashes.items() if h >= rate_threshold(0.25))
        thumbs_down = {"user_thumbs_down": True}
        assert sampler.decide(make_conversation(between, signals=thumbs_down)).reason == "boost"
        assert sampler.decide(make_conversation(between)).reason is None
        assert sampler.decide(make_conversation(above, signals=thumbs_down)).reason is None


class TestPromotable:
    """Which unsampled conversations a late signal could still get sampled."""

    def test_only_the_untriggered_boost_band_is_promotable(self) -> None:
        """Inside [base, boost) without a trigger: promotable; above boost: final."""
        sampler = Sampler(make_config())
        template = make_conversation()
        base, boost = rate_threshold(0.05), rate_threshold(0.25)
        seen: Counter[tuple[str, str | None, bool]] = Counter()
        for cid in (f"p{i}" for i in range(20_000)):
            h = stable_hash(cid)
            verdict = sampler.decide(msgspec.structs.replace(template, id=cid))
            band = "base" if h < base else "band" if h < boost else "above"
            seen[band, verdict.reason, verdict.promotable] += 1
            assert sampler.can_promote(cid) is (h < boost)
        assert set(seen) == {("base", "base", False), ("band", None, True), ("above", None, False)}

    def test_nothing_is_promotable_without_trigger_signals(self) -> None:
        """Late signals only add signals: with none configured as a trigger, none can boost."""
        sampler = Sampler(make_config(trigger_signals=frozenset()))
        ids = [f"q{i}" for i in range(5000)]
        assert not any(sampler.decide(make_conversation(cid)).promotable for cid in ids)
        assert not any(sampler.can_promote(cid) for cid in ids)

    def test_paced_out_base_band_is_promotable(self) -> None:
        """An id the pacing leaves out is promotable if a signal would still boost it now."""
        sampler, _ = paced_sampler(halvings=1)
        base, boost = rate_threshold(0.05), rate_threshold(0.25)
        hashes = {cid: stable_hash(cid) for cid in (f"m{i}" for i in range(20_000))}
        paced_out = next(c for c, h in hashes.items() if base // 2 <= h < base)
        band = next(c for c, h in hashes.items() if base <= h < boost // 2)
        above = next(c for c, h in hashes.items() if boost // 2 <= h < boost)
        assert sampler.decide(make_conversation(paced_out), "busy") == Verdict(None, True)
        assert sampler.decide(make_conversation(band), "busy") == Verdict(None, True)
        assert sampler.decide(make_conversation(above), "busy") == Verdict(None)


class TestVerdict:
    @pytest.mark.parametrize(
        ("reason", "sampled"),
        [
            ("base", True),
            ("boost", True),
            ("min_fill", True),
            ("daily_budget", False),
            (None, False),
        ],
    )
    def test_sampled(self, reason: str | None, sampled: bool) -> None:
        """Only the three sampled reasons say sampled."""
        assert Verdict(reason).sampled is sampled

    def test_reasons_match_the_metric_labels(self) -> None:
        """The sampled reasons are the ``reason`` values docs/metrics.md lists for sampled_total."""
        assert {"base", "boost", "min_fill"} == SAMPLED_REASONS


class TestTriggers:
    """Boost triggers, with base 0 and boost 1 so a trigger alone decides."""

    @pytest.fixture
    def sampler(self) -> Sampler:
        return Sampler(make_config(base_rate=0.0, boost_rate=1.0))

    @pytest.mark.parametrize("name", ["user_thumbs_down", "escalation_requested"])
    @pytest.mark.parametrize("value", [True, 1, "yes"])
    def test_signal_truthy(self, sampler: Sampler, name: str, value: Any) -> None:
        """A configured signal with a truthy value triggers a boost."""
        conversation = make_conversation(signals={name: value})
        assert sampler.has_boost_trigger(conversation)
        assert sampler.decide(conversation).reason == "boost"

    @pytest.mark.parametrize("value", [False, 0, "", None])
    def test_signal_falsy(self, sampler: Sampler, value: Any) -> None:
        """A configured signal with a falsy value does not trigger."""
        conversation = make_conversation(signals={"user_thumbs_down": value})
        assert not sampler.has_boost_trigger(conversation)
        assert sampler.decide(conversation).reason is None

    def test_unconfigured_signal(self, sampler: Sampler) -> None:
        """A truthy signal that is not configured as a trigger does not trigger."""
        assert not sampler.has_boost_trigger(make_conversation(signals={"angry_user": True}))

    @pytest.mark.parametrize("error", [True, "HTTP 500 from lookup_order"])
    def test_tool_error(self, sampler: Sampler, error: bool | str) -> None:
        """A tool message with a truthy error (flag or message) triggers a boost."""
        messages = [
            Message(role="user", content="hi"),
            Message(role="tool", tool_call_id="t1", content="{}", error=False),
            Message(role="tool", tool_call_id="t2", content="{}", error=error),
            Message(role="assistant", content="sorry"),
        ]
        conversation = make_conversation(messages=messages)
        assert sampler.has_boost_trigger(conversation)
        assert sampler.decide(conversation).reason == "boost"

    @pytest.mark.parametrize("error", [False, None, ""])
    def test_tool_without_error(self, sampler: Sampler, error: bool | str | None) -> None:
        """Tool messages whose error is falsy do not trigger."""
        messages = [Message(role="user"), Message(role="tool", content="{}", error=error)]
        assert not sampler.has_boost_trigger(make_conversation(messages=messages))

    def test_error_on_other_role(self, sampler: Sampler) -> None:
        """An error field on a non-tool message is not a tool error."""
        messages = [Message(role="user"), Message(role="assistant", content="x", error=True)]
        assert not sampler.has_boost_trigger(make_conversation(messages=messages))

    def test_tool_error_trigger_off(self) -> None:
        """With trigger_tool_error off a failing tool does not trigger."""
        sampler = Sampler(make_config(base_rate=0.0, boost_rate=1.0, trigger_tool_error=False))
        messages = [Message(role="user"), Message(role="tool", content="{}", error=True)]
        assert not sampler.has_boost_trigger(make_conversation(messages=messages))

    @pytest.mark.parametrize(
        ("usage", "triggered"),
        [
            (Usage(input_tokens=7000, output_tokens=1000), True),
            (Usage(input_tokens=7000, output_tokens=999), False),
            (Usage(output_tokens=9000), True),
            (Usage(), False),
            (None, False),
        ],
    )
    def test_total_tokens(self, sampler: Sampler, usage: Usage | None, triggered: bool) -> None:
        """input + output tokens at or over the threshold trigger; missing usage does not."""
        conversation = make_conversation(usage=usage)
        assert sampler.has_boost_trigger(conversation) is triggered

    def test_token_trigger_off(self) -> None:
        """Without a token threshold even a huge conversation does not trigger."""
        sampler = Sampler(make_config(trigger_min_total_tokens=None))
        assert not sampler.has_boost_trigger(make_conversation(usage=Usage(input_tokens=10**9)))

    def test_no_trigger_configured(self) -> None:
        """With no triggers configured nothing triggers."""
        sampler = Sampler(
            make_config(
                trigger_signals=frozenset(), trigger_tool_error=False, trigger_min_total_tokens=None
            )
        )
        messages = [Message(role="user"), Message(role="tool", error=True)]
        conversation = make_conversation(
            messages=messages, signals={"user_thumbs_down": True}, usage=Usage(input_tokens=10**6)
        )
        assert not sampler.has_boost_trigger(conversation)


class TestDailyBudget:
    def test_max_stays_a_hard_cap_and_resets_at_utc_midnight(self) -> None:
        """Within one pacing step nothing passes the day's max; at UTC midnight the count resets."""
        sampler = Sampler(make_config(base_rate=1.0, boost_rate=1.0, max_daily_samples=10))
        ids = (f"c{i}" for i in range(10_000))
        with freeze_time("2026-11-26 23:59:58") as frozen:
            reasons = [sampler.decide(make_conversation(next(ids))).reason for _ in range(15)]
            assert reasons == ["base"] * 10 + ["daily_budget"] * 5
            assert sampler.sampled_today == 10
            frozen.move_to("2026-11-26 23:59:59.999")
            assert sampler.decide(make_conversation(next(ids))) == Verdict("daily_budget")
            frozen.move_to("2026-11-27 00:00:00")
            assert sampler.sampled_today == 0

    def test_budget_counts_boosts(self) -> None:
        """Boosted conversations use the same daily budget."""
        sampler = Sampler(
            make_config(base_rate=0.0, boost_rate=1.0, max_daily_samples=3), clock=lambda: 1e9
        )
        template = make_conversation(signals={"user_thumbs_down": True})
        reasons = [
            sampler.decide(msgspec.structs.replace(template, id=f"c{i}")).reason for i in range(5)
        ]
        assert reasons == ["boost"] * 3 + ["daily_budget"] * 2

    def test_not_sampled_is_not_budget(self) -> None:
        """A conversation that would not be sampled anyway stays None once the budget is spent."""
        sampler = Sampler(
            make_config(base_rate=0.0, boost_rate=0.0, max_daily_samples=1), clock=lambda: 1e9
        )
        assert [sampler.decide(make_conversation(f"c{i}")).reason for i in range(3)] == [None] * 3


def run_day(
    sampler: Sampler, now: list[float], *, rates: dict[str, int], minutes: int, start: float = 0
) -> dict[str, Counter[str | None]]:
    """Feed ``rates[agent]`` conversations a minute for ``minutes``; return reasons per hour."""
    seen: dict[str, Counter[str | None]] = {}
    number = 0
    for minute in range(minutes):
        for agent, per_minute in rates.items():
            for arrival in range(per_minute):
                now[0] = start + minute * 60 + 60 * arrival / per_minute
                number += 1
                reason = sampler.decide(make_conversation(f"{agent}-{number}"), agent).reason
                seen.setdefault(f"{agent} {minute // 60}", Counter())[reason] += 1
    return seen


def paced_sampler(*, halvings: int) -> tuple[Sampler, list[float]]:
    """Return a sampler whose agent ``busy`` is paced ``halvings`` times at the start of a step."""
    now = [utc("2026-11-26T00:00:00+00:00")]
    per_step = 50_000 / 1440
    # Demand of 2**halvings times the day's pace (base 5%): the sampler halves that often.
    per_minute = round(per_step * 2**halvings / 0.05 * 0.8)
    sampler = Sampler(make_config(max_daily_samples=50_000), clock=lambda: now[0])
    run_day(sampler, now, rates={"busy": per_minute}, minutes=3, start=now[0])
    now[0] = utc("2026-11-26T00:03:00+00:00")
    assert sampler.rates()["busy"] == pytest.approx(0.05 * 2.0**-halvings)
    return sampler, now


class TestPacing:
    """The daily maximum spread over the day: thinner on a busy day, never stopped."""

    def test_busy_day_thins_and_never_stops(self) -> None:
        """Demand for 36k samples a day against a max of 360: every hour gets its share."""
        now = [utc("2026-11-26T00:00:00+00:00")]
        sampler = Sampler(make_config(max_daily_samples=360), clock=lambda: now[0])
        seen = run_day(sampler, now, rates={"busy": 500}, minutes=24 * 60, start=now[0])
        hourly = [seen[f"busy {hour}"]["base"] for hour in range(24)]
        assert all(3 <= taken <= 40 for taken in hourly), hourly  # 15 an hour is the pace
        assert 180 <= sum(hourly) <= 360  # halving leaves at most half unused
        assert all(seen[f"busy {hour}"]["daily_budget"] == 0 for hour in range(24))
        assert sampler.rates()["busy"] <= 0.05 / 16  # 25 a minute against 0.25

    def test_quiet_agent_keeps_its_rate(self) -> None:
        """One agent's flood thins its own sample only: a quiet agent keeps the full rate."""
        now = [utc("2026-11-26T00:00:00+00:00")]
        sampler = Sampler(make_config(max_daily_samples=1440), clock=lambda: now[0])
        seen = run_day(sampler, now, rates={"busy": 2000, "quiet": 20}, minutes=120, start=now[0])
        assert sampler.rates(("quiet", "new"))["quiet"] == 0.05
        assert sampler.rates(("quiet", "new"))["new"] == 0.05
        assert sampler.rates()["busy"] < 0.05 / 32
        quiet = seen["quiet 1"]
        assert within_sigmas(quiet["base"], n=sum(quiet.values()), p=0.05)

    def test_decision_is_a_function_of_the_id_within_a_step(self) -> None:
        """Two replicas with the same history decide every id alike; the lower rate nests."""
        first, _ = paced_sampler(halvings=2)
        second, _ = paced_sampler(halvings=1)
        ids = [f"r{i}" for i in range(20_000)]
        one = [first.decide(make_conversation(cid), "busy").reason for cid in ids]
        assert one == [first.decide(make_conversation(cid), "busy").reason for cid in ids]
        other = [second.decide(make_conversation(cid), "busy").reason for cid in ids]
        # Sampled at a quarter of the rate: also sampled at half of it.
        assert all(b == "base" for a, b in zip(one, other, strict=True) if a == "base")
        assert within_sigmas(one.count("base"), n=len(ids), p=0.05 / 4)
        assert within_sigmas(other.count("base"), n=len(ids), p=0.05 / 2)

    def test_rates_recover_when_traffic_falls(self) -> None:
        """Once the flood stops, the pace goes back to the configured rates."""
        now = [utc("2026-11-26T00:00:00+00:00")]
        sampler = Sampler(make_config(max_daily_samples=1440), clock=lambda: now[0])
        run_day(sampler, now, rates={"busy": 2000}, minutes=10, start=now[0])
        assert sampler.rates()["busy"] < 0.05
        run_day(sampler, now, rates={"busy": 10}, minutes=10, start=now[0] + 600)
        assert sampler.rates()["busy"] == 0.05


class TestMinFill:
    """Min-fill with base and boost rates 0, so every sample is a min-fill."""

    def test_fill_band_keeps_the_pace(self) -> None:
        """A minimum of 1,440 a day is one a minute: an hour of traffic fills about 60."""
        now = [utc("2026-11-26T06:00:00+00:00")]
        sampler = Sampler(
            make_config(base_rate=0.0, boost_rate=0.0, min_daily_samples=1440),
            clock=lambda: now[0],
        )
        seen = run_day(sampler, now, rates={"a": 100}, minutes=60, start=now[0])
        # Six hours behind at 06:00: the band catches up from the second minute on.
        assert seen["a 0"]["min_fill"] >= 300
        assert set(seen["a 0"]) <= {"min_fill", None}
        assert 300 <= sampler.sampled_today <= 6100
        caught_up = sampler.sampled_today
        run_day(sampler, now, rates={"a": 100}, minutes=60, start=now[0] + 60)
        assert 30 <= sampler.sampled_today - caught_up <= 240  # on pace: ~60 in the next hour

    def test_day_is_the_utc_day(self) -> None:
        """06:00 at UTC+2 is 04:00 UTC: the band fills toward a sixth of the day, not a fourth."""
        now = [utc("2026-11-26T06:00:00+02:00")]
        sampler = Sampler(
            make_config(base_rate=0.0, boost_rate=0.0, min_daily_samples=2400),
            clock=lambda: now[0],
        )
        run_day(sampler, now, rates={"a": 10_000}, minutes=3, start=now[0])
        assert 300 <= sampler.sampled_today <= 410  # toward 2400 / 6 = 400, not / 4 = 600

    def test_base_samples_count_toward_the_pace(self) -> None:
        """Conversations sampled by rate already fill the pace, so min-fill adds none."""
        now = [utc("2026-11-26T12:00:00+00:00")]
        sampler = Sampler(
            make_config(base_rate=1.0, boost_rate=1.0, min_daily_samples=200),
            clock=lambda: now[0],
        )
        seen = run_day(sampler, now, rates={"a": 10}, minutes=5, start=now[0])
        assert set(seen["a 0"]) == {"base"}

    def test_min_fill_respects_the_max(self) -> None:
        """Min-fill stops at the daily max, answering daily_budget past it."""
        now = [utc("2026-11-26T23:00:00+00:00")]
        sampler = Sampler(
            make_config(
                base_rate=0.0, boost_rate=0.0, min_daily_samples=200, max_daily_samples=100
            ),
            clock=lambda: now[0],
        )
        seen = run_day(sampler, now, rates={"a": 1000}, minutes=3, start=now[0])
        assert seen["a 0"]["min_fill"] == 100
        assert seen["a 0"]["daily_budget"] > 0

    def test_clock_stepped_back_is_a_new_day(self) -> None:
        """A wall clock stepped back across midnight starts that day's count afresh."""
        now = [utc("2026-11-27T00:00:01+00:00")]
        sampler = Sampler(
            make_config(base_rate=1.0, boost_rate=1.0, max_daily_samples=1), clock=lambda: now[0]
        )
        assert sampler.decide(make_conversation("a")).reason == "base"
        assert sampler.decide(make_conversation("b")).reason == "daily_budget"
        now[0] = utc("2026-11-26T23:59:59+00:00")
        assert sampler.decide(make_conversation("c")).reason == "base"
        assert sampler.sampled_today == 1
