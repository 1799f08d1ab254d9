"""The command line, called in-process through ``run(argv, stdout, stderr)``."""

from __future__ import annotations

import io
from pathlib import Path

from exporter.cli import run


def call(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(list(argv), stdout, stderr)
    return code, stdout.getvalue(), stderr.getvalue()


class TestCheckConfig:
    def test_default_is_valid(self) -> None:
        """check-config without a file validates the embedded default."""
        code, out, _ = call("check-config")
        assert code == 0
        assert "ok" in out

    def test_error_exit_2(self, tmp_path: Path) -> None:
        """A bad file: exit 2 and a message naming the file, key path and expectation."""
        path = tmp_path / "c.yml"
        path.write_text("scorers:\n  - type: nope\n")
        code, _, err = call("check-config", "--config.file", str(path))
        assert code == 2
        assert f"{path}: $.scorers[0].type: expected one of" in err


class TestUsage:
    def test_unknown_flag_exit_2(self) -> None:
        """Usage errors exit 2 with the usage on stderr."""
        code, _, err = call("run", "--bogus")
        assert code == 2
        assert "usage:" in err

    def test_bad_listen_address_exit_2(self) -> None:
        """--web.listen-address must be HOST:PORT."""
        code, _, err = call("run", "--web.listen-address", "nope")
        assert code == 2
        assert "HOST:PORT" in err

    def test_no_command_exit_2(self) -> None:
        """A command is required."""
        assert call()[0] == 2

    def test_version(self) -> None:
        """--version prints the version and exits 0."""
        assert call("--version")[0] == 0


class TestComponents:
    def test_check_config_builds_plugins(self, tmp_path: Path) -> None:
        """check-config imports plugin scorers, so a broken path is caught before deploying."""
        path = tmp_path / "c.yml"
        path.write_text("scorers:\n  - type: plugin\n    path: no_such_module_xyz:score\n")
        code, _, err = call("check-config", "--config.file", str(path))
        assert code == 2
        assert "$.scorers[0].path" in err

    def test_run_exits_2_on_a_component_error(self, tmp_path: Path) -> None:
        """The daemon refuses to start, with exit code 2, on a plugin that does not import."""
        path = tmp_path / "c.yml"
        path.write_text("scorers:\n  - type: plugin\n    path: no_such_module_xyz:score\n")
        code, _, err = call("run", "--config.file", str(path), "--web.listen-address=127.0.0.1:0")
        assert code == 2
        assert "no_such_module_xyz" in err


class TestTls:
    def test_tls_needs_both_files(self, tmp_path: Path) -> None:
        """A certificate without a key is a config error naming $.server.tls."""
        path = tmp_path / "c.yml"
        path.write_text(f"server:\n  tls:\n    cert_file: {path}\n")
        code, _, err = call("check-config", "--config.file", str(path))
        assert code == 2
        assert "$.server.tls" in err
