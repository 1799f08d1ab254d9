"""``agent-quality-exporter export-dataset``: the feedback dataset as eval-ready JSONL."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import Any, TextIO

from exporter.config import Config, load_config
from exporter.config.duration import parse_time
from exporter.dataset.export import FORMATS, ExportFilter, ExportStats, export_cases
from exporter.dataset.reader import ReadStats, read_records
from exporter.exceptions import ConfigError

__all__ = ["add_parser", "parse_time", "run"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def add_parser(subparsers: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """Add the ``export-dataset`` subcommand; ``kwargs`` go to ``add_parser`` as they are."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export-dataset",
        help="turn the feedback dataset into eval cases (plain JSONL or Inspect)",
        description="Read the feedback dataset written by `run` (dataset.path in the config) "
        "and write one eval case per line: the input messages, the observed bad output, "
        "its scores and why it was selected.",
        **kwargs,
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        help="YAML configuration whose dataset.path to read (default: the embedded default)",
    )
    parser.add_argument(
        "--dataset.path", dest="dataset_path", metavar="DIR", help="overrides dataset.path"
    )
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=FORMATS,
        default="jsonl",
        help="jsonl: the documented plain format; inspect: Inspect AI samples (default jsonl)",
    )
    parser.add_argument("--out", default="-", metavar="FILE", help="output file (default stdout)")
    parser.add_argument(
        "--agent", action="append", default=[], metavar="NAME", help="only this agent (repeat)"
    )
    parser.add_argument(
        "--dimension",
        action="append",
        default=[],
        metavar="NAME",
        help="only conversations scored bad in this dimension (repeat)",
    )
    parser.add_argument(
        "--since", metavar="TIME", help="selected at or after: RFC 3339, a date, or 7d ago"
    )
    parser.add_argument("--until", metavar="TIME", help="selected before: as --since")
    return parser


def run(
    args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO, config: Config | None = None
) -> int:
    """Export as ``args`` says; return the exit code (0 ok, 1 failure, 2 usage)."""
    now = dt.datetime.now(dt.UTC)
    try:
        since = None if args.since is None else parse_time(args.since, now=now)
        until = None if args.until is None else parse_time(args.until, now=now)
    except ValueError as error:
        print(f"export-dataset: {error}", file=stderr)
        return EXIT_USAGE
    if args.dataset_path is not None:
        directory = Path(args.dataset_path)
    else:
        try:
            config = config if config is not None else load_config(args.config_file)
        except ConfigError as error:
            for problem in error.problems:
                print(f"config error: {problem.line}", file=stderr)
            return EXIT_USAGE
        directory = Path(config.dataset.path)
    if not directory.is_dir():
        print(f"export-dataset: no dataset directory at {directory}", file=stderr)
        return EXIT_FAILURE
    where = ExportFilter(
        agents=frozenset(args.agent),
        dimensions=frozenset(args.dimension),
        since=since,
        until=until,
    )
    read, done = ReadStats(), ExportStats()
    lines = export_cases(
        read_records(directory, stats=read), fmt=args.output_format, where=where, stats=done
    )
    try:
        if args.out == "-":
            stdout.writelines(lines)
            stdout.flush()
        else:
            _write_atomically(Path(args.out), lines)
    except OSError as error:
        print(f"export-dataset: cannot write {error.filename or args.out}: {error}", file=stderr)
        return EXIT_FAILURE
    print(
        f"export-dataset: {done.exported} cases ({args.output_format}) from {read.records} "
        f"records in {read.files} files; {done.filtered} filtered out, {done.duplicates} "
        f"duplicates, {read.torn} torn and {read.corrupt} corrupt lines skipped",
        file=stderr,
    )
    return EXIT_OK


def _write_atomically(path: Path, lines: Any) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written export."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.writelines(lines)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
