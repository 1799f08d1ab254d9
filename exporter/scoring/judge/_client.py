"""One OpenAI-compatible chat-completions endpoint: pooled, capped, retried, guarded, paid for.

Works with anything that speaks ``POST {base_url}/chat/completions`` (OpenAI, Azure OpenAI with
``api_key_header: api-key`` and an ``api-version`` query, vLLM, Ollama, LiteLLM proxies).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from exporter._version import __version__
from exporter.config.model import JudgeConfig
from exporter.metrics import Metrics
from exporter.scoring.judge._breaker import BreakerState, CircuitBreaker
from exporter.scoring.judge._budget import DailyBudget, utc_now
from exporter.scoring.judge._errors import BreakerOpen, JudgeFailed, OverBudget
from exporter.scoring.judge._health import JudgeHealth

__all__ = ["Completion", "JudgeClient", "parse_retry_after"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Completion:
    """The text of a chat completion and what it cost."""

    content: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


class _Retry(Exception):
    """A failed attempt worth repeating (429, 5xx, timeout, connection error)."""

    def __init__(self, why: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.kind = kind  # ScorerError.kind of the failure, if it is the last attempt
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: dt.datetime) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


class JudgeClient:
    """Sends chat completions to one judge endpoint for the life of the daemon.

    A semaphore caps requests in flight, each request has a timeout, 429/5xx/timeouts are
    retried with exponential backoff and jitter (or as long as ``Retry-After`` says), a circuit
    breaker stops calling a failing endpoint, and a daily budget stops calling a costly one.
    """

    def __init__(
        self,
        *,
        config: JudgeConfig,
        metrics: Metrics,
        clock: Callable[[], dt.datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.name = config.name
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._jitter = jitter
        self._url = f"{config.base_url}/chat/completions"
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.json_mode = config.response_format
        self.budget = DailyBudget(limit=config.daily_budget_usd, clock=clock)
        self.health = JudgeHealth()  # fed by the graders asking this judge for verdicts
        self.breaker = CircuitBreaker(
            failures=config.breaker_failures,
            cooldown=config.breaker_cooldown,
            clock=monotonic,
            on_change=self._breaker_changed,
        )

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"agent-quality-exporter/{__version__}", **self.config.headers}
        key = self.config.api_key
        if key:
            header = self.config.api_key_header
            headers[header] = f"Bearer {key}" if header.lower() == "authorization" else key
        return headers

    def _session_now(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop; one pool for the daemon's life.
        if self._session is None:
            limit = self.config.concurrency
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
                headers=self._headers(),
            )
        return self._session

    async def aclose(self) -> None:
        """Close the connection pool; later calls fail. Safe to call more than once."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def complete(self, messages: Sequence[Mapping[str, str]]) -> Completion:
        """Return one chat completion for ``messages``; raise a ``JudgeError`` subclass."""
        if self._closed:
            raise JudgeFailed("the client is closed", judge=self.name, kind="closed")
        if not self.budget.allows():
            raise OverBudget(
                f"today's budget of {self.budget.limit:g} USD is spent", judge=self.name
            )
        attempt = 0
        while True:
            if not self.breaker.allows():
                raise BreakerOpen("circuit open after repeated failures", judge=self.name)
            if attempt:
                self._metrics.judge_retries.labels(self.name).inc()
            try:
                return await self._request(messages)
            except _Retry as retry:
                delay = self._delay(attempt, retry.retry_after)
                if attempt >= self.config.retries or delay is None:
                    tries = attempt + 1
                    why = f"{retry.why} ({tries} attempts)"
                    raise JudgeFailed(why, judge=self.name, kind=retry.kind) from None
                attempt += 1
                await self._sleep(delay)
            except BaseException:
                self.breaker.release()  # cancelled mid-request: says nothing about the endpoint
                raise

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Return how long to wait before the next attempt, or None to give up."""
        if retry_after is not None:
            return retry_after if retry_after <= self.config.max_retry_after else None
        ceiling = min(self.config.max_backoff, self.config.backoff * 2.0**attempt)
        return ceiling / 2 + self._jitter() * ceiling / 2

    async def _request(self, messages: Sequence[Mapping[str, str]]) -> Completion:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": list(messages),
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        session = self._session_now()
        async with self._semaphore:
            started = self._monotonic()
            try:
                async with session.post(
                    self._url, json=body, params=dict(self.config.query), timeout=self._timeout
                ) as response:
                    payload = await response.read()
                    status, retry_after = response.status, response.headers.get("Retry-After")
            except TimeoutError:
                self._failed("timeout")
                raise _Retry(f"no answer within {self.config.timeout:g}s", kind="timeout") from None
            except aiohttp.ClientError as error:
                self._failed("connection_error")
                why = f"connection failed: {type(error).__name__}"
                raise _Retry(why, kind="connection failed") from None
            finally:
                self._metrics.judge_request_duration.labels(self.name).observe(
                    self._monotonic() - started
                )
        return self._answer(status, payload, retry_after, messages)

    def _answer(
        self,
        status: int,
        payload: bytes,
        retry_after: str | None,
        messages: Sequence[Mapping[str, str]],
    ) -> Completion:
        if status == 200:
            return self._completion(payload, messages)
        wait = parse_retry_after(retry_after, now=self._clock())
        if status == 429:
            self._failed("rate_limited")
            raise _Retry("rate limited (HTTP 429)", kind="HTTP 429", retry_after=wait)
        if status >= 500:
            self._failed("server_error")
            raise _Retry(f"server error (HTTP {status})", kind=f"HTTP {status}", retry_after=wait)
        self._count("client_error")
        if status == 400 and self.json_mode and b"response_format" in payload:
            # "Where supported": this endpoint refuses JSON mode, so ask in the prompt only.
            log.warning("judge %s: endpoint refuses response_format; not sending it", self.name)
            self.json_mode = False
            self.breaker.release()
            raise _Retry("endpoint refused response_format", kind="HTTP 400", retry_after=0.0)
        # A 4xx may be about one request (a content filter), but one on every request is a
        # broken endpoint (a wrong key or model: LiteLLM and others answer those with a 400).
        # The breaker opens on failures in a row only, so the first kind cannot open it.
        self.breaker.failure()
        raise JudgeFailed(
            f"HTTP {status}: {_error_message(payload)}", judge=self.name, kind=f"HTTP {status}"
        )

    def _completion(self, payload: bytes, messages: Sequence[Mapping[str, str]]) -> Completion:
        try:
            data = json.loads(payload)
            content = data["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as error:
            self._failed("bad_response")
            raise JudgeFailed(
                f"HTTP 200 without a chat completion in the body ({error})",
                judge=self.name,
                kind="bad response",
            ) from None
        self._count("ok")
        self.breaker.success()
        usage = data.get("usage") if isinstance(data, dict) else None
        input_tokens, output_tokens = _tokens(usage, messages, content)
        price = self.config.price
        cost = 0.0
        if price is not None:
            cost = price.cost(input_tokens=input_tokens, output_tokens=output_tokens)
        self._metrics.judge_tokens.labels(self.name, "input").inc(input_tokens)
        self._metrics.judge_tokens.labels(self.name, "output").inc(output_tokens)
        self._metrics.judge_cost.labels(self.name).inc(cost)
        self.budget.spend(cost)
        return Completion(content, input_tokens, output_tokens, cost)

    def _count(self, outcome: str) -> None:
        self._metrics.judge_requests.labels(self.name, outcome).inc()

    def _failed(self, outcome: str) -> None:
        self._count(outcome)
        self.breaker.failure()

    def _breaker_changed(self, state: BreakerState) -> None:
        self._metrics.judge_breaker_open.labels(self.name).set(
            0 if state is BreakerState.CLOSED else 1
        )
        if state is BreakerState.OPEN:
            self._metrics.judge_breaker_opened.labels(self.name).inc()
            log.warning(
                "judge %s: circuit open, no calls for %gs", self.name, self.config.breaker_cooldown
            )
        elif state is BreakerState.CLOSED:
            log.info("judge %s: circuit closed, calling again", self.name)


def _tokens(usage: Any, messages: Sequence[Mapping[str, str]], content: str) -> tuple[int, int]:
    """Return (input, output) tokens from ``usage``, estimated at 4 characters a token without."""
    if isinstance(usage, dict):
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if isinstance(prompt, int) and isinstance(completion, int):
            return max(prompt, 0), max(completion, 0)
    # Without usage the budget must still bind, so spend an estimate rather than nothing.
    sent = sum(len(m.get("content", "")) for m in messages)
    return (sent + 3) // 4, (len(content) + 3) // 4


def _error_message(payload: bytes) -> str:
    """Return the endpoint's error message, short (it may echo parts of the prompt)."""
    try:
        error = json.loads(payload)["error"]
        message = str(error.get("message", error) if isinstance(error, dict) else error)
    except (ValueError, KeyError, TypeError):
        message = payload[:200].decode("utf-8", "replace")
    return message[:200]
