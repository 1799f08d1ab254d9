"""``agent-quality-exporter backtest``: the alerts a config's rules would have raised."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
from pathlib import Path
from typing import Any, TextIO

from exporter.backtest.request import Connection, Request
from exporter.config import Config, load_config
from exporter.config.duration import parse_duration, parse_time
from exporter.exceptions import BacktestError, ConfigError, GenerateError

__all__ = ["add_parser", "run"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
FORMATS = ("text", "json", "markdown")


def add_parser(subparsers: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """Add the ``backtest`` subcommand; ``kwargs`` go to ``add_parser`` as they are."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "backtest",
        help="replay a Prometheus's history through the rules a config generates",
        description="Read the exporter's series from a Prometheus, evaluate the recording and "
        "alerting rules `generate` writes for the config over that history with Prometheus' "
        "own engine (promtool and a local Prometheus on loopback), and report every alert "
        "that would have fired. docs/backtest.md explains how.",
        **kwargs,
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        help="YAML configuration whose rules to backtest (default: the embedded default)",
    )
    parser.add_argument(
        "--compare",
        metavar="PATH",
        help="a second config: the same history through both, and what it adds and removes",
    )
    parser.add_argument(
        "--prometheus.url",
        dest="url",
        required=True,
        metavar="URL",
        help="base URL of the Prometheus that scrapes the exporter (http://prometheus:9090)",
    )
    parser.add_argument(
        "--since",
        default="30d",
        metavar="TIME",
        help="start: RFC 3339, a date, a Unix time, or a duration before --until (default 30d)",
    )
    parser.add_argument(
        "--until",
        default="now",
        metavar="TIME",
        help="end: RFC 3339, a date, a Unix time, a duration ago, or now (default)",
    )
    parser.add_argument(
        "--agent", action="append", default=[], metavar="NAME", help="only this agent (repeat)"
    )
    parser.add_argument(
        "--dimension",
        action="append",
        default=[],
        metavar="NAME",
        help="only this dimension (repeat)",
    )
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=FORMATS,
        default="text",
        help="text (default), json or markdown",
    )
    parser.add_argument(
        "--rules.evaluation-interval",
        dest="interval",
        metavar="DURATION",
        help="how often Prometheus evaluates the rules (default: the rule groups' interval, "
        "else the server's global evaluation_interval, else 1m)",
    )
    http = parser.add_argument_group("connection to Prometheus (as in its http_config)")
    http.add_argument("--prometheus.bearer-token-file", dest="bearer_token_file", metavar="FILE")
    http.add_argument("--prometheus.basic-auth-username", dest="basic_username", metavar="USER")
    http.add_argument(
        "--prometheus.basic-auth-password-file", dest="basic_password_file", metavar="FILE"
    )
    http.add_argument("--prometheus.ca-file", dest="ca_file", metavar="FILE")
    http.add_argument(
        "--prometheus.cert-file",
        dest="cert_file",
        metavar="FILE",
        help="client certificate (with --prometheus.key-file)",
    )
    http.add_argument("--prometheus.key-file", dest="key_file", metavar="FILE")
    http.add_argument(
        "--prometheus.insecure-skip-verify",
        dest="insecure",
        action="store_true",
        help="do not verify the server's certificate",
    )
    http.add_argument(
        "--prometheus.header",
        dest="headers",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra request header, e.g. X-Scope-OrgID=tenant (repeat)",
    )
    http.add_argument(
        "--prometheus.timeout",
        dest="timeout",
        default="2m",
        metavar="DURATION",
        help="for each request (default 2m)",
    )
    return parser


