"""The Grafana dashboards and provisioning: structure, colors from the config, drift, PromQL."""

from __future__ import annotations

import io
import itertools
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from exporter.cli import run
from exporter.config import Config, load_config
from exporter.exceptions import ConfigError
from exporter.generate import build_rules
from exporter.generate.grafana import TAG, dashboards, write_grafana
from exporter.generate.model import RecordingRule
from exporter.names import AGENT_UID, OVERVIEW_UID
from tests.support.dashboards import COMMITTED, load, panels, queries, substitute

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MakeConfig = Callable[..., Config]


def _default() -> dict[str, dict[str, Any]]:
    return dashboards(load_config(None))


def _panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    matching = [p for p in panels(dashboard) if p.get("title") == title]
    assert len(matching) == 1, f"{len(matching)} panels titled {title!r}"
    return matching[0]


def _override_steps(panel: dict[str, Any], ref: str) -> list[tuple[float | None, str]]:
    (override,) = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == ref]
    assert override["matcher"]["id"] == "byFrameRefID"
    (thresholds,) = [p["value"] for p in override["properties"] if p["id"] == "thresholds"]
    return [(step["value"], step["color"]) for step in thresholds["steps"]]


@pytest.fixture(params=["committed", "judges"])
def every_dashboard(
    request: pytest.FixtureRequest, make_config: MakeConfig
) -> list[dict[str, Any]]:
    """The committed dashboards, and those of a config with a judge (more panels)."""
    if request.param == "committed":
        return list(load(COMMITTED).values())
    config = make_config(
        judges={"j": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}},
        scorers=[{"type": "llm_judge", "judge": "j", "dimension": "coherence"}],
    )
    return list(dashboards(config).values())


class TestStructure:
    def test_two_dashboards_with_stable_uids(self) -> None:
        """The committed folder holds the overview and the drill-down under fixed uids."""
        found = load(COMMITTED)
        assert sorted(found) == ["agent-quality-agent.json", "agent-quality-overview.json"]
        assert {d["uid"] for d in found.values()} == {OVERVIEW_UID, AGENT_UID}
        assert all(TAG in d["tags"] for d in found.values())

    def test_alerts_link_to_the_overview(self) -> None:
        """The default alerting.dashboard_url (the alerts' link) opens the overview by uid."""
        alerting = load_config(None).alerting
        assert alerting is not None
        assert urlparse(alerting.dashboard_url).path.startswith(f"/d/{OVERVIEW_UID}/")

    def test_schema_version_and_generated_note(self, every_dashboard: list[dict[str, Any]]) -> None:
        """Every dashboard uses the current JSON model and says it is generated."""
        for dashboard in every_dashboard:
            assert dashboard["schemaVersion"] >= 39
            assert "do not edit" in dashboard["description"]

    def test_panel_ids_unique(self, every_dashboard: list[dict[str, Any]]) -> None:
        """Panel ids are unique within each dashboard."""
        for dashboard in every_dashboard:
            ids = [p["id"] for p in panels(dashboard)]
            assert len(ids) == len(set(ids)) > 10

    def test_every_query_uses_the_datasource_variable(
        self, every_dashboard: list[dict[str, Any]]
    ) -> None:
        """Panels, their targets, query variables and annotations all query ${datasource}."""
        for dashboard in every_dashboard:
            for panel in panels(dashboard):
                if panel["type"] == "row":
                    continue
                assert panel["datasource"] == DATASOURCE, panel["title"]
                assert panel["targets"], panel["title"]
                assert all(t["datasource"] == DATASOURCE for t in panel["targets"])
            variables = dashboard["templating"]["list"]
            assert variables[0] == variables[0] | {"type": "datasource", "name": "datasource"}
            assert variables[0]["query"] == "prometheus"
            for variable in variables[1:]:
                assert variable["datasource"] == DATASOURCE
            for annotation in dashboard["annotations"]["list"]:
                assert annotation["datasource"] == DATASOURCE

    def test_grid_without_overlaps(self, every_dashboard: list[dict[str, Any]]) -> None:
        """Panels stay inside the 24 columns and no two overlap."""
        for dashboard in every_dashboard:
            boxes = [(p["title"], p["gridPos"]) for p in panels(dashboard)]
            for title, box in boxes:
                assert 0 <= box["x"] < box["x"] + box["w"] <= 24, title
                assert box["h"] > 0, title
            for (a, p), (b, q) in itertools.combinations(boxes, 2):
                apart = (
                    p["x"] + p["w"] <= q["x"]
                    or q["x"] + q["w"] <= p["x"]
                    or p["y"] + p["h"] <= q["y"]
                    or q["y"] + q["h"] <= p["y"]
                )
                assert apart, f"{a!r} {p} overlaps {b!r} {q}"

    def test_variables_and_links(self) -> None:
        """Overview: agent and dimension are multi-valued; both link each other and the runbook."""
        overview, agent = (
            _default()["agent-quality-overview.json"],
            _default()["agent-quality-agent.json"],
        )
        names = {d["uid"]: [v["name"] for v in d["templating"]["list"]] for d in (overview, agent)}
        assert names == {
            OVERVIEW_UID: ["datasource", "agent", "dimension"],
            AGENT_UID: ["datasource", "agent"],
        }
        assert all(v.get("multi") for v in overview["templating"]["list"][1:])
        alerting = load_config(None).alerting
        assert alerting is not None
        runbook = alerting.runbook_url
        for dashboard in (overview, agent):
            kinds = {
                (link["type"], link.get("url") or tuple(link["tags"]))
                for link in dashboard["links"]
            }
            assert ("dashboards", (TAG,)) in kinds
            assert ("link", runbook) in kinds
        mean = _panel(overview, "Mean score, last 1h")
        (drill,) = mean["fieldConfig"]["defaults"]["links"]
        assert drill["url"].startswith(f"/d/{AGENT_UID}/")
        assert "var-agent=${__field.labels.agent}" in drill["url"]
        burn = _panel(overview, "Burn rate, last 30m")
        assert burn["fieldConfig"]["defaults"]["links"][0]["url"] == (
            f"{runbook}#agentqualityerrorbudgetburn"
        )

    def test_alerts_annotate_from_alerts_series(self) -> None:
        """Firing quality alerts annotate the graphs, labelled from ALERTS' labels only."""
        overview = _default()["agent-quality-overview.json"]
        quality = overview["annotations"]["list"][0]
        assert quality["expr"].startswith('ALERTS{alertstate="firing", alertname=~"')
        assert 'agent=~"$agent"' in quality["expr"]
        assert quality["titleFormat"] == "{{alertname}} ({{severity}})"
        assert set(quality["tagKeys"].split(",")) == {"severity", "agent", "dimension"}


