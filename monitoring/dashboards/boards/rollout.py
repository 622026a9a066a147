"""modelfleet / Rollout: canary weights and traffic at the routers, decisions, canary against stable."""

from __future__ import annotations

from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from boards.panels import (
    GREEN,
    HOST,
    RATE,
    Board,
    datasource_variable,
    graph,
    grid,
    host_variable,
    query,
    single,
    step_annotation,
    thresholds,
    timeline,
    value_map,
    variable,
)


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

    # The model's HTTP backend and its gRPC twin (<model>_grpc, same slots, same weights): both splits shown.
    router = f'proxy=~"$model|${{model}}_grpc", {HOST}'
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
            "servers are the slots blue and green; <model>_grpc is its gRPC twin with the same weights), as a "
            "share of the backend: what the routers apply.",
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
