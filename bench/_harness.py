"""Shared benchmark plumbing: servers pinned to one core, wrk on the other, parsed results."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a bench runs as `python bench/NAME.py`: tests/ is not on the path

from tests.support.daemon import free_port as free_port  # noqa: E402  (the benches' ports)
from tests.support.daemon import stop_process  # noqa: E402

SERVER_CPU, LOAD_CPU = "0", "1"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"{tool} is needed: apt-get install -y {tool}")
    return path


def _pinned(args: Sequence[str], cpu: str) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", cpu, *args]
    return list(args)


@contextlib.contextmanager
def pinned_self(cpu: str) -> Iterator[None]:
    """Run this process's calling thread on ``cpu`` until the block ends (no-op on one core).

    For benches that measure in process (pinned like a server) or drive load from Python
    (pinned like wrk); threads started inside the block inherit the pinning.
    """
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(cpu)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def steady_config(directory: Path, **sampling: Any) -> Path:
    """Write the embedded default config with no daily maximum into ``directory``; return it.

    The default's ``daily_budget.max_samples`` (50,000 a day) is due within seconds at a
    bench's speed: the sampler then thins its rates (it stopped scoring before issue 13) and
    the daemon does less work than its configured rates say. With the maximum lifted a bench
    measures the steady state a user runs. ``sampling`` overrides keys of that section.
    """
    import yaml

    from exporter.config.loader import default_document

    document = default_document()
    document["sampling"]["daily_budget"]["max_samples"] = None
    document["sampling"].update(sampling)
    path = directory / "steady.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def daemon_args(port: int, config: Path | None = None) -> list[str]:
    """Return the command line of the real daemon on ``port`` (embedded default config)."""
    args = [sys.executable, "-m", "exporter", "run", f"--web.listen-address=127.0.0.1:{port}"]
    if config is not None:
        args.append(f"--config.file={config}")
    return [*args, "--log.level=warn"]


def scraped(port: int) -> list[Any]:
    """Return every sample the daemon on ``port`` exports now (prometheus_client ``Sample``)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: Sequence[Any], name: str, **labels: str) -> float:
    """Sum the samples called ``name`` whose labels include ``labels``."""
    return float(
        sum(
            s.value
            for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )
    )


@contextlib.contextmanager
def server(
    args: Sequence[str], *, port: int, ready_path: str = "/v1/conversations"
) -> Iterator[int]:
    """Run a server process pinned to SERVER_CPU until the block ends; yield its pid."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        _pinned(args, SERVER_CPU),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # the bare server answers 404/405: it is up
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(
                    process.stderr.read().decode() if process.stderr else ""
                ) from None
            time.sleep(0.1)
    try:
        yield process.pid
    finally:
        stop_process(process, timeout=30)


#: In a body sent by ``wrk(..., unique=True)``, replaced by the request's number on every send.
ID_SLOT = "@@@@@@@@@@"

_LUA = """
local bodies = {}
local n = 0
for line in io.lines("%(path)s") do n = n + 1; bodies[n] = line end
local i = 0
local sent = 0
local headers = {["Content-Type"] = "%(ctype)s"}
request = function()
  i = i %% n + 1
  local body = bodies[i]
  if %(unique)s then
    sent = sent + 1
    body = (body:gsub("%(slot)s", string.format("%%010d", sent)))
  end
  return wrk.format("POST", "/v1/conversations", headers, body)
end
"""


@dataclasses.dataclass(frozen=True)
class Load:
    """One wrk run: throughput, and the server's CPU time per request (robust to other load)."""

    requests_per_second: float
    cpu_us_per_request: float


def median_load(runs: Sequence[Load]) -> Load:
    """Return the median throughput and the median CPU per request of ``runs``."""
    return Load(
        statistics.median(run.requests_per_second for run in runs),
        statistics.median(run.cpu_us_per_request for run in runs),
    )


