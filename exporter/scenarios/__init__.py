"""Judge alert rules on synthetic traffic before deploying them.

``agent-quality-exporter scenarios`` runs a suite of scenarios (steady, diurnal and quiet
traffic, drops, short dips, a slow drift, an error budget burning, a day whose sampling budget
would run out) through the real ``promtool test rules`` against any rule files, and reports
per scenario the false pages, false warnings and detection delay. docs/alerting.md shows the
report for the default config. The same generator feeds the repository's promtool tests.
"""

from exporter.scenarios import _cli as cli
from exporter.scenarios._promtool import (
    Observation,
    observe,
    promtool_test,
    prune_rule_files,
    write_test_file,
)
from exporter.scenarios._run import format_report, run_suite
from exporter.scenarios._sampling import sampled_day
from exporter.scenarios._suite import (
    WARM,
    Case,
    Outcome,
    Scenario,
    default_suite,
    run_scenario,
)
from exporter.scenarios._synthetic import (
    HEALTHY,
    INSTANCE,
    JOB,
    Series,
    Stream,
    constant,
    counter_series,
    diurnal,
    healthy,
    input_series,
    poisson,
    ramp,
    step,
)

__all__ = [
    "HEALTHY",
    "INSTANCE",
    "JOB",
    "WARM",
    "Case",
    "Observation",
    "Outcome",
    "Scenario",
    "Series",
    "Stream",
    "cli",
    "constant",
    "counter_series",
    "default_suite",
    "diurnal",
    "format_report",
    "healthy",
    "input_series",
    "observe",
    "poisson",
    "promtool_test",
    "prune_rule_files",
    "ramp",
    "run_scenario",
    "run_suite",
    "sampled_day",
    "step",
    "write_test_file",
]
