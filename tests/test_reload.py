"""SIGHUP reload: a valid file applies in place, an invalid one keeps the running config."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load_config
from exporter.scoring import judge
from exporter.web import create_app
from exporter.web.keys import METRICS, PIPELINE, STATE
from exporter.web.reload import reload_config
from tests.conftest import conversation
from tests.support.app import Client, sample
from tests.support.daemon import running_daemon
from tests.test_daemon import post, scrape, wait_for

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two-judges.yml"
Starter = Callable[..., Awaitable[tuple[Client, Path]]]
NONE_SAMPLED = {"base_rate": 0.0, "boost_rate": 0.0, "daily_budget": {"min_samples": 0}}


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
async def started(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> tuple[Client, Path]:
    """A running app on a config file that samples nothing."""
    path = write(tmp_path / "config.yml", {"sampling": NONE_SAMPLED})
    return await aiohttp_client(create_app(load_config(path))), path


class TestInProcess:
    async def test_valid_file_applies_and_counters_continue(
        self, started: tuple[Client, Path]
    ) -> None:
        """New agents, dimensions and rates take effect; counts from before stay."""
        client, path = started
        await client.post("/v1/conversations", json=conversation(id="before"))
        write(
            path,
            {
                "sampling": {"base_rate": 1.0},
                "agents": ["support-bot", "billing-bot"],
                "dimensions": [
                    {"name": "tool_success", "scale": {"min": 0, "max": 1}},
                    {"name": "politeness", "scale": {"min": 1, "max": 5}},
                ],
                "scorers": [{"type": "tool_success"}, {"type": "passthrough"}],
            },
        )
        assert reload_config(client.app, str(path))
        assert sample(client, "agent_quality_config_last_reload_successful") == 1
        assert client.app[STATE].config.agents == ("support-bot", "billing-bot")
        document = conversation(id="after", agent="billing-bot", scores={"politeness": 4})
        answer = await (await client.post("/v1/conversations", json=document)).json()
        assert answer["sampled"] == 1
        await client.app[PIPELINE].drain(60)
        assert sample(client, "agent_quality_conversations_total", agent="support-bot") == 1
        assert sample(client, "agent_quality_conversations_total", agent="billing-bot") == 1
        labels = {"agent": "billing-bot", "dimension": "politeness"}
        assert sample(client, "agent_quality_score_sum", **labels) == 4
        assert "billing-bot" in await (await client.get("/")).text()

    async def test_invalid_file_keeps_running_config(self, started: tuple[Client, Path]) -> None:
        """A broken file: the gauge says 0, the old config stays, ingest goes on."""
        client, path = started
        before = client.app[STATE].config
        path.write_text("sampling:\n  base_rate: 2\n")
        assert not reload_config(client.app, str(path))
        assert sample(client, "agent_quality_config_last_reload_successful") == 0
        assert client.app[STATE].config is before
        assert (await client.post("/v1/conversations", json=conversation())).status == 202

    async def test_restart_only_change_is_refused(self, started: tuple[Client, Path]) -> None:
        """Changing the listener or the queue needs a restart and says so."""
        client, path = started
        write(path, {"sampling": NONE_SAMPLED, "pipeline": {"queue_size": 7}})
        assert not reload_config(client.app, str(path))
        assert sample(client, "agent_quality_config_last_reload_successful") == 0
        assert client.app[STATE].config.pipeline.queue_size == 10000

    async def test_failed_reload_then_good_one(self, started: tuple[Client, Path]) -> None:
        """The gauge goes back to 1 with the next good file."""
        client, path = started
        path.write_text("{")
        assert not reload_config(client.app, str(path))
        write(path, {"sampling": {**NONE_SAMPLED, "boost_rate": 0.5}})
        assert reload_config(client.app, str(path))
        assert sample(client, "agent_quality_config_last_reload_successful") == 1


class TestHttpReload:
    """``POST /-/reload``: the lifecycle API of Prometheus, for sidecars that cannot signal."""

    @pytest.fixture
    def start(self, tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Starter:
        """Start the app on a config file listing one agent; return it with the file."""

        async def started(
            config: dict[str, Any] | None = None, *, lifecycle_api: bool = False
        ) -> tuple[Client, Path]:
            path = write(tmp_path / "config.yml", config or {"agents": ["support-bot"]})
            app = create_app(load_config(path), config_file=str(path), lifecycle_api=lifecycle_api)
            return await aiohttp_client(app), path

        return started

    async def test_off_by_default(self, start: Starter) -> None:
        """Without --web.enable-lifecycle the endpoint refuses and says how to turn it on."""
        client, path = await start()
        write(path, {"agents": ["support-bot", "search-bot"]})
        response = await client.post("/-/reload")
        assert response.status == 403
        assert "--web.enable-lifecycle" in (await response.json())["detail"]
        assert client.app[STATE].config.agents == ("support-bot",)

    async def test_applies_a_valid_file(self, start: Starter) -> None:
        """POST and PUT reload the file the daemon started with and answer its digest."""
        client, path = await start(lifecycle_api=True)
        write(path, {"agents": ["support-bot", "search-bot"]})
        response = await client.post("/-/reload")
        assert response.status == 200
        answer = await response.json()
        config = client.app[STATE].config
        assert config.agents == ("support-bot", "search-bot")
        assert answer == {"status": "reloaded", "source": str(path), "digest": config.digest}
        assert sample(client, "agent_quality_config_last_reload_successful") == 1
        write(path, {"agents": ["search-bot"]})
        assert (await client.put("/-/reload")).status == 200
        assert client.app[STATE].config.agents == ("search-bot",)

    async def test_refused_file_is_a_500_naming_the_key(self, start: Starter) -> None:
        """A file that does not validate: 500 with where and why; the running config stays."""
        client, path = await start(lifecycle_api=True)
        before = client.app[STATE].config
        path.write_text("sampling:\n  base_rate: 2\n")
        response = await client.post("/-/reload")
        assert response.status == 500
        body = await response.json()
        assert body["error"] == "failed to reload config"
        assert str(path) in body["detail"]
        assert "$.sampling.base_rate" in body["detail"]
        assert client.app[STATE].config is before
        assert sample(client, "agent_quality_config_last_reload_successful") == 0

    async def test_needs_the_token_when_auth_is_on(
        self, start: Starter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Reloading changes what the daemon does: it takes the ingest token."""
        monkeypatch.setenv("AQE_TEST_TOKEN", "tok-123")
        auth = {"server": {"auth": {"bearer_token_env": "AQE_TEST_TOKEN"}}}
        client, _ = await start(auth, lifecycle_api=True)
        assert (await client.post("/-/reload")).status == 401
        headers = {"Authorization": "Bearer tok-123"}
        assert (await client.post("/-/reload", headers=headers)).status == 200


