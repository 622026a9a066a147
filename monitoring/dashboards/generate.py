"""Generate modelfleet's Grafana dashboards (dashboards as code with grafana-foundation-sdk).

    python monitoring/dashboards/generate.py            rewrite monitoring/dashboards/*.json
    python monitoring/dashboards/generate.py --check    exit 1 (with a diff) if a committed file is stale

The JSON files are committed: the grafana role and the Pulumi programs read them, not this script.
Every dashboard takes its Prometheus data source from the ``datasource`` variable, so the same file
works whatever the data source is called. Hosts are picked by the ``host`` variable: the ``host`` label
the prometheus role puts on every target (model servers, router, drift exporter, node_exporter,
dcgm-exporter), as the alert rules in monitoring/rules do.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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

HERE = Path(__file__).resolve().parent
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


# --- Serving -------------------------------------------------------------------------------------------------


def serving() -> Board:
    sel = f'model=~"$model", version=~"$version", {HOST}'
    by = "model, version"
    legend = "{{model}} v{{version}}"

    def requests(selector: str = sel, grouping: str = by) -> str:
        return (
            f"sum by ({grouping}) (rate(nv_inference_request_success_total{{{selector}}}[{RATE}]))"
            f" + sum by ({grouping}) (rate(nv_inference_request_failure_total{{{selector}}}[{RATE}]))"
        )

    def errors(grouping: str = by, selector: str = f"{sel}, {SERVER_ERRORS}") -> str:
        return f"sum by ({grouping}) (rate(nv_inference_request_failure_total{{{selector}}}[{RATE}]))"

    def quantile(q: float, histogram: str, grouping: str = by) -> str:
        return f"histogram_quantile({q}, sum by ({grouping}, le) (rate({histogram}_bucket{{{sel}}}[{RATE}])))"

    def quantiles(histogram: str, grouping: str = by, label: str = legend) -> list[prometheus.Dataquery]:
        return [query(quantile(q, histogram, grouping), f"p{round(q * 100)} {label}") for q in (0.5, 0.95, 0.99)]

    latency_steps = thresholds(GREEN, (0.05, "orange"), (0.1, "red"))
    board = Board(
        "modelfleet-serving",
        "modelfleet / Serving",
        "Model servers: traffic, errors, latency, batching and queues, by model and version.",
        [
            datasource_variable(),
            variable("model", "Model", "label_values(modelfleet_model_ready, model)"),
            variable("version", "Version", 'label_values(modelfleet_model_ready{model=~"$model"}, version)'),
            host_variable('modelfleet_model_ready{model=~"$model"}'),
        ],
        [step_annotation()],
    )
    board.row("Overview").add(
        single(
            "Requests / s",
            "Inference requests answered (successes and failures) by the selected servers.",
            query(f"sum({requests(grouping='model')})"),
            "reqps",
        ),
        single(
            "Error ratio",
            "Server errors / all inference requests. Server errors are failures for any reason "
            "but invalid_request (a 400 is the right answer to a client's mistake), as in the SLO and the "
            "canary gates.",
            query(f"sum({errors('model')}) / sum({requests(grouping='model')})"),
            "percentunit",
            steps=thresholds(GREEN, (0.01, "orange"), (0.05, "red")),
            decimals=2,
        ),
        single(
            "p99 latency",
            "99th percentile of the request time in the server (successful requests).",
            query(
                f"histogram_quantile(0.99, sum by (le) (rate(modelfleet_request_duration_seconds_bucket{{{sel}}}"
                f"[{RATE}])))"
            ),
            "s",
            steps=latency_steps,
        ),
        single(
            "Versions ready",
            "Server processes that report their model version ready for traffic.",
            query(f"sum(modelfleet_model_ready{{{sel}}})"),
            "none",
            decimals=0,
        ),
        single(
            "Not ready",
            "Server processes that are up but not ready (loading, warming up, draining).",
            query(f"count(modelfleet_model_ready{{{sel}}} == 0) or vector(0)"),
            "none",
            steps=thresholds(GREEN, (1, "red")),
            decimals=0,
        ),
        single(
            "Queued requests",
            "Requests waiting in the batching queues now.",
            query(f"sum(modelfleet_queue_depth{{{sel}}})"),
            "none",
            decimals=0,
        ),
    )
    board.row("Traffic and errors").add(
        graph(
            "Requests / s",
            "Inference requests answered, by model and version (successes + failures).",
            [query(requests(), legend)],
            "reqps",
        ),
        graph(
            "Errors / s by reason",
            "Failed inference requests: invalid_request (client mistakes), queue_full "
            "(load shed, 503), inference (the model failed on the data), internal, shutting_down.",
            [query(f"{errors(f'{by}, reason', sel)} > 0", legend + " {{reason}}")],
            "reqps",
            draw="bars",
            stacked=True,
        ),
        graph(
            "Error ratio",
            "Server errors (every reason but invalid_request) / all inference requests, by model "
            "and version: the quantity of the availability SLO and of the canary's error_rate gate.",
            [query(f"{errors()} / ({requests()})", legend)],
            "percentunit",
            steps=thresholds(GREEN, (0.01, "red")),
        ),
        graph(
            "Rows inferred / s",
            "Rows (not requests) run through the model: a request of n rows counts n.",
            [query(f"sum by ({by}) (rate(nv_inference_count_total{{{sel}}}[{RATE}]))", legend)],
            "rowsps",
        ),
    )
    board.row("Latency").add(
        graph(
            "Request latency (p50 / p95 / p99)",
            "Time in the server from body read to response, successful "
            "requests, from the modelfleet_request_duration_seconds histogram.",
            quantiles("modelfleet_request_duration_seconds"),
            "s",
            steps=latency_steps,
        ),
        heatmap(
            "Request latency distribution",
            "All selected servers' request times, per histogram bucket.",
            query(
                f"sum by (le) (increase(modelfleet_request_duration_seconds_bucket{{{sel}}}[{RATE}]))",
                "{{le}}",
                fmt=PromQueryFormat.HEATMAP,
            ),
            "s",
        ),
        graph(
            "Queue wait (p50 / p95 / p99)",
            "Time requests wait in the batching queue before their batch runs.",
            quantiles("modelfleet_queue_duration_seconds"),
            "s",
        ),
        graph(
            "Model execution per batch (p50 / p95 / p99)",
            "ONNX Runtime execution time of one batch.",
            quantiles("modelfleet_compute_infer_duration_seconds"),
            "s",
        ),
    )
    board.row("Batching and queues").add(
        graph(
            "Average batch size",
            "Rows per model execution: nv_inference_count / nv_inference_exec_count (Triton's definition).",
            [
                query(
                    f"sum by ({by}) (rate(nv_inference_count_total{{{sel}}}[{RATE}])) / sum by ({by}) "
                    f"(rate(nv_inference_exec_count_total{{{sel}}}[{RATE}]))",
                    legend,
                )
            ],
            "none",
            width=8,
        ),
        graph(
            "Batch size (p50 / p95 / p99)",
            "Distribution of rows per execution (modelfleet_batch_size).",
            quantiles("modelfleet_batch_size"),
            "none",
            width=8,
        ),
        graph(
            "Executions / s",
            "Model executions (batches) per second.",
            [query(f"sum by ({by}) (rate(nv_inference_exec_count_total{{{sel}}}[{RATE}]))", legend)],
            "ops",
            width=8,
        ),
        graph(
            "Queue depth",
            "Requests waiting in the batching queue (summed over the selected hosts). Beyond "
            "--max-queue-size the server sheds load with 503.",
            [query(f"sum by ({by}) (modelfleet_queue_depth{{{sel}}})", legend)],
            "none",
            calcs=("mean", "max"),
        ),
        graph(
            "Requests in flight",
            "Inference requests being handled (read, queued or executing).",
            [query(f"sum by ({by}) (modelfleet_requests_in_flight{{{sel}}})", legend)],
            "none",
        ),
    )
    board.row("Versions").add(
        grid(
            "Versions served",
            "One row per server process: the execution provider and precision it runs, and whether it is ready.",
            [
                query(
                    f"max by (host, model, version, provider, precision, build_key) (modelfleet_model_info{{{sel}}})",
                    instant=True,
                    fmt=PromQueryFormat.TABLE,
                ),
                query(
                    f"max by (host, model, version) (modelfleet_model_ready{{{sel}}})",
                    instant=True,
                    fmt=PromQueryFormat.TABLE,
                ),
            ],
            hidden=("Time", "Value #A"),
        ),
        graph(
            "Spool records dropped / s",
            "Sampled request records the server could not write for the drift "
            "exporter (queue_full, evicted, io_error). Drift statistics miss these.",
            [
                query(
                    f"sum by ({by}, reason) (rate(modelfleet_spool_records_dropped_total{{{sel}}}[{RATE}])) > 0",
                    legend + " {{reason}}",
                )
            ],
            "ops",
            width=24,
        ),
    )
    return board


# --- Drift ---------------------------------------------------------------------------------------------------


def drift() -> Board:
    sel = f'model=~"$model", version=~"$version", window="$window", {HOST}'
    feature_sel = f'{sel}, feature=~"$feature"'
    version_sel = f'model=~"$model", version=~"$version", {HOST}'
    legend = "{{model}} v{{version}}"
    psi_steps = thresholds(GREEN, (0.1, "orange"), (0.2, "red"))
    detected = value_map({"0": ("no drift", "green"), "1": ("drift", "red")})

    def worst(metric: str, grouping: str, selector: str = feature_sel) -> str:
        return f"max by ({grouping}) ({metric}{{{selector}}})"

    board = Board(
        "modelfleet-drift",
        "modelfleet / Drift",
        "Input and prediction drift against each version's reference profile, and model quality from labels "
        "that arrive later, as computed by the drift exporter over sliding windows.",
        [
            datasource_variable(),
            variable("model", "Model", "label_values(modelfleet_window_rows, model)"),
            variable("version", "Version", 'label_values(modelfleet_window_rows{model=~"$model"}, version)'),
            variable(
                "window",
                "Window",
                'label_values(modelfleet_window_rows{model=~"$model"}, window)',
                multi=False,
                include_all=False,
                description="Sliding window of the statistics (--windows).",
            ),
            variable("feature", "Feature", 'label_values(modelfleet_feature_psi{model=~"$model"}, feature)'),
            host_variable("modelfleet_drift_version_loaded"),
        ],
        [step_annotation()],
    )
    board.row("Overview").add(
        single(
            "Features drifted",
            "Features whose drift test rejects after multiple-testing correction (worst selected version).",
            query(f"max(modelfleet_features_drifted{{{sel}}})"),
            "none",
            steps=thresholds(GREEN, (1, "red")),
            decimals=0,
        ),
        single(
            "Max feature PSI",
            "Largest population stability index of any selected feature.",
            query(f"max(modelfleet_feature_psi{{{feature_sel}}})"),
            "none",
            steps=psi_steps,
            decimals=3,
        ),
        single(
            "Prediction drift",
            "1 when any prediction column drifts.",
            query(f"max(modelfleet_prediction_drift_detected{{{sel}}})"),
            "none",
            steps=thresholds(GREEN, (1, "red")),
            mappings=detected,
        ),
        single(
            "Rows in window",
            "Spooled rows the statistics are computed on.",
            query(f"sum(modelfleet_window_rows{{{sel}}})"),
            "short",
            decimals=0,
        ),
        single(
            "Labelled rows",
            "Predictions joined with a late label in the window (quality needs these).",
            query(f"sum(modelfleet_model_labelled_rows{{{sel}}})"),
            "short",
            decimals=0,
        ),
        single(
            "Accuracy",
            "Classification accuracy of labelled predictions (lowest selected version).",
            query(f"min(modelfleet_model_accuracy{{{sel}}})"),
            "percentunit",
            decimals=1,
            steps=thresholds((None, "red"), (0.8, "orange"), (0.9, "green")),
        ),
    )
    board.row("Features").add(
        graph(
            "PSI per feature",
            "Population stability index against the reference (reference-quantile bins or "
            "categories). Common reading: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant.",
            [query(worst("modelfleet_feature_psi", "model, version, feature"), legend + " {{feature}}")],
            "none",
            steps=psi_steps,
            calcs=("mean", "lastNotNull"),
        ),
        timeline(
            "Drift detected per feature",
            "The exporter's decision per feature: the test rejects after correction and the PSI reaches the threshold.",
            [query(worst("modelfleet_feature_drift_detected", "model, version, feature"), legend + " {{feature}}")],
            detected,
        ),
        bars(
            "Current PSI by feature",
            "Latest PSI per feature, largest first.",
            query(f"sort_desc({worst('modelfleet_feature_psi', 'feature')})", "{{feature}}", instant=True),
            "none",
            steps=psi_steps,
            width=8,
        ),
        graph(
            "KS statistic (numeric features)",
            "Two-sample Kolmogorov-Smirnov statistic against the reference.",
            [query(worst("modelfleet_feature_ks_statistic", "model, version, feature"), legend + " {{feature}}")],
            "none",
            width=8,
            maximum=1,
        ),
        graph(
            "Jensen-Shannon distance",
            "Base-2 JS distance to the reference distribution (0 identical, 1 disjoint).",
            [query(worst("modelfleet_feature_js_distance", "model, version, feature"), legend + " {{feature}}")],
            "none",
            width=8,
            maximum=1,
        ),
        graph(
            "Missing values",
            "Share of rows with a missing value, per feature.",
            [
                query(
                    f"{worst('modelfleet_feature_missing_ratio', 'model, version, feature')} > 0",
                    legend + " {{feature}}",
                )
            ],
            "percentunit",
            width=8,
        ),
        graph(
            "Out of reference range (numeric)",
            "Share of values outside the reference [min, max].",
            [
                query(
                    f"{worst('modelfleet_feature_out_of_range_ratio', 'model, version, feature')} > 0",
                    legend + " {{feature}}",
                )
            ],
            "percentunit",
            width=8,
        ),
        graph(
            "Unseen categories (categorical)",
            "Share of values in categories the reference did not have.",
            [
                query(
                    f"{worst('modelfleet_feature_unseen_ratio', 'model, version, feature')} > 0",
                    legend + " {{feature}}",
                )
            ],
            "percentunit",
            width=8,
        ),
    )
    board.row("Predictions").add(
        graph(
            "Prediction PSI per output",
            "PSI of each prediction column (labels, class scores) against the predictions on the reference data.",
            [query(worst("modelfleet_prediction_psi", "model, version, output", sel), legend + " {{output}}")],
            "none",
            steps=psi_steps,
            width=8,
        ),
        timeline(
            "Prediction drift detected",
            "The exporter's decision per prediction column.",
            [
                query(
                    worst("modelfleet_prediction_drift_detected", "model, version, output", sel), legend + " {{output}}"
                )
            ],
            detected,
            width=8,
        ),
        graph(
            "Prediction JS distance",
            "Jensen-Shannon distance of each prediction column to the reference.",
            [query(worst("modelfleet_prediction_js_distance", "model, version, output", sel), legend + " {{output}}")],
            "none",
            width=8,
            maximum=1,
        ),
    )
    quality = [
        ("accuracy", "accuracy"),
        ("f1_macro", "F1 (macro)"),
        ("precision_macro", "precision (macro)"),
        ("recall_macro", "recall (macro)"),
    ]
    board.row("Quality (from labels)").add(
        graph(
            "Classification quality",
            "Accuracy and macro-averaged F1, precision and recall of the predictions joined with labels in the window.",
            [
                query(f"min by ({'model, version'}) (modelfleet_model_{metric}{{{sel}}})", f"{name} {legend}")
                for metric, name in quality
            ],
            "percentunit",
            maximum=1,
            calcs=("mean", "lastNotNull"),
        ),
        graph(
            "Per-class F1",
            "F1 of each class, one against the rest.",
            [query(f"min by (model, version, class) (modelfleet_model_f1{{{sel}}})", legend + " class {{class}}")],
            "percentunit",
            maximum=1,
            calcs=("mean", "lastNotNull"),
        ),
        graph(
            "Per-class precision",
            "Precision of each class, one against the rest.",
            [
                query(
                    f"min by (model, version, class) (modelfleet_model_precision{{{sel}}})", legend + " class {{class}}"
                )
            ],
            "percentunit",
            maximum=1,
            width=8,
            calcs=("lastNotNull",),
        ),
        graph(
            "Per-class recall",
            "Recall of each class, one against the rest.",
            [query(f"min by (model, version, class) (modelfleet_model_recall{{{sel}}})", legend + " class {{class}}")],
            "percentunit",
            maximum=1,
            width=8,
            calcs=("lastNotNull",),
        ),
        graph(
            "Regression error",
            "Mean absolute and root mean squared error of labelled predictions (regression models).",
            [
                query(f"max by (model, version) (modelfleet_model_mae{{{sel}}})", "MAE " + legend),
                query(f"max by (model, version) (modelfleet_model_rmse{{{sel}}})", "RMSE " + legend),
            ],
            "none",
            width=8,
            calcs=("lastNotNull",),
        ),
        graph(
            "Labels received / s by outcome",
            "Late labels and how they joined: joined, joined_after_wait, late, "
            "duplicate, invalid, unmatched, malformed.",
            [query(f"sum by (outcome) (rate(modelfleet_labels_total{{{HOST}}}[{RATE}]))", "{{outcome}}")],
            "ops",
            stacked=True,
        ),
        graph(
            "Labelled rows in window",
            "Predictions joined with a label, per version.",
            [query(f"sum by (model, version) (modelfleet_model_labelled_rows{{{sel}}})", legend)],
            "short",
        ),
    )
    board.row("Exporter health").add(
        graph(
            "Records read / s",
            "Valid spool records read by the drift exporter.",
            [
                query(
                    f"sum by (model, version) (rate(modelfleet_drift_records_read_total{{{version_sel}}}[{RATE}]))",
                    legend,
                )
            ],
            "ops",
            width=8,
        ),
        graph(
            "Malformed spool lines / s",
            "Spool lines skipped, by reason.",
            [
                query(
                    f"sum by (model, version, reason) (rate(modelfleet_drift_records_malformed_total"
                    f"{{{version_sel}}}[{RATE}])) > 0",
                    legend + " {{reason}}",
                )
            ],
            "ops",
            width=8,
        ),
        graph(
            "Newest record age",
            "Seconds since the newest spool record read: grows when traffic or the spool stops.",
            [
                query(
                    f"time() - max by (model, version) (modelfleet_drift_last_record_timestamp_seconds"
                    f"{{{version_sel}}})",
                    legend,
                )
            ],
            "s",
            width=8,
        ),
        graph(
            "Lost data",
            "Spool segments deleted before they were read, truncated segments, stale records, and "
            "records the servers dropped.",
            [
                query(
                    f"sum by (model, version) (increase(modelfleet_drift_spool_segments_lost_total{{{version_sel}}}"
                    f"[{RATE}])) > 0",
                    "segments lost " + legend,
                ),
                query(
                    f"sum by (model, version) (increase(modelfleet_drift_spool_truncations_total{{{version_sel}}}"
                    f"[{RATE}])) > 0",
                    "truncations " + legend,
                ),
                query(
                    f"sum by (model, version) (increase(modelfleet_drift_records_stale_total{{{version_sel}}}"
                    f"[{RATE}])) > 0",
                    "stale records " + legend,
                ),
                query(
                    f"sum by (model, version) (increase(modelfleet_spool_records_dropped_total{{{version_sel}}}"
                    f"[{RATE}])) > 0",
                    "dropped by server " + legend,
                ),
            ],
            "short",
            width=8,
            draw="bars",
        ),
        timeline(
            "Versions watched",
            "1: the exporter watches the version; 0: its artifact is missing or invalid (see the exporter's log).",
            [query(f"max by (model, version) (modelfleet_drift_version_loaded{{{version_sel}}})", legend)],
            value_map({"0": ("not watched", "red"), "1": ("watched", "green")}),
            width=8,
        ),
        graph(
            "Checkpoints",
            "Seconds since the last checkpoint and failed checkpoints (per exporter).",
            [
                query(f"max by (host) (modelfleet_drift_checkpoint_age_seconds{{{HOST}}})", "age {{host}}"),
                query(
                    f"sum by (host) (increase(modelfleet_drift_checkpoint_failures_total{{{HOST}}}[{RATE}]))",
                    "failures {{host}}",
                ),
            ],
            "short",
            width=8,
        ),
        graph(
            "Join memory",
            "Predictions waiting for a label and labels waiting for a prediction; predictions that expired unlabelled.",
            [
                query(f"sum by (kind) (modelfleet_labels_pending{{{HOST}}})", "pending {{kind}}"),
                query(
                    f"sum(rate(modelfleet_labels_predictions_expired_total{{{HOST}}}[{RATE}]))",
                    "expired predictions / s",
                ),
            ],
            "short",
            width=24,
            height=6,
        ),
    )
    return board


# --- GPU -----------------------------------------------------------------------------------------------------


def gpu() -> Board:
    sel = f'{HOST}, gpu=~"$gpu"'
    legend = "{{host}} GPU {{gpu}}"

    def per_gpu(metric: str) -> str:
        return f"max by (host, gpu) ({metric}{{{sel}}})"

    board = Board(
        "modelfleet-gpu",
        "modelfleet / GPU",
        "GPU hosts from dcgm-exporter's default counters and node_exporter: utilisation, memory, temperature, "
        "power, and errors (XID, row remapping).",
        [
            datasource_variable(),
            host_variable("DCGM_FI_DEV_GPU_UTIL"),
            variable("gpu", "GPU", f"label_values(DCGM_FI_DEV_GPU_UTIL{{{HOST}}}, gpu)"),
        ],
    )
    board.row("Overview").add(
        single(
            "GPUs",
            "GPUs reporting to dcgm-exporter.",
            query(f"count(DCGM_FI_DEV_GPU_UTIL{{{sel}}})"),
            "none",
            decimals=0,
        ),
        single(
            "Mean utilisation",
            "Mean GPU utilisation of the selected GPUs.",
            query(f"avg(DCGM_FI_DEV_GPU_UTIL{{{sel}}})"),
            "percent",
            decimals=0,
        ),
        single(
            "Memory used",
            "Framebuffer used / (used + free), all selected GPUs.",
            query(
                f"sum(DCGM_FI_DEV_FB_USED{{{sel}}}) / (sum(DCGM_FI_DEV_FB_USED{{{sel}}}) + "
                f"sum(DCGM_FI_DEV_FB_FREE{{{sel}}}))"
            ),
            "percentunit",
            decimals=0,
            steps=thresholds(GREEN, (0.85, "orange"), (0.95, "red")),
        ),
        single(
            "Hottest GPU",
            "Highest GPU temperature.",
            query(f"max(DCGM_FI_DEV_GPU_TEMP{{{sel}}})"),
            "celsius",
            steps=thresholds(GREEN, (80, "orange"), (88, "red")),
        ),
        single(
            "Power draw",
            "Total power draw of the selected GPUs.",
            query(f"sum(DCGM_FI_DEV_POWER_USAGE{{{sel}}})"),
            "watt",
        ),
        single(
            "GPUs with XID errors",
            "GPUs whose last XID error is not 0 (see the XID panel).",
            query(f"count(DCGM_FI_DEV_XID_ERRORS{{{sel}}} > 0) or vector(0)"),
            "none",
            decimals=0,
            steps=thresholds(GREEN, (1, "red")),
        ),
    )
    board.row("Utilisation").add(
        graph(
            "GPU utilisation",
            "Share of time a kernel was running (DCGM_FI_DEV_GPU_UTIL).",
            [query(per_gpu("DCGM_FI_DEV_GPU_UTIL"), legend)],
            "percent",
            maximum=100,
        ),
        graph(
            "Memory copy utilisation",
            "Share of time the memory was being read or written.",
            [query(per_gpu("DCGM_FI_DEV_MEM_COPY_UTIL"), legend)],
            "percent",
            maximum=100,
        ),
        graph(
            "Tensor core and engine activity (DCP)",
            "Profiling counters of datacenter GPUs (Volta and newer): "
            "tensor pipe and graphics engine active ratios; empty on GPUs without DCP support.",
            [
                query(per_gpu("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"), "tensor " + legend),
                query(per_gpu("DCGM_FI_PROF_GR_ENGINE_ACTIVE"), "engine " + legend),
                query(per_gpu("DCGM_FI_PROF_DRAM_ACTIVE"), "DRAM " + legend),
            ],
            "percentunit",
            maximum=1,
        ),
        graph(
            "PCIe throughput",
            "Bytes per second over PCIe (DCP counters), transmitted and received.",
            [
                query(per_gpu("DCGM_FI_PROF_PCIE_TX_BYTES"), "tx " + legend),
                query(per_gpu("DCGM_FI_PROF_PCIE_RX_BYTES"), "rx " + legend),
            ],
            "Bps",
        ),
    )
    board.row("Memory, temperature and power").add(
        graph(
            "Framebuffer memory used",
            "GPU memory in use (MiB as reported by DCGM).",
            [query(per_gpu("DCGM_FI_DEV_FB_USED"), legend)],
            "mbytes",
            width=8,
        ),
        graph(
            "Framebuffer memory free",
            "GPU memory free.",
            [query(per_gpu("DCGM_FI_DEV_FB_FREE"), legend)],
            "mbytes",
            width=8,
        ),
        graph(
            "Temperature",
            "GPU and memory temperature.",
            [
                query(per_gpu("DCGM_FI_DEV_GPU_TEMP"), "GPU " + legend),
                query(per_gpu("DCGM_FI_DEV_MEMORY_TEMP"), "memory " + legend),
            ],
            "celsius",
            width=8,
            steps=thresholds(GREEN, (80, "orange"), (88, "red")),
        ),
        graph("Power draw", "Power in watts.", [query(per_gpu("DCGM_FI_DEV_POWER_USAGE"), legend)], "watt", width=8),
        graph(
            "Energy",
            "Energy used per interval, from the total-energy counter (mJ).",
            [
                query(
                    f"max by (host, gpu) (increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{sel}}}[{RATE}])) / 1000",
                    legend,
                )
            ],
            "joule",
            width=8,
        ),
        graph(
            "Clocks",
            "SM and memory clocks (MHz).",
            [
                query(per_gpu("DCGM_FI_DEV_SM_CLOCK"), "SM " + legend),
                query(per_gpu("DCGM_FI_DEV_MEM_CLOCK"), "memory " + legend),
            ],
            "suffix:MHz",
            width=8,
        ),
    )
    board.row("Errors").add(
        timeline(
            "XID errors",
            "The last XID error each GPU reported (0: none). XIDs 48, 63, 64, 74, 79, 94, 95 "
            "usually mean the GPU needs attention; see NVIDIA's XID catalogue.",
            [query(per_gpu("DCGM_FI_DEV_XID_ERRORS"), legend)],
            value_map({"0": ("no error", "green")}),
            width=12,
        ),
        graph(
            "Memory errors: remapped rows (ECC)",
            "Rows remapped after correctable and uncorrectable ECC errors "
            "(Ampere and newer). dcgm-exporter's default counters export row remapping; its ECC_*_TOTAL counters "
            "are off by default.",
            [
                query(
                    f"max by (host, gpu) (increase(DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS{{{sel}}}[$__range]))",
                    "uncorrectable " + legend,
                ),
                query(
                    f"max by (host, gpu) (increase(DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS{{{sel}}}[$__range]))",
                    "correctable " + legend,
                ),
                query(per_gpu("DCGM_FI_DEV_ROW_REMAP_FAILURE"), "remap failed " + legend),
            ],
            "short",
            width=12,
            draw="bars",
        ),
        graph(
            "PCIe replays / s",
            "PCIe retries: a rising rate points at a bad link or riser.",
            [query(f"max by (host, gpu) (rate(DCGM_FI_DEV_PCIE_REPLAY_COUNTER{{{sel}}}[{RATE}]))", legend)],
            "ops",
            width=12,
        ),
        graph(
            "NVLink bandwidth",
            "NVLink traffic counter, all lanes.",
            [query(f"max by (host, gpu) (rate(DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{{{sel}}}[{RATE}]))", legend)],
            "short",
            width=12,
        ),
    )
    board.row("Host").add(
        graph(
            "CPU busy",
            "Share of CPU time not idle, per host (node_exporter).",
            [query(f'1 - avg by (host) (rate(node_cpu_seconds_total{{mode="idle", {HOST}}}[{RATE}]))', "{{host}}")],
            "percentunit",
            width=8,
            maximum=1,
        ),
        graph(
            "Memory available",
            "Memory available for new work, per host.",
            [query(f"node_memory_MemAvailable_bytes{{{HOST}}} / node_memory_MemTotal_bytes{{{HOST}}}", "{{host}}")],
            "percentunit",
            width=8,
            maximum=1,
        ),
        graph(
            "Free disk space",
            "Free space of each host's root and /var/lib filesystems (model repository).",
            [
                query(
                    f'node_filesystem_avail_bytes{{{HOST}, fstype!~"tmpfs|overlay|squashfs", '
                    f'mountpoint=~"/|/var|/var/lib|/var/lib/modelfleet"}} / node_filesystem_size_bytes{{{HOST}, '
                    f'fstype!~"tmpfs|overlay|squashfs", mountpoint=~"/|/var|/var/lib|/var/lib/modelfleet"}}',
                    "{{host}} {{mountpoint}}",
                )
            ],
            "percentunit",
            width=8,
            maximum=1,
        ),
    )
    return board


# --- Rollout -------------------------------------------------------------------------------------------------


def rollout() -> Board:
    model = 'model=~"$model"'
    role = f"max by (model, version, role) (modelfleet_rollout_role{{{model}}} == 1)"

    def by_role(series: str, selector: str = model) -> str:
        """A per-version series labelled with the version's rollout role (stable / canary)."""
        return f"max by (model, version, role) ({series}{{{selector}}} * on (model, version) group_left (role) {role})"

    def of_role(series: str, name: str) -> str:
        """Per model: the series of the version that has the rollout role ``name`` (copies per host collapse)."""
        return (
            f"max by (model) ({series}{{{model}}} and on (model, version) "
            f'(modelfleet_rollout_role{{{model}, role="{name}"}} == 1))'
        )

    router = f'proxy=~"$model", {HOST}'
    legend = "{{role}} v{{version}}"
    board = Board(
        "modelfleet-rollout",
        "modelfleet / Rollout",
        "Canary rollouts: the weights set and the traffic measured at the routers, the controller's decisions, "
        "and canary against stable on the recording rules the alerts use (the gates read the same counters over "
        "each step's own window).",
        [
            datasource_variable(),
            variable("model", "Model", "label_values(modelfleet_rollout_role, model)"),
            variable(
                "window",
                "Drift window",
                'label_values(modelfleet_window_rows{model=~"$model"}, window)',
                multi=False,
                include_all=False,
                description="Sliding window of the drift statistics.",
            ),
            host_variable("haproxy_process_start_time_seconds"),
        ],
        [step_annotation()],
    )
    board.row("Now").add(
        single(
            "Step",
            "Current step of the rollout (1-based: 1 is the first of rollout.steps).",
            query(f"max by (model) (modelfleet_rollout_step{{{model}}})", "{{model}}"),
            "none",
            decimals=0,
        ),
        single(
            "Canary weight",
            "Weight (percent of traffic) the controller set for the canary.",
            query(of_role("modelfleet_rollout_weight", "canary"), "{{model}}"),
            "percent",
            decimals=0,
        ),
        single(
            "Canary / stable p99",
            "p99 latency of the canary divided by the stable version's over 5 minutes "
            "(recording rule model:modelfleet_canary_vs_stable_p99:ratio5m; the latency_vs_stable gate).",
            query(f"max by (model) (model:modelfleet_canary_vs_stable_p99:ratio5m{{{model}}})", "{{model}}"),
            "none",
            decimals=2,
            steps=thresholds(GREEN, (1.2, "orange"), (1.5, "red")),
        ),
        single(
            "Canary / stable errors",
            "Error ratio of the canary divided by the stable version's (floored at "
            "0.1%) over 5 minutes (model:modelfleet_canary_vs_stable_error_ratio:ratio5m).",
            query(f"max by (model) (model:modelfleet_canary_vs_stable_error_ratio:ratio5m{{{model}}})", "{{model}}"),
            "none",
            decimals=2,
            steps=thresholds(GREEN, (1.5, "orange"), (2, "red")),
        ),
        single(
            "Promotions",
            "Decisions with result promote in the time range.",
            query(f'sum(increase(modelfleet_rollout_decisions_total{{{model}, result="promote"}}[$__range]))'),
            "none",
            decimals=0,
        ),
        single(
            "Rollbacks",
            "Decisions with result rollback in the time range.",
            query(f'sum(increase(modelfleet_rollout_decisions_total{{{model}, result="rollback"}}[$__range]))'),
            "none",
            decimals=0,
            steps=thresholds(GREEN, (1, "red")),
        ),
    )
    board.row("Weights").add(
        graph(
            "Weight set by the controller",
            "modelfleet_rollout_weight per version (textfile written by the "
            "rollout tooling on each host, read by node_exporter), labelled with the version's role.",
            [query(by_role("modelfleet_rollout_weight"), legend)],
            "percent",
            maximum=100,
            interpolation=common.LineInterpolation.STEP_AFTER,
        ),
        graph(
            "Router weights (HAProxy)",
            "haproxy_server_weight of the model's slots (the router's backend is named like the model, its "
            "servers are the slots blue and green), as a share of the backend: what the routers apply.",
            [
                query(
                    f"100 * max by (proxy, server) (haproxy_server_weight{{{router}}} / on (host, proxy) "
                    f"group_left () sum by (host, proxy) (haproxy_server_weight{{{router}}}))",
                    "{{proxy}}/{{server}}",
                )
            ],
            "percent",
            maximum=100,
            interpolation=common.LineInterpolation.STEP_AFTER,
        ),
        graph(
            "Traffic share measured at the routers",
            "Responses per server as a share of its backend: the split "
            "that really happened (compare with the weights).",
            [
                query(
                    f"100 * sum by (proxy, server) (rate(haproxy_server_http_responses_total{{{router}}}[{RATE}])) "
                    f"/ on (proxy) group_left () sum by (proxy) "
                    f"(rate(haproxy_server_http_responses_total{{{router}}}[{RATE}]))",
                    "{{proxy}}/{{server}}",
                )
            ],
            "percent",
            maximum=100,
        ),
        graph(
            "Rollout step",
            "Step of each model's rollout (1-based).",
            [query(f"max by (model) (modelfleet_rollout_step{{{model}}})", "{{model}}")],
            "none",
            interpolation=common.LineInterpolation.STEP_AFTER,
            calcs=("lastNotNull",),
        ),
        graph(
            "Router 5xx ratio per server",
            "5xx responses / all responses of each server as the routers saw "
            "them: includes failures that never reached a model server (connection refused, timeouts).",
            [
                query(
                    f'sum by (proxy, server) (rate(haproxy_server_http_responses_total{{{router}, code="5xx"}}'
                    f"[{RATE}])) / sum by (proxy, server) (rate(haproxy_server_http_responses_total{{{router}}}"
                    f"[{RATE}]))",
                    "{{proxy}}/{{server}}",
                )
            ],
            "percentunit",
            steps=thresholds(GREEN, (0.01, "red")),
        ),
        graph(
            "Router servers not up",
            "Routers (hosts) on which a server of the model's backends is not UP "
            "(DOWN, MAINT, DRAIN, NOLB): its weight then carries no traffic.",
            [
                query(
                    f'sum by (proxy, server, state) (haproxy_server_status{{{router}, state!="UP"}}) > 0',
                    "{{proxy}}/{{server}} {{state}}",
                )
            ],
            "none",
            draw="bars",
            calcs=("max",),
        ),
    )
    board.row("Decisions").add(
        graph(
            "Decisions",
            "Every decision of the controller, by result: advance (to the next step), promote, hold (a gate "
            "failed below the failure limit, or was inconclusive), rollback, abort (by an operator).",
            [
                query(
                    f"sum by (model, version, result) (increase(modelfleet_rollout_decisions_total{{{model}}}"
                    f"[{RATE}])) > 0",
                    "{{result}} v{{version}}",
                )
            ],
            "short",
            draw="bars",
            stacked=True,
            calcs=("sum",),
        ),
        grid(
            "Decisions in the time range",
            "Count of decisions per version and result over the dashboard's range.",
            [
                query(
                    f"sum by (model, version, result) (increase(modelfleet_rollout_decisions_total{{{model}}}"
                    f"[$__range]))",
                    instant=True,
                    fmt=PromQueryFormat.TABLE,
                )
            ],
            width=12,
            height=8,
        ),
        timeline(
            "Phase",
            "The rollout's phase: progressing, promoting, promoted, rolling_back, rolled_back, aborted.",
            [query(f"max by (model, phase) (modelfleet_rollout_phase{{{model}}}) == 1", "{{model}} {{phase}}")],
            value_map({"1": ("current", "blue")}),
            width=12,
        ),
        graph(
            "Analyses by verdict",
            "Canary analyses by overall verdict (pass, fail, inconclusive: no data or too few requests, never a pass).",
            [
                query(
                    f"sum by (model, verdict) (increase(modelfleet_rollout_analyses_total{{{model}}}[{RATE}])) > 0",
                    "{{model}} {{verdict}}",
                )
            ],
            "short",
            draw="bars",
            stacked=True,
            calcs=("sum",),
        ),
        grid(
            "Gates of the latest analysis",
            "Each gate's latest measured value, its threshold and its verdict, as the controller saw them (a "
            "gate without a value had no data).",
            [
                query(
                    f"max by (model, version, gate) (modelfleet_rollout_gate_threshold{{{model}}})",
                    instant=True,
                    fmt=PromQueryFormat.TABLE,
                ),
                query(
                    f"max by (model, version, gate) (modelfleet_rollout_gate_value{{{model}}})",
                    instant=True,
                    fmt=PromQueryFormat.TABLE,
                ),
                query(
                    f"max by (model, version, gate, verdict) (modelfleet_rollout_gate_verdict{{{model}}} == 1)",
                    instant=True,
                    fmt=PromQueryFormat.TABLE,
                ),
            ],
            width=12,
            height=8,
            hidden=("Time", "Value #C"),
            renames={"Value #A": "threshold", "Value #B": "value"},
        ),
        graph(
            "Failures and inconclusive streak",
            "Failed analyses so far (rollback at the failure limit) and consecutive inconclusive analyses at the "
            "current step (rollback past the inconclusive limit).",
            [
                query(f"max by (model) (modelfleet_rollout_failures{{{model}}})", "failures {{model}}"),
                query(
                    f"max by (model) (modelfleet_rollout_inconclusive_streak{{{model}}})",
                    "inconclusive streak {{model}}",
                ),
            ],
            "short",
            width=12,
            height=8,
            interpolation=common.LineInterpolation.STEP_AFTER,
            calcs=("max",),
        ),
    )
    board.row("Canary against stable").add(
        graph(
            "Error ratio",
            "Server errors / all requests per version over 1 minute (recording rule "
            "model_version:modelfleet_error_ratio:rate1m), by role.",
            [query(by_role("model_version:modelfleet_error_ratio:rate1m"), legend)],
            "percentunit",
            steps=thresholds(GREEN, (0.01, "red")),
        ),
        graph(
            "Latency p99 and p95",
            "Request time per version over 1 minute (recording rules "
            "model_version:modelfleet_request_duration_seconds:p99_1m and p95_1m), by role.",
            [
                query(by_role("model_version:modelfleet_request_duration_seconds:p99_1m"), "p99 " + legend),
                query(by_role("model_version:modelfleet_request_duration_seconds:p95_1m"), "p95 " + legend),
            ],
            "s",
        ),
        graph(
            "Requests / s",
            "Requests per version over 1 minute, by role: the canary's share of real traffic.",
            [query(by_role("model_version:modelfleet_requests:rate1m"), legend)],
            "reqps",
            stacked=True,
        ),
        graph(
            "p50 latency",
            "Median request time per version over 1 minute, by role.",
            [query(by_role("model_version:modelfleet_request_duration_seconds:p50_1m"), legend)],
            "s",
        ),
        graph(
            "Canary against stable over 5 minutes",
            "Ratios the alerts and the gates look at: canary p99 / stable "
            "p99 and canary error ratio / stable error ratio (floored at 0.1%).",
            [
                query(f"max by (model) (model:modelfleet_canary_vs_stable_p99:ratio5m{{{model}}})", "p99 {{model}}"),
                query(
                    f"max by (model) (model:modelfleet_canary_vs_stable_error_ratio:ratio5m{{{model}}})",
                    "errors {{model}}",
                ),
            ],
            "none",
            minimum=None,
            steps=thresholds(GREEN, (1.2, "orange"), (1.5, "red")),
        ),
        graph(
            "Feature drift by role",
            "Largest feature PSI of each version in the chosen drift window, by role "
            "(the drift_psi gate reads the shortest window).",
            [query(by_role("modelfleet_feature_psi", f'{model}, window="$window"'), legend)],
            "none",
            steps=thresholds(GREEN, (0.1, "orange"), (0.2, "red")),
        ),
        graph(
            "Rollout metrics freshness",
            "node_exporter's textfile collector errors (1: a .prom file could not "
            "be read, so the rollout metrics above may be stale).",
            [query(f"max by (host) (node_textfile_scrape_error{{{HOST}}})", "{{host}}")],
            "none",
            maximum=1,
            calcs=("max",),
            width=24,
            height=5,
        ),
    )
    return board