def _path(value: str | None, flag: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{flag}: no file at {value}")
    return path


def _connection(args: argparse.Namespace) -> Connection:
    headers = []
    for header in args.headers:
        name, sep, value = header.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--prometheus.header: expected NAME=VALUE, got {header!r}")
        headers.append((name.strip(), value))
    if args.cert_file and not args.key_file:
        raise ValueError("--prometheus.cert-file needs --prometheus.key-file")
    if args.basic_password_file and not args.basic_username:
        raise ValueError("--prometheus.basic-auth-password-file needs a username")
    if args.bearer_token_file and args.basic_username:
        raise ValueError("use a bearer token or basic auth, not both")
    if not args.url.startswith(("http://", "https://")):
        raise ValueError(f"--prometheus.url: expected http:// or https://, got {args.url!r}")
    return Connection(
        url=args.url,
        bearer_token_file=_path(args.bearer_token_file, "--prometheus.bearer-token-file"),
        basic_auth_username=args.basic_username,
        basic_auth_password_file=_path(
            args.basic_password_file, "--prometheus.basic-auth-password-file"
        ),
        ca_file=_path(args.ca_file, "--prometheus.ca-file"),
        cert_file=_path(args.cert_file, "--prometheus.cert-file"),
        key_file=_path(args.key_file, "--prometheus.key-file"),
        insecure_skip_verify=args.insecure,
        headers=tuple(headers),
        timeout=parse_duration(args.timeout),
    )


def _time(text: str, *, now: dt.datetime) -> dt.datetime:
    """Parse ``now``, a Unix time (as promtool takes), or what ``parse_time`` does."""
    if text == "now":
        return now
    try:
        return dt.datetime.fromtimestamp(float(text), tz=dt.UTC)
    except ValueError:
        return parse_time(text, now=now)


def request_from(args: argparse.Namespace, *, now: dt.datetime) -> Request:
    """Return the backtest ``args`` ask for; raise ValueError on a bad flag."""
    until = min(_time(args.until, now=now), now)
    since = _time(args.since, now=until)
    if since >= until:
        raise ValueError(
            f"--since ({since.isoformat()}) is not before --until ({until.isoformat()})"
        )
    interval = None
    if args.interval is not None:
        interval = parse_duration(args.interval)
        if interval < 1:
            raise ValueError("--rules.evaluation-interval must be at least 1s")
    return Request(
        connection=_connection(args),
        since=since.timestamp(),
        until=until.timestamp(),
        agents=tuple(dict.fromkeys(args.agent)),
        dimensions=tuple(dict.fromkeys(args.dimension)),
        interval=interval,
    )


async def _main(configs: list[Config], request: Request, stderr: TextIO) -> list[Any]:
    # Loaded here, not at the top: every command builds this module's parser.
    from exporter.backtest.progress import TerminalProgress
    from exporter.backtest.run import backtest

    # SIGTERM as Ctrl-C: cancel, so the local Prometheus and promtool are stopped.
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await backtest(configs, request, progress=TerminalProgress(stderr))
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def run(
    args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO, config: Config | None = None
) -> int:
    """Backtest as ``args`` says; return the exit code (0 ok, 1 failure, 2 usage)."""
    try:
        request = request_from(args, now=dt.datetime.now(dt.UTC))
    except ValueError as error:
        print(f"backtest: {error}", file=stderr)
        return EXIT_USAGE
    try:
        configs = [config if config is not None else load_config(args.config_file)]
        if args.compare is not None:
            configs.append(load_config(args.compare))
    except ConfigError as error:
        print(f"config error: {error}", file=stderr)
        return EXIT_USAGE
    for dimension in request.dimensions:
        if not any(d.name == dimension for c in configs for d in c.dimensions):
            print(f"backtest: --dimension {dimension}: not a dimension of the config", file=stderr)
            return EXIT_USAGE
    try:
        results = asyncio.run(_main(configs, request, stderr))
    except GenerateError as error:
        print(f"backtest: {error}", file=stderr)
        return EXIT_USAGE
    except BacktestError as error:
        print(f"backtest: {error}", file=stderr)
        return EXIT_FAILURE
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("backtest: interrupted; the local Prometheus was stopped", file=stderr)
        return EXIT_FAILURE
    from exporter.backtest.report import render, render_compare

    if len(results) == 2:
        stdout.write(render_compare(results[0], results[1], args.output_format))
    else:
        stdout.write(render(results[0], args.output_format))
    stdout.flush()
    return EXIT_OK
