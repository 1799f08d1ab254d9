"""Tests for the late-signal buffer: bounds by count, bytes and age, eviction order, accounting."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.sampling import LateSignalBuffer


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_buffer(
    clock: FakeClock,
    *,
    max_conversations: int = 100,
    max_bytes: int = 10_000,
    max_age: float = 60.0,
) -> LateSignalBuffer:
    """Return a buffer on ``clock`` with roomy bounds unless given."""
    return LateSignalBuffer(
        max_conversations=max_conversations, max_bytes=max_bytes, max_age=max_age, clock=clock
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestPutPop:
    def test_pop_returns_what_was_put(self, clock: FakeClock) -> None:
        """pop returns the agent and raw bytes once, then None."""
        buffer = make_buffer(clock)
        assert buffer.put("c1", "support-bot", b'{"id":"c1"}') == []
        assert len(buffer) == 1
        assert buffer.nbytes == 11
        assert "c1" in buffer
        assert buffer.pop("c1") == ("support-bot", b'{"id":"c1"}')
        assert buffer.pop("c1") is None
        assert (len(buffer), buffer.nbytes) == (0, 0)

    def test_pop_unknown(self, clock: FakeClock) -> None:
        """pop of an id never put returns None and changes nothing."""
        buffer = make_buffer(clock)
        buffer.put("c1", "a", b"x")
        assert buffer.pop("nope") is None
        assert (len(buffer), buffer.nbytes) == (1, 1)

    def test_reput_replaces_and_returns_the_old(self, clock: FakeClock) -> None:
        """Re-putting an id keeps one entry, the newer, and hands back the replaced one's agent."""
        buffer = make_buffer(clock)
        buffer.put("c1", "old", b"aaaa")
        assert buffer.put("c1", "new", b"bb") == ["old"]
        assert (len(buffer), buffer.nbytes) == (1, 2)
        assert buffer.pop("c1") == ("new", b"bb")

    def test_reput_moves_to_the_young_end(self, clock: FakeClock) -> None:
        """A re-put entry is the youngest: the count bound evicts the others first."""
        buffer = make_buffer(clock, max_conversations=2)
        buffer.put("c1", "a1", b"1")
        buffer.put("c2", "a2", b"2")
        assert buffer.put("c1", "a1b", b"1") == ["a1"]
        assert buffer.put("c3", "a3", b"3") == ["a2"]
        assert buffer.pop("c1") == ("a1b", b"1")


class TestCountBound:
    def test_oldest_evicted_first(self, clock: FakeClock) -> None:
        """Beyond max_conversations the oldest entries leave, in put order."""
        buffer = make_buffer(clock, max_conversations=3)
        left = [buffer.put(f"c{i}", f"a{i}", b"{}") for i in range(6)]
        assert left == [[], [], [], ["a0"], ["a1"], ["a2"]]
        assert len(buffer) == 3
        assert [buffer.pop(f"c{i}") is not None for i in range(6)] == [False] * 3 + [True] * 3

    def test_zero_capacity(self, clock: FakeClock) -> None:
        """A buffer of size 0 hands every entry back at once."""
        buffer = make_buffer(clock, max_conversations=0)
        assert buffer.put("c1", "a", b"{}") == ["a"]
        assert (len(buffer), buffer.nbytes) == (0, 0)
        assert buffer.pop("c1") is None


class TestByteBound:
    def test_evicts_until_the_bytes_fit(self, clock: FakeClock) -> None:
        """A big entry pushes out as many old ones as needed to stay within max_bytes."""
        buffer = make_buffer(clock, max_bytes=10)
        for i in range(5):
            buffer.put(f"c{i}", f"a{i}", b"xx")
        assert buffer.nbytes == 10
        assert buffer.put("big", "ab", b"x" * 7) == ["a0", "a1", "a2", "a3"]
        assert (len(buffer), buffer.nbytes) == (2, 9)

    def test_exactly_max_bytes_is_kept(self, clock: FakeClock) -> None:
        """An entry of exactly max_bytes fits, evicting everything else."""
        buffer = make_buffer(clock, max_bytes=10)
        buffer.put("c0", "a0", b"x")
        assert buffer.put("c1", "a1", b"x" * 10) == ["a0"]
        assert buffer.nbytes == 10

    def test_oversized_entry_is_returned(self, clock: FakeClock) -> None:
        """An entry bigger than max_bytes is handed back and the others stay."""
        buffer = make_buffer(clock, max_bytes=10)
        buffer.put("c0", "a0", b"x" * 5)
        assert buffer.put("c1", "big", b"x" * 11) == ["big"]
        assert (len(buffer), buffer.nbytes) == (1, 5)
        assert buffer.pop("c1") is None

    def test_oversized_reput_returns_both(self, clock: FakeClock) -> None:
        """An oversized re-put removes the old entry too: both receipts are accounted for."""
        buffer = make_buffer(clock, max_bytes=10)
        buffer.put("c1", "old", b"x")
        assert buffer.put("c1", "new", b"x" * 11) == ["old", "new"]
        assert (len(buffer), buffer.nbytes) == (0, 0)