DASHBOARDS: dict[str, Callable[[], Board]] = {
    "serving.json": serving,
    "drift.json": drift,
    "gpu.json": gpu,
    "rollout.json": rollout,
}


def render() -> dict[str, str]:
    """File name → the dashboard JSON as committed (sorted keys, two-space indent, trailing newline)."""
    return {
        name: json.dumps(make().build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, make in DASHBOARDS.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="verify the committed JSON instead of writing it")
    parser.add_argument("--output-dir", type=Path, default=HERE, help="where the JSON files are (default: here)")
    args = parser.parse_args(argv)
    rendered = render()
    stale: list[str] = []
    for name, text in rendered.items():
        path = args.output_dir / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
            sys.stdout.writelines(
                difflib.unified_diff(
                    (current or "").splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    f"{path} (committed)",
                    f"{path} (generated)",
                )
            )
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    unknown = sorted(p.name for p in args.output_dir.glob("*.json") if p.name not in rendered)
    if unknown:
        print(f"not made by this generator (remove or add to DASHBOARDS): {', '.join(unknown)}", file=sys.stderr)
    if stale:
        print(f"stale: {', '.join(stale)}; run: python {Path(__file__).name}", file=sys.stderr)
    return 1 if stale or (args.check and unknown) else 0


if __name__ == "__main__":
    sys.exit(main())
