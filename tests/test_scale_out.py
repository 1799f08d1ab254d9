"""Scale-out end to end: two replicas behind a balancer give the numbers one replica gives.

Two daemons (A, B) scraped by one real Prometheus, a third daemon alone scraped by another,
both Prometheus evaluating the generated recording rules. Every conversation goes to one of
A and B (a balancer with client affinity: two clients' traffic lands on A, the third client's
on B, and that client's conversations score worse) and also to the single daemon. Sampling
is by id hash (``min_samples: 0``: the min-fill pace is per replica by design, see
docs/scaling.md), so each id must get the same decision everywhere, and the rules, which
``sum by (agent, dimension)`` before dividing, must give the single daemon's counts and means.

``increase()`` extrapolates to the ends of its window, so a recorded count is the true count
times a factor in [1, 1 + eps), eps from the scrape interval over the series' age; the sum
and count of one series share it, so one replica's mean is exact and two replicas' means
differ from it by at most eps times the gap between their means. The split is uneven on
purpose: averaging the replicas' means instead of pooling them would miss by far more.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from exporter.config import parse_config
from exporter.generate import generate
from exporter.generate.conventions import Record, window_name
from exporter.sampling import rate_threshold, stable_hash
from tests.support.daemon import Daemon, running_daemon
from tests.support.promstack import Prometheus, running_prometheus, seconds_alerting
from tests.test_daemon import post as post_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

AGENTS = ("support-bot", "billing-bot")
PROBE_AGENT = "probe-bot"  # conversations sent to both A and B, kept out of the comparisons
DIMENSIONS = ("task_completion", "csat")
CONVERSATIONS = 240
PROBES = 100
FEEDBACK = 30
#: Scrape and rule evaluation, seconds. Also Prometheus's scrape timeout (it cannot be longer):
#: at 250 ms a loaded machine timed scrapes out, and a failed scrape marks every series stale.
INTERVAL = 0.5
#: Series age before the rules are read: bounds increase()'s extrapolation (module docstring),
#: small enough that averaging the replicas' means would stand out (test_recorded_means_match).
MIN_AGE = 40.0
WINDOW = window_name(300.0)  # a recorded window (always generated) that holds the whole test

Pair = tuple[str, str]


def scale_config() -> dict[str, Any]:
    """Return a config with hash-only sampling under 1 and short alerting windows."""
    return {
        "agents": [*AGENTS, PROBE_AGENT],
        "sampling": {
            "base_rate": 0.3,
            "boost_rate": 0.6,
            "boost_triggers": {
                "signals": ["user_thumbs_down"],
                "tool_error": False,
                "min_total_tokens": None,
            },
            "daily_budget": {"min_samples": 0, "max_samples": 100_000},
        },
        "dimensions": [
            {
                "name": "task_completion",
                "scale": {"min": 0, "max": 1},
                "thresholds": {"bad": 0.5, "critical": 0.7},
            },
            {"name": "csat", "scale": {"min": 1, "max": 5}, "thresholds": {"bad": 2, "warning": 3}},
        ],
        "scorers": [{"type": "passthrough"}],
        "alerting": seconds_alerting(),
    }


def post(daemon: Daemon, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = post_json(f"{daemon.url}{path}", body)
    assert status == 202
    return answer


def conversation(
    number: int, *, agent: str, scores: dict[str, float], thumbs_down: bool
) -> dict[str, Any]:
    return {
        "id": f"c-{number}",
        "agent": agent,
        "messages": [
            {"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": "It ships tomorrow."},
        ],
        "signals": {"user_thumbs_down": thumbs_down},
        "scores": scores,
    }


def vector(prometheus: Prometheus, expr: str) -> list[tuple[tuple[tuple[str, str], ...], str]]:
    """Return an instant query's (labels, value) pairs for AGENTS (no probe, no ``other``)."""
    return sorted(
        (tuple(sorted(item["metric"].items())), item["value"][1])
        for item in prometheus.query(expr)
        if item["metric"].get("agent") in AGENTS
    )