class TestAge:
    def test_expire_drops_entries_older_than_max_age(self, clock: FakeClock) -> None:
        """expire returns the agents of entries past max_age, oldest first, and keeps the rest."""
        buffer = make_buffer(clock, max_age=60)
        buffer.put("c0", "a0", b"0")
        clock.now += 30
        buffer.put("c1", "a1", b"1")
        clock.now += 30
        assert buffer.expire() == []  # c0 is exactly max_age old: not older
        clock.now += 0.5
        assert buffer.expire() == ["a0"]
        clock.now += 30
        assert buffer.expire() == ["a1"]
        assert (len(buffer), buffer.nbytes) == (0, 0)

    def test_put_expires_old_entries(self, clock: FakeClock) -> None:
        """put drops entries past max_age on its way, returning their agents."""
        buffer = make_buffer(clock, max_age=10)
        buffer.put("c0", "a0", b"0")
        buffer.put("c1", "a1", b"1")
        clock.now += 11
        assert buffer.put("c2", "a2", b"2") == ["a0", "a1"]
        assert len(buffer) == 1

    def test_reput_refreshes_age(self, clock: FakeClock) -> None:
        """A re-put entry's age starts again."""
        buffer = make_buffer(clock, max_age=10)
        buffer.put("c0", "a0", b"0")
        clock.now += 8
        buffer.put("c0", "a0", b"0")
        clock.now += 8
        assert buffer.expire() == []
        assert "c0" in buffer

    def test_pop_of_a_stale_entry(self, clock: FakeClock) -> None:
        """An entry past its age but not yet expired is still returned by pop."""
        buffer = make_buffer(clock, max_age=10)
        buffer.put("c0", "a0", b"0")
        clock.now += 100
        assert buffer.pop("c0") == ("a0", b"0")
        assert buffer.expire() == []

    def test_default_clock_is_monotonic(self) -> None:
        """Without a clock, entries age by time.monotonic: none expires at once."""
        buffer = LateSignalBuffer(max_conversations=10, max_bytes=100, max_age=3600)
        buffer.put("c0", "a0", b"0")
        assert buffer.expire() == []
        assert len(buffer) == 1


class TestDrain:
    def test_drain_returns_every_agent(self, clock: FakeClock) -> None:
        """drain empties the buffer and returns every entry's agent, oldest first."""
        buffer = make_buffer(clock)
        for i in range(4):
            buffer.put(f"c{i}", "bot" if i % 2 else "other", b"{}")
        assert buffer.drain() == ["other", "bot", "other", "bot"]
        assert (len(buffer), buffer.nbytes) == (0, 0)
        assert buffer.drain() == []


class TestValidation:
    @pytest.mark.parametrize(
        "bounds",
        [
            {"max_conversations": -1, "max_bytes": 1, "max_age": 1.0},
            {"max_conversations": 1, "max_bytes": -1, "max_age": 1.0},
            {"max_conversations": 1, "max_bytes": 1, "max_age": -1.0},
        ],
    )
    def test_negative_bounds(self, bounds: dict[str, Any]) -> None:
        """Negative bounds are refused."""
        with pytest.raises(ValueError, match="negative"):
            LateSignalBuffer(**bounds)


# One operation on the buffer: put(id, size), pop(id), tick(seconds) or expire.
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 7), st.integers(0, 40)),
        st.tuples(st.just("pop"), st.integers(0, 7), st.just(0)),
        st.tuples(st.just("tick"), st.integers(0, 20), st.just(0)),
        st.tuples(st.just("expire"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(
        ops=_ops,
        max_conversations=st.integers(0, 5),
        max_bytes=st.integers(0, 100),
        max_age=st.integers(0, 30),
    )
    def test_bounds_and_exact_accounting(
        self, ops: list[tuple[str, int, int]], max_conversations: int, max_bytes: int, max_age: int
    ) -> None:
        """Under any put/pop/tick/expire sequence the bounds hold and every entry leaves once."""
        clock = FakeClock()
        buffer = make_buffer(
            clock, max_conversations=max_conversations, max_bytes=max_bytes, max_age=max_age
        )
        put_at: dict[str, float] = {}  # each put's unique token (its agent) -> its time
        held: dict[str, tuple[str, int]] = {}  # id -> (token, size), as the buffer should hold
        out: Counter[str] = Counter()
        for index, (op, key, size) in enumerate(ops):
            cid = f"c{key}"
            if op == "put":
                token = f"t{index}"
                put_at[token] = clock.now
                left = buffer.put(cid, token, b"x" * size)
                out.update(left)
                for gone in left:
                    held = {k: v for k, v in held.items() if v[0] != gone}
                if token not in left:
                    held[cid] = (token, size)
            elif op == "pop":
                popped = buffer.pop(cid)
                assert (popped is None) == (cid not in held)
                if popped is not None:
                    token, stored = held.pop(cid)
                    assert popped == (token, b"x" * stored)
                    out[token] += 1
            elif op == "tick":
                clock.now += key
            else:
                gone_tokens = buffer.expire()
                out.update(gone_tokens)
                assert all(clock.now - put_at[t] > max_age for t in gone_tokens)
                held = {k: v for k, v in held.items() if v[0] not in gone_tokens}
                assert all(clock.now - put_at[t] <= max_age for t, _ in held.values())
            assert len(buffer) == len(held) <= max_conversations
            assert buffer.nbytes == sum(s for _, s in held.values()) <= max_bytes
        out.update(buffer.drain())
        assert out == Counter(put_at.keys())  # every put left exactly once
        assert (len(buffer), buffer.nbytes) == (0, 0)
