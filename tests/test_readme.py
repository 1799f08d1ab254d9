"""README's two commands stay what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return [block.strip() for block in blocks[:2]]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run's command line is the README's second command, verbatim."""
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in ci_lines
    assert "set -euo pipefail" in ci_lines


def test_readme_opens_with_install_and_run() -> None:
    """The first command installs into a venv and runs the daemon on its default config."""
    assert _commands()[0] == (
        "apt-get update && apt-get install -y python3-venv && python3 -m venv .venv"
        " && .venv/bin/python -m pip install -c constraints.txt ."
        " && .venv/bin/agent-quality-exporter run"
    )


def test_both_commands_install_the_pinned_toolchain() -> None:
    """Run and test commands install from constraints.txt, which pins pytest and every tool."""
    assert all("-c constraints.txt" in command for command in _commands())
    pins = (REPO / "constraints.txt").read_text()
    for tool in ("pytest", "pytest-asyncio", "schemathesis", "aiohttp", "ruff", "mypy"):
        assert re.search(rf"^{tool}==\S+$", pins, re.M), tool
