"""A client for Prometheus' HTTP API, with the options an operator's tools take.

Bearer token or basic auth read from files (never from the command line), a CA file, a client
certificate, ``insecure_skip_verify`` and extra headers, as in Prometheus' own
``http_config``. Every failure becomes a ``BacktestError`` that says what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from exporter.backtest.request import Connection
from exporter.exceptions import BacktestError

__all__ = ["Connection", "PrometheusAPI", "Series", "format_time", "wait_ready"]


class Series(msgspec.Struct, frozen=True):
    """One series of a matrix result: its labels and its ``[timestamp, "value"]`` pairs."""

    metric: dict[str, str]
    values: list[tuple[float, str]] = []


class _Matrix(msgspec.Struct):
    resultType: str  # the API's field name
    result: list[Series]


class _MatrixResponse(msgspec.Struct):
    status: str
    data: _Matrix | None = None
    errorType: str = ""
    error: str = ""
    warnings: list[str] = []


class _Response(msgspec.Struct):
    status: str
    data: Any = None
    errorType: str = ""
    error: str = ""
    warnings: list[str] = []


def format_time(seconds: float) -> str:
    """Return a Unix time as the API takes it, to the millisecond."""
    return f"{seconds:.3f}"


def _ssl_context(connection: Connection) -> ssl.SSLContext | None:
    if not connection.base().startswith("https://"):
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(connection.ca_file) if connection.ca_file else None
        )
        if connection.cert_file is not None:
            key = str(connection.key_file) if connection.key_file else None
            context.load_cert_chain(str(connection.cert_file), key)
    except (OSError, ssl.SSLError) as error:
        raise BacktestError(f"cannot load the TLS files for {connection.url}: {error}") from None
    if connection.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _read_secret(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise BacktestError(f"cannot read the {what} file {path}: {error.strerror}") from None


def _headers(connection: Connection) -> dict[str, str]:
    headers = dict(connection.headers)
    if connection.bearer_token_file is not None:
        token = _read_secret(connection.bearer_token_file, "bearer token")
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _auth(connection: Connection) -> aiohttp.BasicAuth | None:
    if connection.basic_auth_username is None:
        return None
    password = ""
    if connection.basic_auth_password_file is not None:
        password = _read_secret(connection.basic_auth_password_file, "basic auth password")
    return aiohttp.BasicAuth(connection.basic_auth_username, password)


class PrometheusAPI:
    """The query API of one Prometheus."""

    def __init__(self, connection: Connection, *, session: aiohttp.ClientSession) -> None:
        self.connection = connection
        self._session = session
        self._ssl = _ssl_context(connection)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, connection: Connection) -> AsyncIterator[PrometheusAPI]:
        """Yield an API client with one connection pool, closed afterwards."""
        timeout = aiohttp.ClientTimeout(total=connection.timeout)
        async with aiohttp.ClientSession(
            headers=_headers(connection), auth=_auth(connection), timeout=timeout
        ) as session:
            yield cls(connection, session=session)

    async def _request(
        self, path: str, *, form: Mapping[str, str] | None = None, params: Any = None
    ) -> bytes:
        url = f"{self.connection.base()}{path}"
        method = "POST" if form is not None else "GET"
        try:
            async with self._session.request(
                method, url, data=form, params=params, ssl=self._ssl if self._ssl else True
            ) as response:
                body = await response.read()
                if response.status in (401, 403):
                    raise BacktestError(
                        f"Prometheus at {self.connection.url} refused the request "
                        f"(HTTP {response.status}): check --prometheus.bearer-token-file or "
                        "--prometheus.basic-auth-username/--prometheus.basic-auth-password-file"
                    )
                if response.status == 404:
                    raise BacktestError(
                        f"{url} not found (HTTP 404): --prometheus.url must be the base URL "
                        "of a Prometheus API, such as http://prometheus:9090 (with a path "
                        "prefix if it is served under one)"
                    )
                if response.status >= 500 and not body.startswith(b"{"):
                    raise BacktestError(
                        f"Prometheus at {self.connection.url} answered HTTP {response.status} "
                        f"to {path}: {body[:200].decode(errors='replace')}"
                    )
                return body
        except aiohttp.ClientConnectorCertificateError as error:
            raise BacktestError(
                f"TLS: the certificate of {self.connection.url} is not trusted "
                f"({error.certificate_error}): give its CA with --prometheus.ca-file, or "
                "--prometheus.insecure-skip-verify"
            ) from None
        except aiohttp.ClientSSLError as error:
            raise BacktestError(
                f"TLS handshake with {self.connection.url} failed: {error}"
            ) from None
        except aiohttp.ClientError as error:
            raise BacktestError(
                f"cannot reach Prometheus at {self.connection.url}: {error}"
            ) from None
        except TimeoutError:
            raise BacktestError(
                f"Prometheus at {self.connection.url} did not answer {path} within "
                f"{self.connection.timeout:g}s (--prometheus.timeout)"
            ) from None

    def _check(self, response: _Response | _MatrixResponse, what: str) -> None:
        if response.status != "success":
            raise BacktestError(
                f"Prometheus at {self.connection.url} could not run {what}: "
                f"{response.errorType}: {response.error}"
            )

    def _decode(self, body: bytes, kind: type[Any], what: str) -> Any:
        try:
            return msgspec.json.decode(body, type=kind)
        except msgspec.DecodeError:
            raise BacktestError(
                f"{self.connection.url} did not answer {what} like a Prometheus API: "
                f"{body[:200].decode(errors='replace')!r}"
            ) from None

    async def query(self, expr: str, *, at: float) -> Any:
        """Return the ``data`` of an instant query at ``at``."""
        body = await self._request("/api/v1/query", form={"query": expr, "time": format_time(at)})
        response = self._decode(body, _Response, f"the query {expr}")
        self._check(response, f"the query {expr}")
        return response.data

    async def matrix(self, expr: str, *, at: float) -> list[Series]:
        """Return the raw samples of a range-vector query (``name{...}[2h]``) at ``at``."""
        body = await self._request("/api/v1/query", form={"query": expr, "time": format_time(at)})
        return self._matrix(body, expr)

    async def query_range(
        self, expr: str, *, start: float, end: float, step: float
    ) -> list[Series]:
        """Return ``expr`` evaluated at ``start``, ``start + step``, ... up to ``end``."""
        form = {
            "query": expr,
            "start": format_time(start),
            "end": format_time(end),
            "step": f"{step:g}",
        }
        body = await self._request("/api/v1/query_range", form=form)
        return self._matrix(body, expr)

    def _matrix(self, body: bytes, expr: str) -> list[Series]:
        response = self._decode(body, _MatrixResponse, f"the query {expr}")
        self._check(response, f"the query {expr}")
        if response.data is None or response.data.resultType != "matrix":
            raise BacktestError(f"the query {expr} did not return a matrix")
        result: list[Series] = response.data.result
        return result

    async def label_values(
        self, label: str, *, match: str | None = None, start: float, end: float
    ) -> list[str]:
        """Return the values of ``label`` on series matching ``match`` in [start, end]."""
        params = [("start", format_time(start)), ("end", format_time(end))]
        if match is not None:
            params.append(("match[]", match))
        body = await self._request(f"/api/v1/label/{label}/values", params=params)
        response = self._decode(body, _Response, f"the {label} values")
        self._check(response, f"the {label} values")
        return [str(value) for value in response.data or []]

    async def status(self, what: str) -> dict[str, Any] | None:
        """Return ``/api/v1/status/<what>`` (``buildinfo``, ``runtimeinfo``, ``config``).

        None when the server does not offer it (an older version, a proxy, a compatible
        store): these only make messages and defaults better.
        """
        try:
            body = await self._request(f"/api/v1/status/{what}")
            response = msgspec.json.decode(body, type=_Response)
        except (BacktestError, msgspec.DecodeError):
            return None
        if response.status != "success" or not isinstance(response.data, dict):
            return None
        return response.data


async def wait_ready(api: PrometheusAPI) -> None:
    """Wait until ``api`` answers a query (a Prometheus just started); bound it by a timeout."""
    while True:
        try:
            await api.query("1", at=0)
            return
        except BacktestError:
            await asyncio.sleep(0.1)