@dataclasses.dataclass(frozen=True)
class Spread:
    """The median of a figure over rounds, with the lowest and highest round."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def columns(self, form: str) -> str:
        """Return ``median  low  high`` formatted for a bench's printed table."""
        return f"{self.median:>12{form}}{self.low:>12{form}}{self.high:>12{form}}"

    def figures(self, key: str) -> dict[str, float]:
        """Return the figures run_all.py reads: ``key``, ``key_low`` and ``key_high``."""
        return {key: self.median, f"{key}_low": self.low, f"{key}_high": self.high}


def cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    port: int,
    bodies: Sequence[bytes],
    *,
    content_type: str,
    seconds: int,
    connections: int = 32,
    pid: int | None = None,
    unique: bool = False,
    settle: Callable[[], None] | None = None,
) -> Load:
    """Run wrk (1 thread, pinned to LOAD_CPU) posting ``bodies`` round-robin.

    With ``unique``, every ``ID_SLOT`` in a body is replaced by the number of the request, so
    no two requests of the run carry the same conversation ids (give each run's bodies their
    own tag too, so runs against one daemon do not repeat each other's ids). ``settle`` is
    called after the load and before the server's CPU time is read (say, until the daemon has
    scored what it queued).
    """
    require("wrk")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bodies.txt"
        # One body per line: NDJSON bodies have their newlines escaped and restored in Lua.
        data.write_bytes(b"\n".join(b.replace(b"\n", b"\\n") for b in bodies) + b"\n")
        script = Path(tmp) / "post.lua"
        lua = _LUA % {
            "path": data,
            "ctype": content_type,
            "unique": "true" if unique else "false",
            "slot": ID_SLOT,
        }
        if content_type == "application/x-ndjson":
            lua = lua.replace("bodies[n] = line", 'bodies[n] = line:gsub("\\\\n", "\\n")')
        script.write_text(lua)
        cpu_before = cpu_seconds(pid) if pid else 0.0
        result = subprocess.run(
            _pinned(
                [
                    "wrk",
                    "-t1",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{port}",
                ],
                LOAD_CPU,
            ),
            capture_output=True,
            text=True,
            check=True,
        )
        if settle is not None:
            settle()
        cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed requests:\n{result.stdout}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    total = re.search(r"(\d+) requests in", result.stdout)
    if rate is None or total is None:
        raise RuntimeError(result.stdout + result.stderr)
    return Load(float(rate.group(1)), cpu / int(total.group(1)) * 1e6)


def conversation(
    index: int, *, negative: bool | None = None, id: str | None = None
) -> dict[str, Any]:
    """An ~800-byte conversation like docs/api.md's example, with a distinct id.

    ``negative`` sets the user's thumbs-down (a boost trigger); by default one in 50 has it.
    """
    return {
        "id": id or f"bench-{index:08d}",
        "agent": "support-bot",
        "model": "gpt-4.1-mini",
        "messages": [
            {"role": "user", "content": "Where is my order? It was supposed to arrive on Monday."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t1", "name": "lookup_order", "arguments": '{"order": 1234}'}
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "t1",
                "content": '{"status": "shipped", "eta": "tomorrow"}',
                "error": False,
            },
            {"role": "assistant", "content": "Your order has shipped and arrives tomorrow."},
        ],
        "signals": {
            "user_thumbs_down": index % 50 == 0 if negative is None else negative,
            "escalation_requested": False,
        },
        "usage": {"input_tokens": 850, "output_tokens": 120, "cost_usd": 0.0031},
        "started_at": "2026-11-26T10:00:00Z",
        "ended_at": "2026-11-26T10:00:09Z",
        "metadata": {"channel": "web", "locale": "en-GB"},
    }


def encoded(index: int) -> bytes:
    return json.dumps(conversation(index)).encode()


def mixed(count: int, *, negative_share: float, tag: str) -> list[bytes]:
    """Return ``count`` conversations, ``negative_share`` of them with a thumbs-down.

    Their ids are ``{tag}-{ID_SLOT}-{n}``: sent with ``wrk(..., unique=True)`` every request
    carries new ids. Which ids are sampled follows from their hash, independent of the signal.
    """
    every = round(1 / negative_share) if negative_share else 0
    return [
        json.dumps(
            conversation(n, negative=bool(every) and n % every == 0, id=f"{tag}-{ID_SLOT}-{n}")
        ).encode()
        for n in range(count)
    ]