def by_pair(prometheus: Prometheus, expr: str) -> dict[Pair, float]:
    """Return an instant query's values keyed by (agent, dimension), for AGENTS only."""
    return {
        (item["metric"]["agent"], item["metric"]["dimension"]): float(item["value"][1])
        for item in prometheus.query(expr)
        if item["metric"]["agent"] in AGENTS
    }


def wait_until_up(prometheus: Prometheus, targets: int) -> float:
    """Wait until every target was scraped; return when (monotonic)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        up = prometheus.query("sum(up)")
        scored = prometheus.query("count(agent_quality_score_count)")
        if up and float(up[0]["value"][1]) == targets and scored:
            return time.monotonic()
        time.sleep(INTERVAL)
    raise AssertionError(f"targets not scraped within 60s:\n{prometheus.log()}")


@dataclass
class Totals:
    """Scores of the sampled conversations, per (agent, dimension)."""

    count: dict[Pair, int] = field(default_factory=lambda: defaultdict(int))
    total: dict[Pair, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, agent: str, scores: dict[str, float]) -> None:
        for dimension, value in scores.items():
            self.count[agent, dimension] += 1
            self.total[agent, dimension] += value

    def mean(self, pair: Pair) -> float:
        return self.total[pair] / self.count[pair]


@dataclass
class ScaleOut:
    """What the scenario sent, what each daemon answered, and the two Prometheus."""

    pair: Prometheus  # scrapes A and B
    single: Prometheus  # scrapes the single daemon
    ready_at: float  # both Prometheus had scraped every target (monotonic)
    replica_sampled: dict[str, int] = field(default_factory=dict)
    single_sampled: dict[str, int] = field(default_factory=dict)
    probe_sampled: dict[str, tuple[int, int]] = field(default_factory=dict)  # (A, B)
    wrong_replica: dict[str, str] = field(default_factory=dict)  # feedback outcomes
    right_replica: dict[str, str] = field(default_factory=dict)
    single_feedback: dict[str, str] = field(default_factory=dict)
    expected: Totals = field(default_factory=Totals)
    by_replica: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))


def send_traffic(scale: ScaleOut, replicas: dict[str, Daemon], single: Daemon) -> None:
    """Send the conversations, the probes and the late feedback; record every answer."""
    rng = random.Random(8)
    sent: dict[str, tuple[str, str, dict[str, float], bool]] = {}
    for number in range(CONVERSATIONS):
        client = number % 3
        replica = "B" if client == 2 else "A"  # the balancer's client affinity
        good = client != 2
        scores = {"task_completion": rng.uniform(0.6, 1.0) if good else rng.uniform(0.1, 0.6)}
        if number % 4 != 1:
            scores["csat"] = rng.randint(3, 5) if good else rng.randint(1, 3)
        agent, thumbs_down = AGENTS[number % 2], number % 5 == 0
        item = conversation(number, agent=agent, scores=scores, thumbs_down=thumbs_down)
        scale.replica_sampled[item["id"]] = post(replicas[replica], "/v1/conversations", item)[
            "sampled"
        ]
        scale.single_sampled[item["id"]] = post(single, "/v1/conversations", item)["sampled"]
        sent[item["id"]] = (replica, agent, scores, thumbs_down)
    for number in range(PROBES):
        item = conversation(
            10_000 + number, agent=PROBE_AGENT, scores={}, thumbs_down=number % 3 == 0
        )
        answers = [post(replicas[name], "/v1/conversations", item)["sampled"] for name in "AB"]
        scale.probe_sampled[item["id"]] = (answers[0], answers[1])
    unsampled = [
        key for key, (_, _, _, down) in sent.items() if not scale.single_sampled[key] and not down
    ]
    for key in unsampled[:FEEDBACK]:
        replica = sent[key][0]
        other = "A" if replica == "B" else "B"
        body = {"id": key, "signals": {"user_thumbs_down": True}}
        scale.wrong_replica[key] = post(replicas[other], "/v1/feedback", body)["outcome"]
        scale.right_replica[key] = post(replicas[replica], "/v1/feedback", body)["outcome"]
        scale.single_feedback[key] = post(single, "/v1/feedback", body)["outcome"]
    for key, (replica, agent, scores, _) in sent.items():
        if scale.single_sampled[key] or scale.single_feedback.get(key) == "sampled":
            scale.expected.add(agent, scores)
            scale.by_replica[replica].add(agent, scores)


def wait_for_scores(scale: ScaleOut) -> None:
    """Wait until both Prometheus hold every expected score and the series are old enough.

    Gives up quietly after a while: the tests then say what differs.
    """
    expected = dict(scale.expected.count)
    deadline = time.monotonic() + 60  # for a hang: a busy machine scrapes and evaluates late
    raw = "sum by (agent, dimension) (agent_quality_score_count)"
    while time.monotonic() < deadline and (
        by_pair(scale.pair, raw) != expected or by_pair(scale.single, raw) != expected
    ):
        time.sleep(INTERVAL)
    # The rules read what was scraped at their next evaluation: wait until the recorded counts
    # (one group with the means) hold every score, rather than for a fixed number of intervals.
    while time.monotonic() < deadline and not recorded_all(scale, expected):
        time.sleep(INTERVAL)
    # MIN_AGE bounds eps.
    time.sleep(max(2 * INTERVAL, scale.ready_at + MIN_AGE - time.monotonic()))


def recorded_all(scale: ScaleOut, expected: Mapping[Pair, float]) -> bool:
    """Say whether both Prometheus' recorded counts reach every expected count."""
    for prometheus in (scale.pair, scale.single):
        recorded = by_pair(prometheus, Record.count(WINDOW))
        if any(recorded.get(pair, 0) < count - 1e-9 for pair, count in expected.items()):
            return False
    return True


