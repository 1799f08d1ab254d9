"""The import contracts of pyproject.toml hold, and cover every private module."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "exporter"


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_private(module: str) -> bool:
    name = module.rpartition(".")[2]
    return name.startswith("_") and not name.startswith("__")


def _children(package: str) -> set[str]:
    """Return the modules and subpackages directly inside ``package``."""
    folder = REPO.joinpath(*package.split("."))
    return {
        _module(path)
        for path in folder.iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py") or (path / "__init__.py").is_file()
    }


class TestContracts:
    def test_lint_imports_keeps_every_contract(self) -> None:
        """lint-imports passes; when it does not, its report says which import broke what."""
        lint_imports = Path(sys.executable).with_name("lint-imports")
        result = subprocess.run(
            [lint_imports, "--no-cache", "--no-logo"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_every_private_module_is_protected(self) -> None:
        """Each exporter/**/_name.py is in a protected contract: its package alone imports it."""
        protected: set[str] = set()
        for contract in _contracts():
            if contract["type"] == "protected":
                for expression in contract["protected_modules"]:
                    package, _, last = expression.rpartition(".")
                    protected |= _children(package) if last == "*" else {expression}
        private = {_module(path) for path in PACKAGE.rglob("_*.py") if _is_private(_module(path))}
        assert private - protected == set()

    def test_a_package_is_all_public_or_all_private(self) -> None:
        """Below the top level, a package's modules are all ``_private`` or all public."""
        mixed = []
        for init in PACKAGE.rglob("__init__.py"):
            package = _module(init)
            if package == "exporter":  # _version.py is setuptools' version attribute
                continue
            modules = {m for m in _children(package) if not (REPO / m.replace(".", "/")).is_dir()}
            if len({_is_private(m) for m in modules}) > 1:
                mixed.append(package)
        assert mixed == []
