"""The status page at ``/``: bounded ring buffers fed by the pipeline, rendered without JS."""

from __future__ import annotations

import asyncio
import html.parser
import json
import shutil
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from exporter.config import Config, load_config
from exporter.metrics import MAX_FLAG_VALUES, Metrics
from exporter.model import Conversation
from exporter.types import Evaluation
from exporter.web import PIPELINE, create_app
from exporter.web.status import StatusBoard
from exporter.web.status_page import level, sparkline
from tests.conftest import conversation
from tests.support.fake_openai import FakeOpenAI

Client = TestClient[Any, Any]
MakeConfig = Callable[..., Config]
#: What the fake judge server answers for a model it does not have, as OpenAI words it.
OUTAGE = "The model `no-such-model` does not exist or you do not have access to it."

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _evaluation(
    agent: str = "support-bot", flags: tuple[str, ...] = (), **scores: float
) -> Evaluation:
    document = msgspec.json.decode(json.dumps(conversation()).encode(), type=Conversation)
    return Evaluation(document, agent, "base", scores=dict(scores), flags=list(flags))


def _board(config: Config, clock: Clock, **sizes: int) -> StatusBoard:
    metrics = Metrics(config, CollectorRegistry())
    return StatusBoard(config, metrics=metrics, clock=clock, bucket_seconds=10, **sizes)


class TestBoard:
    async def test_recent_against_baseline(self) -> None:
        """Recent is the last buckets; the baseline is everything before them since start."""
        clock, config = Clock(), load_config(None)
        board = _board(config, clock, buckets=6, recent_buckets=2)
        for score in (1.0, 1.0, 0.0):  # old: mean 2/3
            await board.handle(_evaluation(tool_success=score))
        clock.now += 40  # four buckets later
        await board.handle(_evaluation(tool_success=0.5))
        clock.now += 10
        await board.handle(_evaluation(tool_success=0.0))
        (row,) = [
            s
            for s in board.series()
            if s.agent == "support-bot" and s.dimension.name == "tool_success"
        ]
        assert (row.recent_count, row.recent_mean) == (2, 0.25)
        assert row.baseline_count == 3
        assert row.baseline_mean == pytest.approx(2 / 3)
        assert row.points == [pytest.approx(2 / 3), None, None, None, 0.5, 0.0]

    async def test_memory_is_bounded(self) -> None:
        """Old buckets fall out of the ring; each flag keeps its counts and newest examples."""
        clock, config = Clock(), load_config(None)
        board = _board(config, clock, buckets=4, recent_buckets=1, flag_examples=2)
        for step in range(100):
            clock.now += 10
            await board.handle(_evaluation(flags=(f"flag_{step % 5}",), final_answer=step % 2))
        (row,) = [
            s
            for s in board.series()
            if s.agent == "support-bot" and s.dimension.name == "final_answer"
        ]
        assert row.points == [0.0, 1.0, 0.0, 1.0]
        assert (row.recent_count, row.baseline_count) == (1, 99)
        groups = board.flags()
        # flag_4 was raised in the last bucket; the others by when they were last raised.
        assert [g.flag for g in groups] == ["flag_4", "flag_3", "flag_2", "flag_1", "flag_0"]
        assert [(g.recent_count, g.total_count) for g in groups[:2]] == [(1, 20), (0, 20)]
        assert all(len(g.examples) == 2 for g in groups)
        assert groups[0].examples[0].at == clock.now  # newest first
        assert groups[0].examples[1].at == clock.now - 50

    async def test_flags_are_grouped_within_the_counters_bound(self) -> None:
        """A thousand distinct flags are at most 64 groups and `other`, like the counter."""
        clock, config = Clock(), load_config(None)
        board = _board(config, clock)
        for number in range(1000):
            await board.handle(_evaluation(flags=(f"flag_{number}", "refusal")))
        groups = board.flags()
        assert len(groups) == MAX_FLAG_VALUES + 1
        counts = {g.flag: g.total_count for g in groups}
        assert counts["refusal"] == 1000
        assert counts["other"] == 1000 - (MAX_FLAG_VALUES - 1)
        assert groups[0].flag in {"refusal", "other"}  # the most raised lately come first

    async def test_flags_and_agents_stay_bounded(self) -> None:
        """A malformed flag shows as `other`; `other` appears only once it has scores."""
        clock, config = Clock(), load_config(None)
        board = _board(config, clock)
        assert {s.agent for s in board.series()} == {"support-bot"}
        await board.handle(_evaluation("other", flags=("Not A Flag <b>",), coherence=4.0))
        assert {s.agent for s in board.series()} == {"support-bot", "other"}
        (group,) = board.flags()
        assert group.flag == "other"
        assert group.examples[0].conversation == "c-7f3a"