def extrapolation_bound(scale: ScaleOut) -> float:
    """Return eps: how far increase() may extrapolate past the true count, relatively."""
    # The series' first sample came before ready_at; the last one and the rule evaluation are
    # each at most an interval old. Extrapolation at the end adds at most 1.1 average scrape
    # intervals (1.5 here: scrapes slip on a loaded machine).
    age = time.monotonic() - scale.ready_at - 2 * INTERVAL
    return 1.5 * INTERVAL / age


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleOut]:
    """Run the scenario once; keep both Prometheus up for the tests to query."""
    tmp_path = tmp_path_factory.mktemp("scale-out")
    document = scale_config()
    written = generate(parse_config(document, source="scale-out.yml"), out=tmp_path / "out")
    rules = [path for path in written if path.name.endswith(".rules.yml")]
    with contextlib.ExitStack() as stack:
        single = stack.enter_context(running_daemon(tmp_path, document))
        replicas = {name: stack.enter_context(running_daemon(tmp_path, document)) for name in "AB"}
        one = stack.enter_context(
            running_prometheus(
                tmp_path,
                targets=[f"127.0.0.1:{single.port}"],
                rule_files=rules,
                interval=f"{int(INTERVAL * 1000)}ms",
            )
        )
        two = stack.enter_context(
            running_prometheus(
                tmp_path,
                targets=[f"127.0.0.1:{daemon.port}" for daemon in replicas.values()],
                rule_files=rules,
                interval=f"{int(INTERVAL * 1000)}ms",
            )
        )
        ready_at = max(wait_until_up(one, 1), wait_until_up(two, 2))
        scale = ScaleOut(pair=two, single=one, ready_at=ready_at)
        send_traffic(scale, replicas, single)
        wait_for_scores(scale)
        yield scale


