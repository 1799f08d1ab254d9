"""The metrics reference in docs/metrics.md matches the registry, and the accounting totals."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from exporter.config import Config, parse_config
from exporter.metrics import Metrics
from exporter.web import create_app
from exporter.web.keys import REGISTRY
from tests.conftest import conversation
from tests.support.app import Client

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"

Metric = tuple[str, str, tuple[str, ...]]


def documented() -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Return docs/metrics.md's table: name -> (type, labels, meaning)."""
    rows = {}
    for line in REFERENCE.read_text().splitlines():
        if not line.startswith("| `agent_quality_"):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]  # not \|
        assert len(cells) == 4, line
        name, kind, labels, meaning = cells
        assert name not in rows, f"{name} is listed twice"
        rows[name.strip("`")] = (kind, tuple(re.findall(r"`(\w+)`", labels)), meaning)
    return rows


def exposed(registry: CollectorRegistry) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Return every family of ``registry``: name as queried -> (type, sorted label names)."""
    families = {}
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = {key for sample in family.samples for key in sample.labels} - {"le"}
        families[name] = (family.type, tuple(sorted(labels)))
    return families


def everything(dataset: Path, judge_url: str) -> Config:
    """Return a config with every optional part on: judges, a second tier, the dataset."""
    judge = {"base_url": judge_url, "retries": 0, "breaker": {"failures": 100}}
    return parse_config(
        {
            "sampling": {"base_rate": 1.0},
            "judges": {"first": {**judge, "model": "a"}, "second": {**judge, "model": "b"}},
            "scorers": [
                {"type": "refusal"},
                {"type": "passthrough"},
                {"type": "llm_judge", "judge": "first", "dimension": "coherence"},
            ],
            "confirmation": {"judge": "second"},
            "dataset": {"enabled": True, "path": str(dataset)},
        }
    )


class TestReference:
    async def test_docs_list_every_metric_with_its_type_and_labels(
        self, aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path
    ) -> None:
        """Every family a fully configured daemon exposes is in the table, and nothing else."""
        app = create_app(everything(tmp_path / "dataset", "http://127.0.0.1:9/v1"))
        client = await aiohttp_client(app)
        # Traffic for the series that appear with their first event: a flag, an ignored score,
        # a rejected item and a late signal.
        refused = conversation(
            id="r-1",
            scores={"coherence": 99},  # off the 1-5 scale
            messages=[
                {"role": "user", "content": "Where is my order?"},
                {"role": "assistant", "content": "I'm sorry, but I can't help with that."},
            ],
        )
        response = await client.post("/v1/conversations", json=[refused, {"id": 1}])
        assert response.status == 202
        response = await client.post("/v1/feedback", json={"id": "x", "signals": {"a": True}})
        assert response.status == 202
        registry: CollectorRegistry = app[REGISTRY]
        for _ in range(600):  # a generous deadline, polled: scoring is asynchronous
            if registry.get_sample_value("agent_quality_scored_total", {"agent": "support-bot"}):
                break
            await asyncio.sleep(0.05)
        docs = documented()
        found = exposed(registry)
        assert sorted(docs) == sorted(found)
        for name, (kind, labels) in found.items():
            assert (docs[name][0], tuple(sorted(docs[name][1]))) == (kind, labels), name
            assert docs[name][2], f"{name} has no meaning in docs/metrics.md"

    def test_table_parses(self) -> None:
        """The parser sees the whole table: a row it skipped would hide from the check above."""
        rows = [line for line in REFERENCE.read_text().splitlines() if line.startswith("| `")]
        assert len(rows) == len(documented()) > 40
        assert all(re.fullmatch(r"agent_quality_[a-z_]+", name) for name in documented())


class TestTotals:
    def test_whole_numbers_beyond_a_million(self) -> None:
        """Totals are ints, exact above a million, where %g would have shown 5.38104e+06."""
        metrics = Metrics(parse_config({}), CollectorRegistry())
        metrics.conversations.labels("support-bot").inc(5_381_040)
        metrics.not_sampled.labels("support-bot").inc(5_112_230)
        metrics.scored.labels("other").inc(268_806)
        metrics.dropped.labels("queue_full").inc(4)
        totals = metrics.totals()
        assert totals == {
            "received": 5_381_040,
            "not_sampled": 5_112_230,
            "scored": 268_806,
            "dropped_queue_full": 4,
        }
        assert all(type(value) is int for value in totals.values())

    def test_dataset_totals_when_enabled(self, tmp_path: Path) -> None:
        """With the dataset on, its records, duplicates and losses join the totals."""
        config = parse_config({"dataset": {"enabled": True, "path": str(tmp_path)}})
        metrics = Metrics(config, CollectorRegistry())
        metrics.dataset_records.labels("support-bot").inc(1200)
        metrics.dataset_records.labels("other").inc(4)
        metrics.dataset_duplicates.inc(3)
        metrics.dataset_dropped.labels("backlog_full").inc(2)
        totals = metrics.totals()
        assert totals["dataset_records"] == 1204
        assert totals["dataset_duplicates"] == 3
        assert totals["dataset_dropped_backlog_full"] == 2
        assert "dataset_dropped_shutdown" not in totals
        assert "dataset_records" not in Metrics(parse_config({}), CollectorRegistry()).totals()
