"""``agent-quality-exporter scenarios``: the suite's report for a config or any rule files.

Its arguments are parsed by ``exporter.cli``, which loads this package only to run it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, TextIO

from exporter.config import Config, parse_duration
from exporter.exceptions import ExporterError
from exporter.scenarios._suite import Outcome

__all__ = ["run"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _outcome_data(outcome: Outcome) -> dict[str, Any]:
    case = outcome.case
    return {
        "scenario": outcome.scenario,
        "agent": case.agent,
        "traffic": case.traffic,
        "change": case.change,
        "real": case.real,
        "false_pages": outcome.false_pages,
        "false_warnings": outcome.false_warnings,
        "delay_minutes": outcome.delay,
        "detect": case.detect,
        "seed": outcome.seed,
    }


def run(args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO, config: Config) -> int:
    """Run the suite as ``args`` say; print the report. Exit 1 on a false page or a miss."""
    from exporter.generate import generate
    from exporter.scenarios._run import choose_dimension, format_report, run_suite

    if config.alerting is None:  # pragma: no cover - a loaded config always has one
        print("scenarios: the config has no alerting section", file=stderr)
        return EXIT_USAGE
    try:
        interval = (
            parse_duration(args.interval) if args.interval else config.alerting.scrape_interval
        )
    except ValueError as error:
        print(f"--interval: {error}", file=stderr)
        return EXIT_USAGE
    try:
        dimension = choose_dimension(config, args.dimension)
        with tempfile.TemporaryDirectory(prefix="agent-quality-rules-") as tmp:
            rules = list(args.rules)
            if not rules:
                written = generate(config, out=Path(tmp))
                rules = [path for path in written if path.name.endswith(".rules.yml")]
            outcomes = run_suite(
                config,
                rule_files=rules,
                dimension=dimension,
                interval=interval,
                only=args.scenario,
                seeds=max(1, args.seeds),
            )
    except (ExporterError, OSError) as error:
        print(f"scenarios: {error}", file=stderr)
        return EXIT_FAILURE
    if args.output_format == "json":
        json.dump([_outcome_data(o) for o in outcomes], stdout, indent=2)
        print(file=stdout)
    else:
        seconds = f"{interval:g}s"
        print(f"dimension {dimension.name}, series and evaluation every {seconds}", file=stdout)
        print(format_report(outcomes), file=stdout)
    bad = any(o.false_pages or o.missed for o in outcomes)
    return EXIT_FAILURE if bad else EXIT_OK
