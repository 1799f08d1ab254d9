"""The daemon's memory under decompression bombs: 20 in a row, then back to baseline?

    python bench/bench_bombs.py [--bombs 20] [--inflated-mb 200]

Starts the real daemon on its embedded default config (``server.limits.max_body_bytes`` 16 MiB),
waits for it to settle and reads its RSS (the baseline). Then sends ``--bombs`` bodies of about
200 KB that inflate to ``--inflated-mb`` MB of zeros, one after another on fresh connections,
rotating over gzip and deflate and over JSON, NDJSON, OTLP/protobuf and OTLP/JSON, each of which
must be answered 413. The peak is the kernel's own high-water mark of the resident set
(``VmHWM``), reset after the baseline (``/proc/PID/clear_refs``), so no sampling interval can
miss it; RSS is also read after every bomb. After the last bomb the daemon is left alone for
``--settle`` seconds, sent ten ordinary conversations, and read again (the final RSS).

Targets: peak <= 150 MB, final within 10 MB of the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import LOAD_CPU, daemon_args, encoded, free_port, pinned_self, server

TARGET_PEAK_MB, TARGET_FINAL_DELTA_MB = 150.0, 10.0
#: (path, content type) the bombs rotate over: every body-reading endpoint that takes them.
TARGETS = (
    ("/v1/conversations", "application/json"),
    ("/v1/conversations", "application/x-ndjson"),
    ("/v1/traces", "application/x-protobuf"),
    ("/v1/traces", "application/json"),
)
ENCODINGS = ("gzip", "deflate")


def bomb(encoding: str, inflated_mb: int) -> bytes:
    """Return one stream (gzip or zlib) of ``[`` and zeros inflating to ``inflated_mb`` MB."""
    wbits = 31 if encoding == "gzip" else 15
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [packer.compress(b"[")]
    block = b"\0" * 1_000_000
    parts += [packer.compress(block) for _ in range(inflated_mb)]
    parts.append(packer.flush())
    return b"".join(parts)


def status_mb(pid: int, field: str) -> float:
    """Return a ``/proc/PID/status`` memory field (``VmRSS``, ``VmHWM``) in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no {field} for pid {pid}")


def reset_peak(pid: int) -> bool:
    """Reset the process's ``VmHWM`` to its current RSS (Linux 4.0+); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST ``body`` on a fresh connection; return the status and the answer's body.

    Raw sockets: the daemon answers a bomb before its body is all sent, and closes; a client
    library would report the reset instead of the answer.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        writer.write(body)
        await writer.drain()
    except ConnectionError:
        pass  # answered and closed before the whole bomb was sent: the answer is in the buffer
    try:
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        answer = await reader.readexactly(length)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return int(status_line.split()[1]), answer


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the bench, print its table and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bombs", type=int, default=20)
    parser.add_argument("--inflated-mb", type=int, default=200)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before the final RSS")
    args = parser.parse_args(argv)
    bombs = {encoding: bomb(encoding, args.inflated_mb) for encoding in ENCODINGS}
    port = free_port()
    with pinned_self(LOAD_CPU), server(daemon_args(port), port=port) as pid:
        time.sleep(2)
        baseline = status_mb(pid, "VmRSS")
        exact_peak = reset_peak(pid)
        after: list[float] = []
        answers: set[tuple[int, str]] = set()
        for index in range(args.bombs):
            path, content_type = TARGETS[index % len(TARGETS)]
            encoding = ENCODINGS[index // len(TARGETS) % len(ENCODINGS)]
            headers = {"Content-Type": content_type, "Content-Encoding": encoding}
            status, answer = asyncio.run(post(port, path, bombs[encoding], headers))
            if status != 413:
                raise RuntimeError(f"bomb {index} on {path}: {status} {answer[:200]!r}")
            answers.add((status, f"{path} {content_type}"))
            after.append(status_mb(pid, "VmRSS"))
        peak = status_mb(pid, "VmHWM") if exact_peak else max(after)
        time.sleep(args.settle)
        for index in range(10):
            body = encoded(index)
            status, answer = asyncio.run(
                post(port, "/v1/conversations", body, {"Content-Type": "application/json"})
            )
            if status != 202:
                raise RuntimeError(f"ordinary conversation: {status} {json.loads(answer)}")
        final = status_mb(pid, "VmRSS")
    figures = {
        "baseline_mb": baseline,
        "peak_mb": peak,
        "final_mb": final,
        "final_over_baseline_mb": final - baseline,
    }
    sizes = ", ".join(f"{e} {len(b) / 1000:,.0f} KB" for e, b in bombs.items())
    print(f"{args.bombs} bombs ({sizes}, each inflating to {args.inflated_mb} MB), all 413")
    print("RSS MB after each bomb: " + ", ".join(f"{mb:.0f}" for mb in after))
    peak_how = "VmHWM" if exact_peak else "max of the per-bomb samples"
    rows = [
        ("RSS baseline, before the bombs, MB", f"{baseline:.1f}", ""),
        (f"RSS peak during the bombs ({peak_how}), MB", f"{peak:.1f}", f"<= {TARGET_PEAK_MB:g}"),
        ("RSS final, after settling and 10 posts, MB", f"{final:.1f}", ""),
        (
            "RSS final - baseline, MB",
            f"{final - baseline:+.1f}",
            f"<= {TARGET_FINAL_DELTA_MB:g}",
        ),
    ]
    for name, value, target in rows:
        print(f"{name:<52}{value:>12}{target:>16}")
    return figures


if __name__ == "__main__":
    main()
