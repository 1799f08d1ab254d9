"""The command line: ``run``, ``generate``, ``check-config``, ``export-dataset``, ``scenarios``,
``backtest``.

``main()`` -> ``sys.exit(run(argv, stdout, stderr))`` so tests call ``run`` with StringIO.
Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

Four imports wait in the function of the subcommand that needs them, for start-up time alone
(they hide no cycle): ``exporter.web`` (the daemon and the aiohttp server, about 0.2 s of CPU)
for ``run``, ``exporter.scoring`` (the scorers and the judges' HTTP client, about 0.13 s) for
``check-config``, ``exporter.generate`` (the generators and the Grafana SDK, about 0.04 s)
for ``generate``, and ``exporter.scenarios`` (the generators again) for ``scenarios``;
``--help``, ``export-dataset`` and ``backtest`` load none of them (the backtest's own
machinery waits in ``exporter.backtest.cli.run``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from prometheus_client import CollectorRegistry

from exporter._version import __version__
from exporter.backtest import cli as backtest_cli
from exporter.config import Config, Secret, load_config, needed_secrets
from exporter.dataset import cli as dataset_cli
from exporter.exceptions import ConfigError, ExporterError
from exporter.logs import LEVELS, setup_logging
from exporter.metrics import Metrics

__all__ = ["main", "run"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):([0-9]{1,5})$")

log = logging.getLogger("exporter")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports usage errors to our stderr and returns exit code 2."""

    def __init__(self, *args: Any, stderr: TextIO, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stderr = stderr

    def error(self, message: str) -> NoReturn:
        self.print_usage(self._stderr)
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    pass


def _parser(stderr: TextIO) -> _Parser:
    parser = _Parser(
        prog="agent-quality-exporter",
        description="Sample, score and export the quality of AI agents in production.",
        stderr=stderr,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def config_flag(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--config.file",
            dest="config_file",
            metavar="PATH",
            help="YAML configuration (default: the embedded default config)",
        )

    run = commands.add_parser("run", help="run the daemon", stderr=stderr)
    config_flag(run)
    run.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        help="overrides server.listen_address (default 0.0.0.0:10340)",
    )
    run.add_argument(
        "--web.enable-lifecycle",
        dest="lifecycle_api",
        action="store_true",
        help="accept POST /-/reload (as SIGHUP does), like Prometheus's flag of the same name",
    )
    run.add_argument("--log.level", dest="log_level", choices=LEVELS, default="info")
    run.add_argument(
        "--log.format", dest="log_format", choices=("logfmt", "json"), default="logfmt"
    )

    generate = commands.add_parser(
        "generate", help="write Prometheus rules, Alertmanager config, dashboards", stderr=stderr
    )
    config_flag(generate)
    generate.add_argument("--out", required=True, type=Path, metavar="DIR")
    generate.add_argument(
        "--format",
        dest="output_format",
        choices=("prometheus", "prometheus-operator"),
        default="prometheus",
        help="prometheus-operator also writes a PrometheusRule and dashboard ConfigMaps",
    )

    check = commands.add_parser("check-config", help="validate a config file", stderr=stderr)
    config_flag(check)
    dataset_cli.add_parser(commands, stderr=stderr)  # export-dataset, with its own --config.file
    _scenarios_parser(commands, stderr=stderr)
    backtest_cli.add_parser(commands, stderr=stderr)  # backtest, with its own --config.file
    return parser


def _scenarios_parser(subparsers: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """Add the ``scenarios`` subcommand (``exporter.scenarios`` runs it), with its own flags."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "scenarios",
        help="run synthetic traffic through the alert rules with promtool and report",
        description="Generate the rules for the config (or take --rules), evaluate them with "
        "`promtool test rules` over the scenario suite (steady, diurnal and quiet traffic, "
        "drops, short dips, a drift, an error budget burning, a day whose sampling budget "
        "would run out) and print per scenario the false pages, false warnings and the "
        "delay from a real drop to its page. Needs promtool on PATH; takes a few minutes.",
        **kwargs,
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        help="YAML configuration: its dimensions and sampling shape the traffic, and its "
        "rules are tested unless --rules is given (default: the embedded default)",
    )
    parser.add_argument(
        "--rules",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="a rule file to test instead of the config's generated rules (repeat)",
    )
    parser.add_argument(
        "--dimension",
        metavar="NAME",
        help="the dimension whose scores change (default: the first on a 0-1 scale with an "
        "SLO objective)",
    )
    parser.add_argument(
        "--interval",
        metavar="DURATION",
        help="scrape and evaluation interval of the series (default: alerting.scrape_interval)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this scenario (repeat; default: all)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="run each scenario with N different random draws and report rates (default 1)",
    )
    parser.add_argument(
        "--format", dest="output_format", choices=("table", "json"), default="table"
    )
    return parser


def run(argv: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    """Run the command line ``argv`` (without the program name); return the exit code."""
    try:
        args = _parser(stderr).parse_args(argv)
    except _UsageError as error:
        print(error, file=stderr)
        return EXIT_USAGE
    except SystemExit as exit_:  # --help and --version
        return int(exit_.code or 0)
    try:
        config = load_config(args.config_file)
    except ConfigError as error:
        _print_config_error(error, stderr)
        return EXIT_USAGE
    match args.command:
        case "check-config":
            try:
                _build_components(config)
            except ConfigError as error:
                _print_config_error(error, stderr)
                return EXIT_USAGE
            print(
                f"{config.source}: ok ({len(config.dimensions)} dimensions, "
                f"{len(config.scorers)} scorers, digest {config.digest})",
                file=stdout,
            )
            _print_secrets(config, stdout)
            return EXIT_OK
        case "generate":
            return _generate(config, args, stdout, stderr)
        case "export-dataset":
            return dataset_cli.run(args, stdout=stdout, stderr=stderr, config=config)
        case "scenarios":
            from exporter.scenarios import cli as scenarios_cli  # for start-up time

            return scenarios_cli.run(args, stdout=stdout, stderr=stderr, config=config)
        case "backtest":
            return backtest_cli.run(args, stdout=stdout, stderr=stderr, config=config)
        case _:
            return _run_daemon(config, args, stderr)


def _print_config_error(error: ConfigError, stderr: TextIO) -> None:
    """Print every problem ``error`` carries, one ``config error: file: path: what`` line each."""
    for problem in error.problems:
        print(f"config error: {problem.line}", file=stderr)


def _print_secrets(config: Config, stdout: TextIO) -> None:
    """Say which secrets ``run`` will read, and whether each is there now."""
    by_source: dict[str, list[Secret]] = {}
    for secret in needed_secrets(config):
        by_source.setdefault(secret.where, []).append(secret)
    if by_source:
        print("secrets the daemon reads when it starts (run exits 2 without them):", file=stdout)
    for where, secrets in by_source.items():
        try:
            secrets[0].read()
            now = "set" if secrets[0].env else "readable"
        except ValueError as error:
            now = f"{error} here"
        paths = ", ".join(secret.path for secret in secrets)
        print(f"  {where} ({paths}): {now}", file=stdout)


def _build_components(config: Config) -> None:
    """Build the scorers and confirmers the daemon would, starting nothing.

    Catches what the schema cannot: a plugin that does not import, a rubric on the wrong scale.
    """
    from exporter.scoring import build_scoring  # for start-up time: see the module docstring

    build_scoring(config, metrics=Metrics(config, CollectorRegistry()))


def _generate(config: Config, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from exporter.generate import generate  # for start-up time: see the module docstring

    try:
        written = generate(config, out=args.out, output_format=args.output_format)
    except ExporterError as error:
        print(f"generate: {error}", file=stderr)
        return EXIT_FAILURE
    except OSError as error:
        print(f"generate: cannot write {error.filename}: {error.strerror}", file=stderr)
        return EXIT_FAILURE
    for path in written:
        print(path, file=stdout)
    return EXIT_OK


def _run_daemon(config: Config, args: argparse.Namespace, stderr: TextIO) -> int:
    from exporter.web import serve  # for start-up time: see the module docstring

    setup_logging(level=args.log_level, fmt=args.log_format, stream=stderr)
    host, port = config.server.host, config.server.port
    if args.listen_address is not None:
        match = _ADDRESS.match(args.listen_address)
        if match is None or int(match.group(2)) > 65535:
            print(
                f"--web.listen-address: expected HOST:PORT, got {args.listen_address!r}",
                file=stderr,
            )
            return EXIT_USAGE
        host, port = match.group(1).strip("[]"), int(match.group(2))
    log.info("starting agent-quality-exporter %s", __version__)
    try:
        asyncio.run(
            serve(
                config,
                host=host,
                port=port,
                config_file=args.config_file,
                lifecycle_api=args.lifecycle_api,
            )
        )
    except ConfigError as error:  # a missing secret, or found building scorers and judges
        for problem in error.problems:
            log.error("config error: %s", problem.line)
        return EXIT_USAGE
    except RuntimeError as error:
        log.error("%s", error)
        return EXIT_FAILURE
    return EXIT_OK


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:], sys.stdout, sys.stderr))
