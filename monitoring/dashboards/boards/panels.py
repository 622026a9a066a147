"""The shared panel vocabulary of modelfleet's Grafana dashboards (grafana-foundation-sdk builders).

Queries, thresholds, value maps, legends, the panel kinds (graph, single stat, timeline, bars, grid,
heatmap), dashboard variables and annotations, and :class:`Board`, which numbers panels and rows in
order. Each dashboard is a module beside this one (serving, drift, gpu, rollout); generate.py renders them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import heatmap as heatmap_builders
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

TAG = "modelfleet"
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
HOST = 'host=~"$host"'
#: Failures the server is responsible for (a 400 answers a client's mistake): as in the recording rules.
SERVER_ERRORS = 'reason!="invalid_request"'
PanelBuilder = Builder[models.Panel]


# --- building blocks ---------------------------------------------------------------------------------------


def query(
    expr: str,
    legend: str = "__auto",
    *,
    instant: bool = False,
    fmt: PromQueryFormat | None = None,
) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)
    target = target.instant() if instant else target.range()
    if fmt is not None:
        target = target.format(fmt)
    return target


def thresholds(*steps: tuple[float | None, str]) -> builders.ThresholdsConfig:
    return (
        builders.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for value, color in steps])
    )


GREEN = (None, "green")


def value_map(mapping: dict[str, tuple[str, str]]) -> list[models.ValueMapping]:
    return [
        models.ValueMap(
            options={
                key: models.ValueMappingResult(text=text, color=color, index=index)
                for index, (key, (text, color)) in enumerate(mapping.items())
            }
        )
    ]


def legend_table(*calcs: str) -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(list(calcs))
        .sort_by(calcs[-1].capitalize() if calcs else "")
        .sort_desc(True)
    )


def legend_list() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def tooltip() -> common_builders.VizTooltipOptions:
    return common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)


def with_targets(panel: Any, targets: Sequence[prometheus.Dataquery]) -> Any:
    for index, target in enumerate(targets):
        panel = panel.with_target(target.ref_id(chr(ord("A") + index)))
    return panel


def graph(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    unit: str,
    *,
    width: int = 12,
    height: int = 8,
    calcs: Sequence[str] = ("mean", "max"),
    minimum: float | None = 0,
    maximum: float | None = None,
    steps: builders.ThresholdsConfig | None = None,
    draw: str = "line",
    stacked: bool = False,
    interpolation: common.LineInterpolation = common.LineInterpolation.LINEAR,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .legend(legend_table(*calcs) if calcs else legend_list())
        .tooltip(tooltip())
        .line_interpolation(interpolation)
        .fill_opacity(10 if not stacked else 40)
        .show_points(common.VisibilityMode.NEVER)
    )
    if draw == "bars":
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    if steps is not None:
        panel = panel.thresholds(steps).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    return with_targets(panel, targets)  # type: ignore[no-any-return]


def single(
    title: str,
    description: str,
    target: prometheus.Dataquery,
    unit: str,
    *,
    width: int = 4,
    height: int = 4,
    steps: builders.ThresholdsConfig | None = None,
    decimals: float | None = None,
    mappings: list[models.ValueMapping] | None = None,
    no_value: str = "no data",
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(steps or thresholds(GREEN))
        .no_value(no_value)
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if mappings is not None:
        panel = panel.mappings(mappings)
    return with_targets(panel, [target])  # type: ignore[no-any-return]


def timeline(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    mappings: list[models.ValueMapping],
    *,
    width: int = 12,
    height: int = 8,
) -> statetimeline.Panel:
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
        .mappings(mappings)
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .fill_opacity(80)
        .legend(legend_list())
        .thresholds(thresholds(GREEN))
    )
    return with_targets(panel, targets)  # type: ignore[no-any-return]


def bars(
    title: str,
    description: str,
    target: prometheus.Dataquery,
    unit: str,
    *,
    width: int = 12,
    height: int = 8,
    steps: builders.ThresholdsConfig | None = None,
    maximum: float | None = None,
) -> bargauge.Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .min(0)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(steps or thresholds(GREEN))
    )
    if maximum is not None:
        panel = panel.max(maximum)
    return with_targets(panel, [target])  # type: ignore[no-any-return]


def grid(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    width: int = 24,
    height: int = 6,
    hidden: Sequence[str] = ("Time",),
    renames: dict[str, str] | None = None,
) -> table.Panel:
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
        .with_transformation(models.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            models.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": dict.fromkeys(hidden, True), "renameByName": renames or {}},
            )
        )
    )
    return with_targets(panel, targets)  # type: ignore[no-any-return]


def heatmap(
    title: str, description: str, target: prometheus.Dataquery, unit: str, *, width: int = 12, height: int = 8
) -> heatmap_builders.Panel:
    panel = (
        heatmap_builders.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
        .calculate(False)
        .y_axis(heatmap_builders.YAxisConfig().unit(unit))
        .color(
            heatmap_builders.HeatmapColorOptions()
            .mode(heatmap_models.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .steps(64)
        )
        .cell_values(heatmap_builders.CellValues().unit("short"))
        .show_legend()
    )
    return with_targets(panel, [target])  # type: ignore[no-any-return]


def variable(
    name: str,
    label: str,
    definition: str,
    *,
    multi: bool = True,
    include_all: bool = True,
    regex: str | None = None,
    description: str = "",
) -> builders.QueryVariable:
    """A ``label_values(...)`` variable; "All" means the regex ``.*``."""
    built = (
        builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(definition)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(include_all)
    )
    if description:
        built = built.description(description)
    if include_all:
        built = built.all_value(".*").current(models.VariableOption(selected=True, text="All", value="$__all"))
    if regex is not None:
        built = built.regex(regex)
    return built


def datasource_variable() -> builders.DatasourceVariable:
    return (
        builders.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .description("The Prometheus that scrapes the fleet.")
    )


def host_variable(metric: str) -> builders.QueryVariable:
    return variable(
        "host",
        "Host",
        f"label_values({metric}, host)",
        description="Hosts: the host label Prometheus puts on every target of the fleet.",
    )


@dataclass
class Board:
    """A dashboard under construction: numbers panels and rows in order (ids are stable across runs)."""

    uid: str
    title: str
    description: str
    variables: list[Builder[models.VariableModel]]
    annotations: list[builders.AnnotationQuery] = field(default_factory=list)
    _items: list[tuple[str, Any]] = field(default_factory=list)

    def row(self, title: str) -> Board:
        self._items.append(("row", title))
        return self

    def add(self, *panels: Any) -> Board:
        self._items.extend(("panel", panel) for panel in panels)
        return self

    def build(self) -> dict[str, Any]:
        built = (
            builders.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags([TAG])
            .editable()
            .tooltip(models.DashboardCursorSync.CROSSHAIR)
            .time("now-3h", "now")
            .refresh("30s")
            .timezone("browser")
            .timepicker(builders.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m", "1h"]))
            .link(
                builders.DashboardLink("modelfleet")
                .type(models.DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(True)
                .include_vars(False)
                .keep_time(True)
                .target_blank(False)
                .icon("external link")
                .tooltip("")
                .url("")
            )
            .variables(self.variables)
            .annotations([builtin_annotation(), *self.annotations])
        )
        for number, (kind, item) in enumerate(self._items, start=1):
            if kind == "row":
                built = built.with_row(builders.Row(item).id(number))
            else:
                built = built.with_panel(item.id(number))
        encoded: dict[str, Any] = json.loads(json.dumps(built.build(), cls=JSONEncoder))
        return encoded


def builtin_annotation() -> builders.AnnotationQuery:
    return (
        builders.AnnotationQuery()
        .name("Annotations & Alerts")
        .built_in(1)
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .datasource(models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
    )


def step_annotation() -> builders.AnnotationQuery:
    return (
        builders.AnnotationQuery()
        .name("Rollout steps")
        .enable(True)
        .hide(False)
        .icon_color("purple")
        .datasource(DATASOURCE)
        .expr('max by (model) (changes(modelfleet_rollout_step{model=~"$model"}[2m])) > 0')
    )
