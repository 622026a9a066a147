"""modelfleet / Serving: model servers' traffic, errors, latency, batching and queues, by model and version."""

from __future__ import annotations

from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from boards.panels import (
    GREEN,
    HOST,
    RATE,
    SERVER_ERRORS,
    Board,
    datasource_variable,
    graph,
    grid,
    heatmap,
    host_variable,
    query,
    single,
    step_annotation,
    thresholds,
    variable,
)


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
