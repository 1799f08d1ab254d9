"""The command line, called in-process through ``run(argv, stdout, stderr)``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

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

    def test_every_error_one_line_each(self, tmp_path: Path) -> None:
        """Each schema error gets its own line with the file and key path; typos get a hint."""
        path = tmp_path / "c.yml"
        path.write_text("samplng: {}\nsampling: {base_rate: 7}\n")
        code, _, err = call("check-config", "--config.file", str(path))
        assert code == 2
        assert err.splitlines() == [
            f"config error: {path}: $.sampling.base_rate: 7 is greater than the maximum of 1",
            f"config error: {path}: $.samplng: unknown key 'samplng'; did you mean 'sampling'? "
            "(known keys: server, agents, sampling, pipeline, otlp, dimensions, scorers, judges,"
            " judge_defaults, prices, rubrics, confirmation, dataset, alerting, grafana)",
        ]


EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "two-judges.yml")


class TestSecrets:
    """Only the daemon reads secrets: rules and checks run without the production environment."""

    def test_check_config_names_the_variables_run_needs(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The shipped two-judge example checks out without its key, saying run needs it."""
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        code, out, err = call("check-config", "--config.file", EXAMPLE)
        assert (code, err) == (0, "")
        assert out.splitlines()[1:] == [
            "secrets the daemon reads when it starts (run exits 2 without them):",
            "  environment variable OPENAI_API_KEY ($.judges.fast.api_key_env,"
            " $.judges.careful.api_key_env): unset or empty here",
        ]
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        assert call("check-config", "--config.file", EXAMPLE)[1].endswith("): set\n")

    def test_check_config_names_the_token_file(self, tmp_path: Path) -> None:
        """A bearer-token file is listed with whether it can be read here."""
        token = tmp_path / "token"
        path = tmp_path / "c.yml"
        path.write_text(f"server: {{auth: {{bearer_token_file: {token}}}}}\n")
        code, out, _ = call("check-config", "--config.file", str(path))
        assert code == 0
        assert out.splitlines()[-1] == (
            f"  file {token} ($.server.auth.bearer_token_file): "
            "unreadable: No such file or directory here"
        )
        token.write_text("t0ken\n")
        assert call("check-config", "--config.file", str(path))[1].endswith("): readable\n")

    def test_generate_needs_no_secret(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """generate writes the example's rules with the judges' key and the token unset."""
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.delenv("AQE_TEST_UNSET_TOKEN", raising=False)
        config = tmp_path / "c.yml"
        example = Path(EXAMPLE).read_text()
        config.write_text(example + "server: {auth: {bearer_token_env: AQE_TEST_UNSET_TOKEN}}\n")
        code, out, err = call("generate", "--config.file", str(config), "--out", str(tmp_path))
        assert (code, err) == (0, "")
        rules = sorted((tmp_path / "rules").glob("*.rules.yml"))
        assert rules
        assert all(str(path) in out for path in rules)

    def test_run_without_the_secret_exits_2(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """run reads the secrets before it listens: a missing one is exit 2, naming each key."""
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        code, _, err = call("run", "--config.file", EXAMPLE, "--web.listen-address=127.0.0.1:0")
        assert code == 2
        for judge in ("fast", "careful"):
            assert (
                f"config error: {EXAMPLE}: $.judges.{judge}.api_key_env: environment variable "
                "OPENAI_API_KEY is unset or empty"
            ) in err
        assert "listening" not in err
        assert "final accounting" not in err


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
