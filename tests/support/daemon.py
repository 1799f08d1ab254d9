"""Run the real daemon as a subprocess on a free loopback port, and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[Any], *, timeout: float) -> int:
    """SIGTERM ``process`` and wait; kill it if it does not exit in time. Return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_http(
    url: str, *, timeout: float = 20.0, status: int = 200, ssl_context: ssl.SSLContext | None = None
) -> None:
    """Poll ``url`` until it answers ``status``; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1, context=ssl_context) as response:
                if response.status == status:
                    return
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == status:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {status} within {timeout}s")


@dataclass
class Daemon:
    """A running daemon subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, *, timeout: float = 30.0) -> int:
        """Send SIGTERM and wait; kill if it does not exit in time. Return the exit code."""
        return stop_process(self.process, timeout=timeout)


@contextlib.contextmanager
def running_daemon(
    tmp_path: Path,
    config: dict[str, Any] | None = None,
    *,
    extra_args: tuple[str, ...] = (),
    scheme: str = "http",
    ssl_context: ssl.SSLContext | None = None,
) -> Iterator[Daemon]:
    """Start ``python -m exporter run`` with ``config`` (None: embedded default); stop it after."""
    port = free_port()
    args = [sys.executable, "-m", "exporter", "run", f"--web.listen-address=127.0.0.1:{port}"]
    if config is not None:
        path = tmp_path / f"config-{port}.yml"
        path.write_text(yaml.safe_dump(config))
        args.append(f"--config.file={path}")
    log_path = tmp_path / f"daemon-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*args, *extra_args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    daemon = Daemon(process, port, log_path, scheme)
    try:
        wait_http(f"{daemon.url}/-/ready", ssl_context=ssl_context)
        yield daemon
    except TimeoutError as error:
        daemon.stop()
        raise RuntimeError(f"daemon did not become ready:\n{daemon.log()}") from error
    finally:
        daemon.stop()
