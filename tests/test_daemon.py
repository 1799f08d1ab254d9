"""The daemon as users run it: a subprocess on loopback, scraped, signalled."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import conversation
from tests.support.daemon import running_daemon


def post(url: str, document: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(document).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in scrape")


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; the deadline is for a hang, not for speed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class TestDefaultConfig:
    def test_readme_example_shows_in_metrics(self, tmp_path: Path) -> None:
        """The README's curl example on the default config: received, boosted, scored."""
        with running_daemon(tmp_path) as daemon:
            document = conversation(signals={"user_thumbs_down": True})
            status, answer = post(f"{daemon.url}/v1/conversations", document)
            assert status == 202
            assert answer == {"accepted": 1, "sampled": 1, "dropped": 0}
            wait_for(
                lambda: 'agent_quality_scored_total{agent="support-bot"} 1.0' in scrape(daemon.url)
            )
            text = scrape(daemon.url)
            assert value(text, 'agent_quality_conversations_total{agent="support-bot"}') == 1
            assert (
                value(text, 'agent_quality_sampled_total{agent="support-bot",reason="boost"}') == 1
            )
            count = 'agent_quality_score_count{agent="support-bot",dimension="user_feedback"}'
            assert value(text, count) == 1
            assert value(text, 'agent_quality_build_info{version="0.1.0"}') == 1

    @pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian prometheus")
    def test_promtool_check_metrics_on_a_real_scrape(self, tmp_path: Path) -> None:
        """A real scrape after traffic passes `promtool check metrics`."""
        with running_daemon(tmp_path, {"sampling": {"base_rate": 1.0}}) as daemon:
            batch = [
                conversation(id=f"p{i}", agent=a) for i, a in enumerate(["support-bot", "x"] * 5)
            ]
            post(f"{daemon.url}/v1/conversations", batch)
            wait_for(lambda: 'agent_quality_scored_total{agent="other"} 5.0' in scrape(daemon.url))
            result = subprocess.run(
                ["promtool", "check", "metrics"],
                input=scrape(daemon.url).encode(),
                capture_output=True,
                check=False,
            )
            assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


class TestShutdown:
    def test_sigterm_drains_then_counts_the_rest(self, tmp_path: Path) -> None:
        """SIGTERM: not ready, ingest 503, /metrics up while draining, leftovers counted."""
        config = {
            "sampling": {"base_rate": 1.0},
            "pipeline": {"workers": 1, "drain_grace_period": "2s"},
            "scorers": [{"type": "plugin", "path": "tests.support.slow_scorer:score"}],
        }
        with running_daemon(tmp_path, config) as daemon:
            batch = [conversation(id=f"s{i}") for i in range(60)]
            assert post(f"{daemon.url}/v1/conversations", batch)[1]["sampled"] == 60
            daemon.process.send_signal(15)
            wait_for(lambda: b"draining" in daemon.log_path.read_bytes())
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(f"{daemon.url}/-/ready", timeout=10)
            caught.value.close()
            assert caught.value.code == 503
            assert post(f"{daemon.url}/v1/conversations", conversation())[0] == 503
            assert "agent_quality_scored_total" in scrape(daemon.url)
            assert daemon.process.wait(15) == 0
            log = daemon.log()
            assert "not drained" in log
            dropped = int(log.split("shutdown dropped ")[1].split()[0])
            assert 0 < dropped < 60
            # The last line, in whole numbers that add up.
            line = log.splitlines()[-1]
            assert "final accounting: " in line
            counts = line.split("final accounting: ")[1].rstrip('"').split()
            final = {k: int(v) for k, v in (count.split("=") for count in counts)}
            assert final["received"] == 60
            assert final["not_sampled"] == 0
            assert final["scored"] + final["dropped_shutdown"] == 60


class TestCommandLine:
    def test_bad_config_exits_2_naming_the_path(self, tmp_path: Path) -> None:
        """A config error is reported with file and key path, exit code 2."""
        path = tmp_path / "bad.yml"
        path.write_text("sampling:\n  base_rate: 7\n")
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "check-config", f"--config.file={path}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2
        assert str(path) in result.stderr
        assert "$.sampling.base_rate" in result.stderr

    def test_port_in_use_exits_1(self, tmp_path: Path) -> None:
        """A second daemon on a taken port fails with exit code 1 and says why."""
        with running_daemon(tmp_path) as daemon:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    "run",
                    f"--web.listen-address=127.0.0.1:{daemon.port}",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=20,
            )
            assert result.returncode == 1
            assert "cannot listen" in result.stderr
            # Nothing was served: no accounting line, empty or not, before the real error.
            assert "final accounting" not in result.stderr
            assert "cannot listen" in result.stderr.splitlines()[-1]


class TestTls:
    def test_https_with_cert_and_key(self, tmp_path: Path) -> None:
        """With server.tls set the daemon speaks HTTPS only, with the given certificate."""
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        config = {"server": {"tls": {"cert_file": str(cert), "key_file": str(key)}}}
        context = ssl.create_default_context(cafile=str(cert))
        with running_daemon(tmp_path, config, scheme="https", ssl_context=context) as daemon:
            url = f"https://127.0.0.1:{daemon.port}/-/healthy"
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                assert response.status == 200
            # Plain HTTP to the TLS port: the server hangs up (URLError or a reset, both OSError).
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/-/healthy", timeout=5)
