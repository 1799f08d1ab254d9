"""A local OpenAI-compatible chat-completions server for the judge tests, run as its own process.

``python -m tests.support.fake_openai [--port 0] [--api-key KEY]`` serves
``POST /v1/chat/completions`` in OpenAI's wire format on 127.0.0.1 and prints
``listening on 127.0.0.1:PORT`` once it accepts connections. Tests steer it per model:

- ``PUT /_control/models/{model}`` ``{"default": {...}, "script": [{...}, ...]}``: each request
  for ``model`` consumes the next ``script`` behaviour, then gets ``default``;
- ``GET /_control/requests``: the chat requests received (model, body, headers, query, the
  client's address ``peer``, time);
- ``GET /_control/stats``: ``{"requests": n, "max_in_flight": n}``; ``POST /_control/reset``.

A behaviour is a mapping with any of: ``delay`` (seconds before answering), ``status`` (HTTP
status; non-200 answers carry an OpenAI error body), ``retry_after`` (header value),
``score`` (answer ``{"score": N, "reason": ...}``), ``content`` (the message content verbatim:
prose, fenced JSON...), ``body`` (the raw response body: malformed JSON), ``usage`` (a usage
block, or ``null`` to leave it out), ``reject_response_format`` (answer 400 when the request
asks for JSON mode), ``tool_calls`` (a list of ``{"name", "arguments"}``: while the request's
last message is the user's, answer with these calls, ids ``call_N``, finish reason
``tool_calls``; once tool results are in, answer with ``content``, as an agent's model would).
Without ``score`` or ``content`` the score comes from a marker in the prompt:
``judge-score[MODEL]=N`` for that model, else ``judge-score=N``, else 3.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.daemon import stop_process

REPO = Path(__file__).resolve().parents[2]

_MARKER = re.compile(r"judge-score(?:\[(?P<model>[^\]]+)\])?=(?P<score>-?[0-9.]+)")
_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_api_key", 429: "rate_limit_error"}


class _State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.behaviours: dict[str, dict[str, Any]] = {}
        self.scripts: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def next_behaviour(self, model: str) -> dict[str, Any]:
        script = self.scripts.get(model)
        if script:
            return script.pop(0)
        return self.behaviours.get(model, {})


_STATE = web.AppKey("state", _State)
_API_KEY = web.AppKey("api_key", str)
_IDS = itertools.count(1)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)


def _score(messages: list[dict[str, Any]], model: str) -> float:
    text = "\n".join(str(m.get("content", "")) for m in messages)
    general = None
    for match in _MARKER.finditer(text):
        if match.group("model") == model:
            return float(match.group("score"))
        if match.group("model") is None and general is None:
            general = float(match.group("score"))
    return 3.0 if general is None else general


def _peer(request: web.Request) -> tuple[object, ...]:
    """Return the client's (host, port), empty once the connection is gone."""
    transport = request.transport
    return tuple(transport.get_extra_info("peername") or ()) if transport is not None else ()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer one chat completion the way the behaviour for its model says."""
    state = request.app[_STATE]
    try:
        body = await request.json()
        model, messages = body["model"], body["messages"]
        if not isinstance(model, str) or not isinstance(messages, list) or not messages:
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return _error(400, "body must be JSON with a model and a non-empty messages list")
    state.requests.append(
        {
            "model": model,
            "body": body,
            "headers": dict(request.headers),
            "query": dict(request.query),
            "peer": list(_peer(request)),
            "time": time.monotonic(),
        }
    )
    key = request.app[_API_KEY]
    if key and request.headers.get("Authorization") != f"Bearer {key}":
        return _error(401, "Incorrect API key provided.")
    behaviour = state.next_behaviour(model)
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        await asyncio.sleep(float(behaviour.get("delay", 0)))
    finally:
        state.in_flight -= 1
    if behaviour.get("reject_response_format") and "response_format" in body:
        return _error(400, "Invalid parameter: 'response_format' is not supported with this model.")
    status = int(behaviour.get("status", 200))
    if status != 200:
        headers = {}
        if "retry_after" in behaviour:
            headers["Retry-After"] = str(behaviour["retry_after"])
        return _error(status, behaviour.get("error", f"fake error {status}"), headers)
    if "body" in behaviour:
        return web.Response(body=str(behaviour["body"]).encode(), content_type="application/json")
    if "content" in behaviour:
        content = str(behaviour["content"])
    else:
        score = behaviour.get("score", _score(messages, model))
        content = json.dumps({"score": score, "reason": f"fake verdict from {model}"})
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    finish_reason = "stop"
    calls = behaviour.get("tool_calls")
    if calls and isinstance(messages[-1], dict) and messages[-1].get("role") == "user":
        message["content"], finish_reason = None, "tool_calls"
        message["tool_calls"] = [_tool_call(call) for call in calls]
    answer: dict[str, Any] = {
        "id": f"chatcmpl-fake{next(_IDS)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
    }
    usage = behaviour.get("usage", "auto")
    if usage == "auto":
        prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4
        said = message["content"] or json.dumps(message.get("tool_calls"))
        usage = {"prompt_tokens": prompt, "completion_tokens": len(said) // 4}
    if usage is not None:
        usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        answer["usage"] = usage
    return web.json_response(answer)


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """Return one of a behaviour's ``tool_calls`` in OpenAI's wire format, with a fresh id."""
    return {
        "id": f"call_{next(_IDS)}",
        "type": "function",
        "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))},
    }


async def set_model(request: web.Request) -> web.Response:
    """Set the default behaviour and the script for one model."""
    state, model = request.app[_STATE], request.match_info["model"]
    document = await request.json()
    state.behaviours[model] = document.get("default", {})
    state.scripts[model] = list(document.get("script", []))
    return web.json_response({"ok": True})


async def requests_received(request: web.Request) -> web.Response:
    """Return the chat requests received since the last reset."""
    return web.json_response(request.app[_STATE].requests)


async def stats(request: web.Request) -> web.Response:
    """Return request counts and the most requests ever in flight at once."""
    state = request.app[_STATE]
    return web.json_response(
        {"requests": len(state.requests), "max_in_flight": state.max_in_flight}
    )


async def reset(request: web.Request) -> web.Response:
    """Forget behaviours, scripts and recorded requests."""
    request.app[_STATE].reset()
    return web.json_response({"ok": True})


def make_app(*, api_key: str | None = None) -> web.Application:
    """Build the fake server's application."""
    app = web.Application()
    app[_STATE] = _State()
    app[_API_KEY] = api_key or ""
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_put("/_control/models/{model}", set_model)
    app.router.add_get("/_control/requests", requests_received)
    app.router.add_get("/_control/stats", stats)
    app.router.add_post("/_control/reset", reset)
    return app