class TestColors:
    def test_means_colored_at_the_configured_levels(self) -> None:
        """Each dimension's tiles turn at its own warning/critical levels, within its scale."""
        mean = _panel(_default()["agent-quality-overview.json"], "Mean score, last 1h")
        assert _override_steps(mean, "task_completion") == [(None, "red"), (0.7, "green")]
        assert _override_steps(mean, "coherence") == [(None, "orange"), (3.0, "green")]
        (coherence,) = [
            o for o in mean["fieldConfig"]["overrides"] if o["matcher"]["options"] == "coherence"
        ]
        ranges = {p["id"]: p["value"] for p in coherence["properties"] if p["id"] in ("min", "max")}
        assert ranges == {"min": 1, "max": 5}

    def test_lower_is_better_reverses_the_colors(self, make_config: MakeConfig) -> None:
        """A lower-is-better dimension is green below its levels and red above critical."""
        config = make_config(
            dimensions=[
                {
                    "name": "latency_score",
                    "scale": {"min": 0, "max": 10},
                    "higher_is_better": False,
                    "thresholds": {"bad": 8, "warning": 5, "critical": 7},
                }
            ],
            scorers=[{"type": "passthrough"}],
        )
        overview = dashboards(config)["agent-quality-overview.json"]
        mean = _panel(overview, "Mean score, last 1h")
        assert _override_steps(mean, "latency_score") == [
            (None, "green"),
            (5, "orange"),
            (7, "red"),
        ]

    def test_slo_panels_colored_at_budget_and_burn_factors(self) -> None:
        """Shares turn red past 1 - objective; burn rates at the alerts' factors."""
        overview = _default()["agent-quality-overview.json"]
        share = _panel(overview, "Past the bad threshold, last 1h")
        assert _override_steps(share, "task_completion") == [(None, "green"), (0.2, "red")]
        assert _override_steps(share, "coherence") == [(None, "green"), (0.1, "red")]
        burn = _panel(overview, "Burn rate, last 30m")
        # The shortest pair's long window; tickets at 1 and 1.2, pages at 1.5.
        assert _override_steps(burn, "coherence") == [
            (None, "green"),
            (1, "orange"),
            (1.2, "orange"),
            (1.5, "red"),
        ]

    def test_drop_and_significance_at_the_tier(self) -> None:
        """Drop and z-score show the longest tier's window, colored at its minimums."""
        overview = _default()["agent-quality-overview.json"]
        drop = _panel(overview, "Drop against the baseline, last 1h")
        assert _override_steps(drop, "coherence") == [(None, "green"), (0.2, "orange")]
        z = _panel(overview, "Significance of the drop (z), last 1h")
        assert _override_steps(z, "coherence") == [(None, "green"), (3, "orange")]


