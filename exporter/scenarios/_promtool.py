"""Run rule files over synthetic series with the real ``promtool test rules``.

promtool only compares a query's answer with an expected one, and prints the answer when they
differ. ``observe`` exploits that to read answers back: it expects nothing and parses what
promtool says it got, so any query of the evaluated rules (first firing times, how often an
alert started) can be measured, not just asserted.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exporter.exceptions import GenerateError

__all__ = [
    "Answer",
    "Observation",
    "observe",
    "promtool_test",
    "prune_rule_files",
    "write_test_file",
]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
#: One sample of promtool's "got:" line: ``{a="1", b="2"} 4.8E+02``.
_SAMPLE = re.compile(r"\{([^{}]*)\} ([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def write_test_file(
    path: Path,
    *,
    rule_files: Iterable[Path],
    tests: list[dict[str, Any]],
    evaluation_interval: str = "1m",
) -> Path:
    """Write a promtool unit-test file."""
    document = {
        "rule_files": [str(file) for file in rule_files],
        "evaluation_interval": evaluation_interval,
        "tests": tests,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=1_000_000))
    return path


def promtool_test(path: Path, *, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``promtool test rules`` on ``path``."""
    try:
        return subprocess.run(
            ["promtool", "test", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise GenerateError(
            "promtool is not on PATH (Debian: apt-get install prometheus)"
        ) from None


def prune_rule_files(files: Iterable[Path], out: Path) -> list[Path]:
    """Copy rule files keeping the alerts and only the recording rules they depend on.

    promtool evaluates every rule at every step; dropping the dashboard-only recording
    rules shortens a two-day test without changing what any alert sees.
    """
    documents = [(path, yaml.safe_load(path.read_text())) for path in files]
    rules = [rule for _, doc in documents for group in doc["groups"] for rule in group["rules"]]
    needed: set[str] = set()
    for rule in rules:
        if "alert" in rule:
            needed.update(_NAME.findall(rule["expr"]))
            needed.update(_NAME.findall(" ".join(rule.get("annotations", {}).values())))
    for rule in reversed(rules):  # a rule only reads rules recorded before it
        if rule.get("record") in needed:
            needed.update(_NAME.findall(rule["expr"]))
    written = []
    for index, (path, doc) in enumerate(documents):
        for group in doc["groups"]:
            group["rules"] = [
                rule for rule in group["rules"] if "alert" in rule or rule["record"] in needed
            ]
        doc["groups"] = [group for group in doc["groups"] if group["rules"]]
        target = out / f"{index}-{path.name}"
        target.write_text(yaml.safe_dump(doc, sort_keys=False, width=1_000_000))
        written.append(target)
    return written


@dataclass(frozen=True, slots=True)
class Observation:
    """A query to read back at one evaluation time (seconds from the start)."""

    key: str
    expr: str
    at: float


#: A query's answer: (labels, value) per sample.
Answer = list[tuple[dict[str, str], float]]


def _format_time(seconds: float) -> str:
    return f"{round(seconds)}s"


def _parse(output: str) -> dict[tuple[str, str], Answer]:
    """Return ``{(expr, time): samples}`` from promtool's report of failed expectations."""
    found: dict[tuple[str, str], Answer] = {}
    current: tuple[str, str] | None = None
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith("expr:"):
            match = re.match(r'expr: (".*"), time: ([^,]+),(.*)$', stripped)
            if match is None:
                raise GenerateError(f"cannot read promtool's report: {stripped!r}")
            if match.group(3).strip().startswith("err:"):
                raise GenerateError(f"promtool could not evaluate a query: {stripped}")
            current = (yaml.safe_load(match.group(1)), match.group(2))
            found[current] = []
        elif stripped.startswith("got:") and current is not None:
            samples = []
            for labels, value in _SAMPLE.findall(stripped.removeprefix("got:")):
                pairs = {key: raw.replace('\\"', '"') for key, raw in _LABEL.findall(labels)}
                samples.append((pairs, float(value)))
            found[current] = samples
    return found


def observe(
    path: Path,
    *,
    rule_files: Sequence[Path],
    input_series: list[dict[str, str]],
    interval: str,
    observations: Sequence[Observation],
) -> Mapping[str, Answer]:
    """Evaluate ``rule_files`` over ``input_series``; return each observation's answer.

    Every observation expects no sample; promtool reports the ones that had some, and an
    observation it does not report answered nothing.
    """
    tests = [
        {
            "interval": interval,
            "input_series": input_series,
            "promql_expr_test": [
                {"expr": o.expr, "eval_time": _format_time(o.at), "exp_samples": []}
                for o in observations
            ],
        }
    ]
    write_test_file(path, rule_files=rule_files, tests=tests, evaluation_interval=interval)
    result = promtool_test(path)
    output = result.stdout + result.stderr
    if result.returncode != 0 and "FAILED" not in output:
        raise GenerateError(f"promtool test rules {path} failed:\n{output}")
    parsed = _parse(output)
    answers: dict[str, Answer] = {}
    for o in observations:
        key = next((k for k in parsed if k[0] == o.expr and _seconds(k[1]) == round(o.at)), None)
        answers[o.key] = parsed[key] if key is not None else []
    return answers


_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(text: str) -> int:
    """Return the seconds of promtool's printed evaluation time (``1d1h10m``, ``2h0m0s``)."""
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ms|[smhdwy])", text):
        total += float(number) * _UNIT[unit]
    return round(total)