class TestScaleOut:
    """Two replicas and one replica, same traffic: same decisions, same recorded numbers."""

    def test_sampling_is_the_same_in_every_replica(self, scale: ScaleOut) -> None:
        """Each id gets the same decision from its replica, the single daemon, A and B."""
        differ = {
            key: (scale.replica_sampled[key], one)
            for key, one in scale.single_sampled.items()
            if scale.replica_sampled[key] != one
        }
        assert differ == {}, "(replica, single) decisions differ"
        differ = {key: ab for key, ab in scale.probe_sampled.items() if ab[0] != ab[1]}
        assert differ == {}, "(A, B) decisions differ"
        decisions = list(scale.single_sampled.values())
        # Sampling mattered: a share well inside (0, 1), boosted ones included.
        assert 0.25 < sum(decisions) / len(decisions) < 0.6
        boosted = scale.pair.query('sum(agent_quality_sampled_total{reason="boost"})')
        assert float(boosted[0]["value"][1]) > 0

    def test_feedback_needs_the_replica_that_saw_it(self, scale: ScaleOut) -> None:
        """A late signal is unknown to the other replica; the right one decides as one would.

        Outside the boost band the id alone says no signal can get it scored: every replica
        answers ``not_sampled`` without having kept it.
        """
        boost = rate_threshold(scale_config()["sampling"]["boost_rate"])
        in_band = {key for key in scale.wrong_replica if stable_hash(key) < boost}
        assert {scale.wrong_replica[key] for key in in_band} == {"unknown"}
        assert {v for k, v in scale.wrong_replica.items() if k not in in_band} == {"not_sampled"}
        assert scale.right_replica == scale.single_feedback
        assert set(scale.right_replica.values()) == {"sampled", "not_sampled"}

    def test_counters_add_up_across_replicas(self, scale: ScaleOut) -> None:
        """Raw counters summed over A and B equal the single daemon's, label set by label set."""
        for expr in (
            "sum by (agent, dimension) (agent_quality_score_count)",
            "sum by (agent, dimension, le) (agent_quality_score_bucket)",
            "sum by (agent) (agent_quality_conversations_total)",
            "sum by (agent, reason) (agent_quality_sampled_total)",
        ):
            two, one = vector(scale.pair, expr), vector(scale.single, expr)
            assert two, expr
            assert two == one, expr
        raw = "sum by (agent, dimension) (agent_quality_score_sum)"
        for pair, value in by_pair(scale.pair, raw).items():
            assert value == pytest.approx(by_pair(scale.single, raw)[pair], rel=1e-12)
            assert value == pytest.approx(scale.expected.total[pair], rel=1e-12)

    def test_recorded_counts_match(self, scale: ScaleOut) -> None:
        """The generated count rule gives two replicas the single daemon's count."""
        eps = extrapolation_bound(scale)
        assert eps < 0.05, "the series are too young for a tight comparison"
        two = by_pair(scale.pair, Record.count(WINDOW))
        one = by_pair(scale.single, Record.count(WINDOW))
        assert set(two) == set(one) == set(scale.expected.count)
        for pair, count in scale.expected.count.items():
            for recorded in (two[pair], one[pair]):
                assert count - 1e-9 <= recorded <= count * (1 + eps), (pair, recorded, count)
            assert abs(two[pair] - one[pair]) <= count * eps

    def test_recorded_means_match(self, scale: ScaleOut) -> None:
        """The generated mean rule pools the replicas: equal to one daemon's mean."""
        eps = extrapolation_bound(scale)
        two = by_pair(scale.pair, Record.mean(WINDOW))
        one = by_pair(scale.single, Record.mean(WINDOW))
        assert set(two) == set(one) == set(scale.expected.count)
        for pair in scale.expected.count:
            exact = scale.expected.mean(pair)
            assert one[pair] == pytest.approx(exact, rel=1e-9)  # the factor cancels
            a, b = (scale.by_replica[name].mean(pair) for name in "AB")
            tolerance = eps * abs(a - b) + 1e-9
            assert abs(two[pair] - exact) <= tolerance, (pair, two[pair], exact, tolerance)
            # Averaging the replicas' means would be caught: it misses by far more.
            assert abs((a + b) / 2 - exact) > 5 * tolerance, pair