class TestRendering:
    def test_levels_follow_the_direction(self, make_config: MakeConfig) -> None:
        """A mean below critical is critical when higher is better, fine when lower is."""
        dimension = load_config(None).dimension("task_completion")
        assert dimension is not None
        assert [level(dimension, m) for m in (None, 0.5, 0.9)] == ["none", "critical", "ok"]
        config = make_config(
            dimensions=[
                {
                    "name": "toxicity",
                    "scale": {"min": 0, "max": 1},
                    "higher_is_better": False,
                    "thresholds": {"warning": 0.1, "critical": 0.3},
                }
            ],
            scorers=[{"type": "passthrough"}],
        )
        toxicity = config.dimension("toxicity")
        assert toxicity is not None
        assert [level(toxicity, m) for m in (0.05, 0.2, 0.5)] == ["ok", "warning", "critical"]

    def test_sparkline_breaks_at_gaps(self) -> None:
        """Runs of points become polylines, lone points dots, on the dimension's scale."""
        dimension = load_config(None).dimension("coherence")  # 1 to 5, warning 3
        assert dimension is not None
        svg = sparkline([5.0, 1.0, None, 3.0, None], dimension, baseline=4.0, width=40, height=36)
        assert svg.count("<polyline") == 1
        assert 'points="0.0,3.0 10.0,33.0"' in svg  # 5 at the top, 1 at the bottom
        assert '<circle class="mean" cx="30.0" cy="18.0"' in svg
        assert '<line class="warning" x1="0" x2="40" y1="18.0"' in svg
        assert '<line class="baseline" x1="0" x2="40" y1="10.5"' in svg


class TestPage:
    async def test_page_shows_scores_flags_and_links(
        self, aiohttp_client: Callable[..., Awaitable[Client]], make_config: MakeConfig
    ) -> None:
        """After traffic the page lists means, flags (escaped), sampling and the queue."""
        app = create_app(make_config(sampling={"base_rate": 1.0}))
        client = await aiohttp_client(app)
        leaky = conversation(id="<script>alert(1)</script>")
        leaky["messages"][-1]["content"] = "Write to jane.doe@example.com for a refund."
        batch = [conversation(id=f"c-{n}") for n in range(5)] + [leaky]
        assert (await client.post("/v1/conversations", json=batch)).status == 202
        assert await app[PIPELINE].drain(60)
        text = await (await client.get("/")).text()
        assert '<tr data-agent="support-bot" data-dimension="tool_success">' in text
        assert "pii_email" in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert "<script>" not in text
        assert '<a href="/metrics">' in text
        assert 'href="http://localhost:3000/d/agent-quality/agent-quality"' in text
        assert "/d/agent-quality-agent/agent-quality-agent?var-agent=support-bot" in text
        assert "<svg" in text
        assert "0 of 10000 slots queued" in text


