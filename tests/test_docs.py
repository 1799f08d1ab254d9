"""README.md and docs/: links resolve, and what they show is what the program does."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml

from exporter.cli import run
from exporter.config import load_config, needed_secrets, parse_config
from exporter.web import create_app
from tests.support.app import Client

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README = (REPO / "README.md").read_text()

# [text](target): inline Markdown links, outside code spans and blocks (stripped first).
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`]*`")


def links(page: Path) -> list[str]:
    text = _CODE.sub("", _FENCE.sub("", page.read_text()))
    return _LINK.findall(text)


def anchors(page: Path) -> set[str]:
    """Return the anchors GitHub makes of the page's headings."""
    text = _FENCE.sub("", page.read_text())
    result = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        result.add(slug)
    return result


class TestLinks:
    @pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
    def test_relative_links_resolve(self, page: Path) -> None:
        """Every relative link names a file of the repository, and a heading of it if it has #."""
        broken = []
        for target in links(page):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{target}: no such file")
            elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
                broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
        assert broken == []

    def test_readme_links_every_docs_page(self) -> None:
        """Each page under docs/ is reachable from the README."""
        linked = {
            (REPO / target.partition("#")[0]).resolve() for target in links(REPO / "README.md")
        }
        assert sorted(p.name for p in PAGES[1:] if p.resolve() not in linked) == []

    def test_the_spec_is_not_cited(self) -> None:
        """Users never see the contract's source: pages cite docs/, never a SPEC."""
        for page in PAGES:
            assert "SPEC" not in page.read_text(), page.name


class TestReadmeShowsTheProgram:
    async def test_accept_response_as_the_daemon_prints_it(
        self, aiohttp_client: Callable[..., Awaitable[Client]]
    ) -> None:
        """The curl example's body, posted to the default config, answers the line shown."""
        match = re.search(r"-d '(\{.*?\})'\n# (\{.*\})\n", README, re.S)
        assert match is not None
        body, shown = match.groups()
        client = await aiohttp_client(create_app(load_config()))
        response = await client.post(
            "/v1/conversations", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == 202
        assert await response.text() == shown

    def test_command_table_lists_every_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Each subcommand the program takes has its row in the README's command table."""
        assert run(["--help"], io.StringIO(), io.StringIO()) == 0  # argparse prints to sys.stdout
        usage = re.search(r"\{([a-z,-]+)\}", capsys.readouterr().out)
        assert usage is not None
        rows = re.findall(r"^\| `agent-quality-exporter ([a-z-]+)", README, re.M)
        assert sorted(rows) == sorted(usage.group(1).split(","))

    def test_auth_line_turns_auth_on(self) -> None:
        """The one config line beside the run command asks for a bearer token from the env."""
        (block,) = re.findall(r"```yaml\n(.*?)```", README.split("## Try it")[0], re.S)
        config = parse_config(yaml.safe_load(block))
        assert config.server.auth.enabled
        assert [secret.env for secret in needed_secrets(config)] == ["AGENT_QUALITY_TOKEN"]
        assert "0.0.0.0:10340" in README.split("```yaml")[0]
        assert load_config().server.host == "0.0.0.0"
        assert load_config().server.port == 10340
        assert not load_config().server.auth.enabled

    def test_dimension_keys_are_real(self) -> None:
        """The keys the README names for a dimension are keys of the config schema."""
        bullet = re.search(r"^- `dimensions`: (.*?)(?=^- |\n\n)", README, re.M | re.S)
        assert bullet is not None
        named = set(re.findall(r"`([a-z_]+)[`.(]", bullet.group(1)))
        schema = json.loads((REPO / "exporter" / "config" / "schema.json").read_text())
        keys = set(schema["$defs"]["dimension"]["properties"])
        assert named - {"min", "max", "true", "warning", "critical", "bad"} <= keys
        assert "higher_is_better" in named