async def _serve(port: int, api_key: str | None) -> None:
    # A client that gave up (timeout) cancels its request here too, as on a real server.
    runner = web.AppRunner(
        make_app(api_key=api_key), access_log=None, handler_cancellation=True, shutdown_timeout=1
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening on 127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    """Run the fake server until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.api_key))


@dataclass
class FakeOpenAI:
    """The test side of a running fake server: its URL and synchronous control calls."""

    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Return what a judge's ``base_url`` should be."""
        return f"{self.url}/v1"

    def _call(self, method: str, path: str, document: Any = None) -> Any:
        data = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def behave(
        self,
        model: str,
        default: dict[str, Any] | None = None,
        *,
        script: list[dict[str, Any]] | None = None,
    ) -> None:
        """Make requests for ``model`` follow ``script`` first, then ``default``."""
        document = {"default": default or {}, "script": script or []}
        self._call("PUT", f"/_control/models/{model}", document)

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Return the chat requests received, optionally only those for ``model``."""
        received: list[dict[str, Any]] = self._call("GET", "/_control/requests")
        return [r for r in received if model is None or r["model"] == model]

    def stats(self) -> dict[str, int]:
        """Return ``{"requests": n, "max_in_flight": n}``."""
        result: dict[str, int] = self._call("GET", "/_control/stats")
        return result

    def reset(self) -> None:
        """Forget every behaviour and recorded request."""
        self._call("POST", "/_control/reset", {})


@contextlib.contextmanager
def running_fake_openai(*, api_key: str | None = None) -> Iterator[FakeOpenAI]:
    """Start the fake server as a subprocess on a free loopback port; stop it afterwards."""
    args = [sys.executable, "-m", "tests.support.fake_openai", "--port", "0"]
    if api_key:
        args += ["--api-key", api_key]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"fake OpenAI server did not start: {line!r}")
        yield FakeOpenAI(process, int(line.rsplit(":", 1)[1]))
    finally:
        stop_process(process, timeout=10)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    main()