class TestJudges:
    async def test_reload_builds_fresh_clients_and_keeps_todays_spend(
        self,
        tmp_path: Path,
        aiohttp_client: Callable[..., Awaitable[Client]],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Judges get new clients (old ones close when retired); the daily spend carries over."""
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        example = yaml.safe_load(EXAMPLE.read_text())
        example["judges"]["fast"]["base_url"] = "http://127.0.0.1:9/v1"  # never called
        example["judges"]["careful"]["base_url"] = "http://127.0.0.1:9/v1"
        path = write(tmp_path / "judges.yml", example)
        client = await aiohttp_client(create_app(load_config(path)))
        metrics = client.app[METRICS]
        old = judge.judge_client(client.app[STATE].config, "fast", metrics=metrics)
        old.budget.spend(3.5)
        example["judges"]["fast"]["concurrency"] = 8
        write(path, example)
        assert reload_config(client.app, str(path))
        new = judge.judge_client(client.app[STATE].config, "fast", metrics=metrics)
        assert new is not old
        assert new.budget.spent == pytest.approx(3.5)


class TestSignal:
    def test_sighup_reloads_a_running_daemon(self, tmp_path: Path) -> None:
        """SIGHUP to the real daemon: the new agent appears; a broken file flips the gauge."""
        config: dict[str, Any] = {"agents": ["support-bot"]}
        with running_daemon(tmp_path, config) as daemon:
            (path,) = tmp_path.glob("config-*.yml")
            write(path, {"agents": ["support-bot", "search-bot"]})
            daemon.process.send_signal(signal.SIGHUP)
            new_agent = 'agent_quality_conversations_total{agent="search-bot"}'
            wait_for(lambda: new_agent in scrape(daemon.url))
            path.write_text("agents: [oops\n")
            daemon.process.send_signal(signal.SIGHUP)
            failed = "agent_quality_config_last_reload_successful 0.0"
            wait_for(lambda: failed in scrape(daemon.url))
            assert daemon.process.poll() is None
            assert "reload failed" in daemon.log()

    def test_lifecycle_flag_turns_on_post_reload(self, tmp_path: Path) -> None:
        """--web.enable-lifecycle on the command line: POST /-/reload applies the file."""
        config: dict[str, Any] = {"agents": ["support-bot"]}
        with running_daemon(tmp_path, config, extra_args=("--web.enable-lifecycle",)) as daemon:
            (path,) = tmp_path.glob("config-*.yml")
            write(path, {"agents": ["support-bot", "search-bot"]})
            status, answer = post(f"{daemon.url}/-/reload", {})
            assert (status, answer["status"]) == (200, "reloaded")
            assert 'agent_quality_conversations_total{agent="search-bot"}' in scrape(daemon.url)
