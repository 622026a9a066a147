"""modelfleet / Drift: input and prediction drift against the reference profile, and quality from labels."""

from __future__ import annotations

from boards.panels import (
    GREEN,
    HOST,
    RATE,
    Board,
    bars,
    datasource_variable,
    graph,
    host_variable,
    query,
    single,
    step_annotation,
    thresholds,
    timeline,
    value_map,
    variable,
)


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
