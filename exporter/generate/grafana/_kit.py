"""Small helpers over grafana-foundation-sdk: the panels, targets and colors our dashboards use.

The SDK gives typed builders that emit Grafana's current JSON model (schemaVersion 41) and lay
panels out on the grid; these helpers fix what every panel here shares (the ``${datasource}``
variable, units, threshold colors) so the dashboard modules read as a list of panels.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as options
from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.cog import builder as cog
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

__all__ = [
    "DATASOURCE",
    "Panel",
    "Step",
    "Target",
    "alert_annotation",
    "distribution",
    "fill",
    "per_query",
    "stat_panel",
    "steps",
    "thresholds_data",
    "timeseries_panel",
    "to_data",
]

#: Every panel, variable and annotation queries the data source the user picks.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

#: The panel builders used here; each has ``span``/``height`` for the grid.
Panel = stat.Panel | timeseries.Panel | bargauge.Panel

#: A threshold step: from ``value`` upwards (None: the base) the field is ``color``.
Step = tuple[float | None, str]


class Target:
    """One PromQL query of a panel: a range query unless ``instant``."""

    def __init__(
        self,
        expr: str,
        *,
        ref: str = "A",
        legend: str = "",
        instant: bool = False,
        exemplar: bool = False,
    ) -> None:
        self.expr, self.ref, self.legend, self.instant = expr, ref, legend, instant
        self.exemplar = exemplar

    def build(self, *, heatmap: bool = False) -> prometheus.Dataquery:
        query = prometheus.Dataquery().expr(self.expr).ref_id(self.ref).datasource(DATASOURCE)
        query = query.instant() if self.instant else query.range()
        if heatmap:
            query = query.format(PromQueryFormat.HEATMAP)
        if self.exemplar:
            query = query.exemplar(True)
        return query.legend_format(self.legend or "__auto")


def steps(*pairs: Step) -> board.ThresholdsConfig:
    """Return absolute thresholds from ``(value, color)`` steps, the base first."""
    return (
        board.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in pairs])
    )


def thresholds_data(pairs: Sequence[Step]) -> dict[str, Any]:
    """Return thresholds as the plain value of a field override."""
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in pairs],
    }


def per_query(
    ref: str,
    *,
    thresholds: Sequence[Step] | None = None,
    min_: float | None = None,
    max_: float | None = None,
) -> tuple[str, list[model.DynamicConfigValue]]:
    """Return an override for the fields of query ``ref``: its own thresholds and range.

    Dimensions differ in scale and levels; one target per dimension plus an override each lets
    one panel color every dimension at its own configured thresholds.
    """
    properties = []
    if thresholds is not None:
        properties.append(model.DynamicConfigValue("thresholds", thresholds_data(thresholds)))
    if min_ is not None:
        properties.append(model.DynamicConfigValue("min", min_))
    if max_ is not None:
        properties.append(model.DynamicConfigValue("max", max_))
    return ref, properties


def stat_panel(
    title: str,
    *,
    description: str,
    targets: Iterable[Target],
    unit: str,
    thresholds: Sequence[Step] = ((None, "blue"),),
    overrides: Iterable[tuple[str, list[model.DynamicConfigValue]]] = (),
    decimals: int | None = None,
    sparkline: bool = True,
    width: int = 6,
    height: int = 7,
    links: Sequence[board.DashboardLink] = (),
) -> stat.Panel:
    """Return a stat panel, colored by its thresholds, a tile per series."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .thresholds(steps(*thresholds))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA if sparkline else common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(options.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .span(width)
        .height(height)
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    for target in targets:
        panel = panel.with_target(target.build())
    for ref, properties in overrides:
        panel = panel.override_by_query(ref, properties)
    if links:
        panel = panel.data_links(list(links))
    return panel


def timeseries_panel(
    title: str,
    *,
    description: str,
    targets: Iterable[Target],
    unit: str,
    thresholds: Sequence[Step] | None = None,
    overrides: Iterable[tuple[str, list[model.DynamicConfigValue]]] = (),
    min_: float | None = None,
    max_: float | None = None,
    width: int = 12,
    height: int = 8,
    links: Sequence[board.DashboardLink] = (),
) -> timeseries.Panel:
    """Return a time series panel; thresholds, if any, are drawn as dashed lines."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            options.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            options.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .span(width)
        .height(height)
    )
    if thresholds is not None:
        panel = panel.thresholds(steps(*thresholds)).thresholds_style(
            options.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    if min_ is not None:
        panel = panel.min(min_)
    if max_ is not None:
        panel = panel.max(max_)
    for target in targets:
        panel = panel.with_target(target.build())
    for ref, properties in overrides:
        panel = panel.override_by_query(ref, properties)
    if links:
        panel = panel.links(list(links))
    return panel


def distribution(
    title: str, *, description: str, target: Target, width: int = 6, height: int = 8
) -> bargauge.Panel:
    """Return a bar gauge of a histogram's buckets (cumulative ``le`` counts made per-bucket)."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit("short")
        .thresholds(steps((None, "blue")))
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(options.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .with_target(target.build(heatmap=True))
        .span(width)
        .height(height)
    )


def fill(panels: Sequence[Panel], *, height: int) -> list[Panel]:
    """Share the grid's 24 columns evenly among ``panels`` of one line."""
    width = 24 // len(panels)
    return [panel.span(width).height(height) for panel in panels]


class _PrometheusAnnotation(model.AnnotationQuery):
    """An annotation query with the Prometheus fields the SDK's generic model leaves out."""

    def __init__(self, *, title: str, text: str, tags: str, **fields: Any) -> None:
        super().__init__(**fields)
        self.title_format, self.text_format, self.tag_keys = title, text, tags

    def to_json(self) -> dict[str, object]:
        data = super().to_json()
        data.update(
            titleFormat=self.title_format,
            textFormat=self.text_format,
            tagKeys=self.tag_keys,
            step="60s",
            useValueForTime=False,
        )
        return data


class _Annotation(cog.Builder[model.AnnotationQuery]):
    def __init__(self, query: _PrometheusAnnotation) -> None:
        self._query = query

    def build(self) -> model.AnnotationQuery:
        return self._query


def alert_annotation(
    name: str, *, expr: str, color: str, title: str, text: str, tags: str
) -> cog.Builder[model.AnnotationQuery]:
    """Return an annotation marking the time ranges ``expr`` (an ``ALERTS`` selector) returns."""
    return _Annotation(
        _PrometheusAnnotation(
            name=name,
            datasource=DATASOURCE,
            enable=True,
            hide=False,
            icon_color=color,
            expr=expr,
            title=title,
            text=text,
            tags=tags,
        )
    )


def to_data(dashboard: board.Dashboard) -> dict[str, Any]:
    """Return the dashboard as plain JSON data, panels numbered in order from 1."""
    data: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    for number, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = number
    return data