class _Dom(html.parser.HTMLParser):
    """Collect elements (tag, attributes) and the text of table cells."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


async def _chromium(*args: str, profile: Path) -> str:
    binary = shutil.which("chromium")
    assert binary is not None, "install Debian's chromium (the README's test command does)"
    process = await asyncio.create_subprocess_exec(
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return stdout.decode()


class TestInChromium:
    async def test_headless_chromium_renders_the_status(
        self,
        aiohttp_server: Callable[..., Awaitable[TestServer]],
        make_config: MakeConfig,
        tmp_path: Path,
    ) -> None:
        """Chromium shows a row per agent and dimension with numbers, sparklines and flags."""
        clock = Clock()
        config = make_config(sampling={"base_rate": 1.0}, agents=["support-bot", "billing-bot"])
        app = create_app(config, clock=clock)
        server = await aiohttp_server(app, host="127.0.0.1")
        async with aiohttp.ClientSession() as session:
            await _feed(session, str(server.make_url("/v1/conversations")), clock, app)
        url = str(server.make_url("/"))
        dom = _Dom()
        dom.feed(await _chromium("--dump-dom", url, profile=tmp_path / "profile-dom"))
        rows = dom.find("tr")
        quality = [r for r in rows if r.get("data-dimension")]
        assert len(quality) == 2 * len(load_config(None).dimensions)
        assert {r["data-agent"] for r in quality} == {"support-bot", "billing-bot"}
        assert len(dom.find("polyline", **{"class": "mean"})) >= 8
        assert dom.find("td", **{"class": "mean critical"})  # billing-bot's task_completion
        assert dom.find("td", **{"class": "mean warning"})  # its tool_success
        assert dom.find("td", **{"class": "delta worse"})
        assert "pii_email" in dom.cells
        assert dom.find("a", href="/metrics")
        shot = tmp_path / "status.png"
        await _chromium(
            f"--screenshot={shot}",
            "--window-size=1280,1700",
            url,
            profile=tmp_path / "profile-shot",
        )
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", png[16:24]) == (1280, 1700)
        assert len(png) > 50_000  # a page full of tables and lines, not a blank one

    async def test_judge_section_during_a_judge_outage(
        self,
        aiohttp_server: Callable[..., Awaitable[TestServer]],
        make_config: MakeConfig,
        fake: FakeOpenAI,
        tmp_path: Path,
    ) -> None:
        """The confirmation judge answers 400 to every call: its row is red, open, and quotes it.

        The first-tier judge works (and scores every conversation badly, so the second is
        asked each time); the second names a model the server does not have.
        """
        fake.behave("judge-a", {"score": 1})
        fake.behave("no-such-model", {"status": 400, "error": OUTAGE})
        judge = {"base_url": fake.base_url, "backoff": "10ms"}
        config = make_config(
            sampling={"base_rate": 1.0},
            judges={
                "first": {**judge, "model": "judge-a"},
                "careful": {
                    **judge,
                    "model": "no-such-model",
                    "daily_budget_usd": 5,
                    "price": {"input_per_million": 1, "output_per_million": 4},
                },
            },
            scorers=[
                {"type": "tool_success"},
                {"type": "llm_judge", "name": "judge", "judge": "first", "dimension": "coherence"},
            ],
            confirmation={"judge": "careful"},
        )
        app = create_app(config)
        server = await aiohttp_server(app, host="127.0.0.1")
        async with aiohttp.ClientSession() as session:
            url = str(server.make_url("/v1/conversations"))
            batch = [conversation(id=f"outage-{n}") for n in range(12)]
            async with session.post(url, json=batch) as response:
                assert response.status == 202
        assert await app[PIPELINE].drain(60)
        url = str(server.make_url("/"))
        dom = _Dom()
        dom.feed(await _chromium("--dump-dom", url, profile=tmp_path / "profile-dom"))
        (careful,) = dom.find("tr", **{"data-judge": "careful"})
        assert (careful["data-breaker"], careful.get("class")) == ("open", "trouble")
        (first,) = dom.find("tr", **{"data-judge": "first"})
        assert (first["data-breaker"], first.get("class")) == ("closed", None)
        assert dom.find("td", **{"class": "breaker open"})
        assert "100% of the last 12" in dom.cells
        assert "0% of the last 12" in dom.cells
        assert any(f"judge careful: HTTP 400: {OUTAGE}" in cell for cell in dom.cells)
        assert "$0.00 of $5.00 today (0%)" in dom.cells
        assert "confirmation (tier 2)" in dom.cells
        shot = tmp_path / "judges.png"
        await _chromium(
            f"--screenshot={shot}", "--window-size=1280,1100", url, profile=tmp_path / "shot"
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def _feed(
    session: aiohttp.ClientSession, url: str, clock: Clock, app: web.Application
) -> None:
    """Post a quarter hour of traffic in 15s buckets; billing-bot degrades in the last minutes."""
    for step in range(60):
        clock.now += 15
        batch = []
        for agent in ("support-bot", "billing-bot"):
            document = conversation(id=f"{agent}-{step}", agent=agent)
            worse = agent == "billing-bot" and step >= 44
            document["messages"][2]["error"] = worse or step % 7 == 0  # its tools start failing
            wobble = ((step * 37) % 10) / 50  # 0 to 0.18, deterministic
            document["scores"] = {
                "task_completion": (0.5 if worse else 0.8) + wobble,
                "coherence": (2.4 if worse else 4.1) + 4 * wobble,
            }
            if step % 11 == 0:
                document["messages"][-1]["content"] = f"Mail jane+{step}@example.com please."
            batch.append(document)
        async with session.post(url, json=batch) as response:
            assert response.status == 202
        assert await app[PIPELINE].drain(60)