class TestContent:
    def test_judge_panels_only_with_judges(self, make_config: MakeConfig) -> None:
        """Judge failures and latency appear when the config has a judge, not before."""
        titles = {p["title"] for p in panels(_default()["agent-quality-overview.json"])}
        assert "Judge request latency" not in titles
        assert "Judge cost" in titles  # judging costing nothing is worth showing
        config = make_config(judges={"j": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}})
        titles = {p["title"] for p in panels(dashboards(config)["agent-quality-overview.json"])}
        assert {"Judge request latency", "Judge verdicts that failed, by outcome"} <= titles

    def test_a_row_per_dimension_in_the_drill_down(self) -> None:
        """The drill-down has a row for each configured dimension."""
        agent = _default()["agent-quality-agent.json"]
        rows = [p["title"] for p in agent["panels"] if p["type"] == "row"]
        names = [d.name for d in load_config(None).dimensions]
        assert [r.split(":")[0] for r in rows[1:-1]] == names

    def test_recorded_series_exist(self) -> None:
        """Every recording rule a committed dashboard reads is one the default rules record."""
        recorded = {
            rule.record
            for group in build_rules(load_config(None))
            for rule in group.rules
            if isinstance(rule, RecordingRule)
        }
        used = {
            name
            for dashboard in load(COMMITTED).values()
            for query in queries(dashboard)
            for name in re.findall(r"[a-z_]+:[a-z0-9_:]+", query.expr)
        }
        assert len(used) >= 8
        assert used <= recorded, sorted(used - recorded)

    def test_every_expression_is_valid_promql(self, tmp_path: Path) -> None:
        """promtool parses every query once the variables are filled in."""
        promtool = shutil.which("promtool")
        assert promtool is not None, "install Debian's prometheus package"
        values = {
            "agent": ["support-bot", "other"],
            "dimension": ["coherence"],
            "datasource": ["x"],
        }
        rules = []
        for dashboard in load(COMMITTED).values():
            for number, query in enumerate(queries(dashboard)):
                expr = substitute(query.expr, values)
                assert "$" not in expr, query.where
                if query.kind == "variable":
                    continue  # label_values(...) is Grafana's, not PromQL
                rules.append(
                    {"record": f"check:{dashboard['uid'].replace('-', '_')}:{number}", "expr": expr}
                )
        assert len(rules) > 60
        path = tmp_path / "queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
        result = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


class TestGenerate:
    def test_committed_grafana_matches_the_default_config(self, tmp_path: Path) -> None:
        """`generate` on the default config reproduces grafana/ byte for byte (no drift)."""
        stdout, stderr = io.StringIO(), io.StringIO()
        assert run(["generate", "--out", str(tmp_path)], stdout, stderr) == 0, stderr.getvalue()
        fresh = sorted(
            p.relative_to(tmp_path) for p in (tmp_path / "grafana").rglob("*") if p.is_file()
        )
        committed = sorted(
            p.relative_to(COMMITTED.parent) for p in COMMITTED.rglob("*") if p.is_file()
        )
        assert fresh == committed
        for relative in fresh:
            assert (tmp_path / relative).read_bytes() == (
                COMMITTED.parent / relative
            ).read_bytes(), (
                f"{relative} drifted: regenerate with `agent-quality-exporter generate --out DIR` "
                "and copy DIR/grafana/"
            )
        assert {str(p) for p in fresh} <= set(
            stdout.getvalue().replace(str(tmp_path) + "/", "").split()
        )

    def test_provisioning_follows_the_config(self, make_config: MakeConfig, tmp_path: Path) -> None:
        """The data source and dashboard provider files carry the grafana section's values."""
        config = make_config(
            grafana={
                "prometheus_url": "https://prom.example.internal:9090",
                "dashboards_path": "/dashboards",
                "folder": "Quality",
            }
        )
        write_grafana(config, out=tmp_path)
        provisioning = tmp_path / "grafana" / "provisioning"
        source = yaml.safe_load((provisioning / "datasources" / "agent-quality.yml").read_text())
        (datasource,) = source["datasources"]
        assert datasource["type"] == "prometheus"
        assert datasource["url"] == "https://prom.example.internal:9090"
        provider = yaml.safe_load((provisioning / "dashboards" / "agent-quality.yml").read_text())
        (entry,) = provider["providers"]
        assert entry["options"]["path"] == "/dashboards"
        assert entry["folder"] == "Quality"
        assert (
            (provisioning / "dashboards" / "agent-quality.yml")
            .read_text()
            .startswith("# Generated by agent-quality-exporter")
        )

    def test_bad_prometheus_url_names_the_key(self, make_config: MakeConfig) -> None:
        """A data source URL that is not http(s) is a config error at its path."""
        with pytest.raises(ConfigError) as caught:
            make_config(grafana={"prometheus_url": "prometheus:9090"})
        assert caught.value.path == "$.grafana.prometheus_url"
