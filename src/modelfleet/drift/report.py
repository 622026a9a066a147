"""``modelfleet drift report``: one self-contained HTML file comparing current data with the reference.

The current data is a version's spool (every record still on disk) or an ``.npz`` of model inputs
(predictions then come from running the artifact's model). Per feature and prediction column: a
histogram of reference vs current on the reference bins (or categories, plus unseen and missing),
drawn as inline SVG, and the statistics the exporter exports; drifted columns are highlighted.
No scripts, no external assets: the file can be mailed or attached to a ticket.
"""

from __future__ import annotations

import html
import itertools
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet import __version__
from modelfleet.artifact import MODEL_FILE, PROFILE_FILE, artifact_spec, verify_artifact
from modelfleet.drift.metrics import DetectionRule
from modelfleet.errors import ArtifactError, ModelfleetError
from modelfleet.spec import ModelSpec
from modelfleet.spool.reader import SpoolReader
from modelfleet.spool.record import RecordError, decode
from modelfleet.stats.binning import bin_counts, fractions
from modelfleet.stats.columns import feature_columns, prediction_columns
from modelfleet.stats.drift import ColumnDrift
from modelfleet.stats.profile import CategoricalProfile, ColumnProfile, DataProfile, NumericProfile, category_key
from modelfleet.stats.window import DriftWindows

Columns = dict[str, npt.NDArray[Any]]
_STATS = [("psi", "PSI"), ("js_distance", "JS"), ("ks_statistic", "KS"), ("ks_pvalue", "KS p"),
          ("wasserstein_normed", "W1/σ"), ("chi2_pvalue", "χ² p"), ("missing_ratio", "missing"),
          ("out_of_range_ratio", "out of range"), ("unseen_ratio", "unseen")]
_CSS = """body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:1rem 0}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}
tr.drift td{background:#fde2e1;font-weight:600}.col{display:inline-block;margin:0 1.5rem 1.5rem 0;vertical-align:top}
.col.drift h3{color:#b3261e}.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem}
h3{margin:.2rem 0;font-size:1rem}svg text{font-size:10px;fill:#444}"""
_REFERENCE, _CURRENT = "#7a9cc6", "#e8833a"


def _from_spool(spec: ModelSpec, output_names: list[str], directory: Path) -> tuple[Columns, Columns, str]:
    reader = SpoolReader(directory)
    features: dict[str, list[Any]] = {}
    predictions: dict[str, list[Any]] = {}
    skipped, first, last = 0, float("inf"), float("-inf")
    while batch := reader.read(5000).lines:
        for line in batch:
            try:
                record = decode(line)
                f = feature_columns(spec, record.inputs)
                p = prediction_columns(spec, output_names, [record.outputs[n] for n in output_names])
            except (RecordError, KeyError, IndexError, ValueError):
                skipped += 1
                continue
            first, last = min(first, record.ts), max(last, record.ts)
            for target, columns in ((features, f), (predictions, p)):
                for name, column in columns.items():
                    target.setdefault(name, []).append(column.values)
    reader.close()
    if not features and not predictions:
        raise ModelfleetError(f"{directory}: no readable spool records")
    when = (f"spool {directory}: records from {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(first))} to "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(last))}, {skipped} malformed skipped")
    return ({n: np.concatenate(v) for n, v in features.items()},
            {n: np.concatenate(v) for n, v in predictions.items()}, when)


def _from_data(spec: ModelSpec, artifact: Path, data: Path) -> tuple[Columns, Columns, str]:
    try:
        with np.load(data, allow_pickle=False) as archive:
            inputs = {t.name: archive[t.name] for t in spec.inputs}
    except (OSError, ValueError, KeyError) as exc:
        raise ModelfleetError(f"{data}: needs one array per model input ({[t.name for t in spec.inputs]}): "
                              f"{exc}") from None
    features = {n: c.values for n, c in feature_columns(spec, inputs).items()}
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact / MODEL_FILE), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(names, {t.name: inputs[t.name] for t in spec.inputs})
    predictions = {n: c.values for n, c in prediction_columns(spec, names, outputs).items()}
    return features, predictions, f"data {data}: {len(next(iter(inputs.values())))} rows"


def _statistics(profiles: Mapping[str, ColumnProfile], columns: Columns) -> dict[str, ColumnDrift]:
    windows = DriftWindows(profiles, 1.0, {"all": 1.0})
    windows.add(0.5, {n: v for n, v in columns.items() if n in profiles})
    return windows.evaluate("all", 0.5)


def _histogram(profile: ColumnProfile, values: npt.NDArray[Any]) -> tuple[list[str], list[float], list[float]]:
    """Bin labels, reference fractions, current fractions."""
    if isinstance(profile, NumericProfile):
        edges = np.asarray(profile.edges, dtype=np.float64)
        labels = ([f"< {edges[0]:.3g}"] + [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(edges)]
                  + [f"≥ {edges[-1]:.3g}"]) if edges.size else ["all"]
        current = fractions(bin_counts(np.asarray(values, dtype=np.float64), edges)).tolist()
        return labels, list(profile.fractions), current
    assert isinstance(profile, CategoricalProfile)
    counts = Counter(category_key(v) for v in np.asarray(values, dtype=object).ravel())
    missing = counts.pop(None, 0)
    known = set(profile.categories)
    current = [counts.get(c, 0) for c in profile.categories]
    current.append(sum(n for c, n in counts.items() if c not in known))
    labels = [*profile.categories, "unseen"]
    reference = [*profile.fractions, 0.0]
    if missing:
        current.append(missing)
        labels.append("missing")
        reference.append(0.0)
    return labels, reference, fractions(current).tolist()


def _svg(labels: list[str], reference: list[float], current: list[float]) -> str:
    width, height, top, bottom = max(320, 34 * len(labels)), 190, 10, 50
    slot = (width - 40) / len(labels)
    peak = max([*reference, *current, 1e-9])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<line x1="40" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" stroke="#999"/>',
             f'<text x="36" y="{top + 8}" text-anchor="end">{peak:.0%}</text>']
    scale = (height - top - bottom) / peak
    for i, (label, ref, cur) in enumerate(zip(labels, reference, current, strict=True)):
        x = 40 + i * slot
        bar_width = slot * 0.38
        for offset, value, colour in ((0.1, ref, _REFERENCE), (0.5, cur, _CURRENT)):
            h = value * scale
            parts.append(f'<rect x="{x + offset * slot:.1f}" y="{height - bottom - h:.1f}" width="{bar_width:.1f}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{html.escape(label)}: {value:.2%}</title></rect>')
        parts.append(f'<text transform="translate({x + slot / 2:.1f},{height - bottom + 8}) rotate(40)">'
                     f'{html.escape(label[:18])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _section(title: str, profiles: Mapping[str, ColumnProfile], columns: Columns,
             results: dict[str, ColumnDrift], drifted: dict[str, bool]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _key, label in _STATS)
    rows = []
    for name, result in results.items():
        cells = "".join(f"<td>{'' if getattr(result, s) is None else f'{getattr(result, s):.4g}'}</td>"
                        for s, _label in _STATS)
        flag = drifted.get(name, False)
        rows.append(f'<tr class="{"drift" if flag else ""}"><td>{html.escape(name)}</td><td>{result.kind}</td>'
                    f"<td>{result.rows}</td>{cells}<td>{'yes' if flag else 'no'}</td></tr>")
    plots = []
    for name, profile in profiles.items():
        if name not in columns:
            continue
        labels, reference, current = _histogram(profile, columns[name])
        plots.append(f'<div class="col{" drift" if drifted.get(name) else ""}"><h3>{html.escape(name)}'
                     f'{" — drift" if drifted.get(name) else ""}</h3>{_svg(labels, reference, current)}</div>')
    return (f"<h2>{html.escape(title)}</h2><table><tr><th>column</th><th>kind</th><th>rows</th>{head}"
            f"<th>drift</th></tr>{''.join(rows)}</table>{''.join(plots)}")


def write_report(artifact: Path, output: Path, *, spool_dir: Path | None = None, data: Path | None = None,
                 title: str | None = None, rule: DetectionRule | None = None) -> Path:
    """Write the report for one artifact against its spool or a data file; returns the path written."""
    if (spool_dir is None) == (data is None):
        raise ModelfleetError("give the current data as either a spool directory or a data file")
    manifest = verify_artifact(artifact)
    spec = artifact_spec(artifact, manifest)
    try:
        profile = DataProfile.model_validate_json((artifact / PROFILE_FILE).read_bytes())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{artifact / PROFILE_FILE}: unreadable reference profile: {exc}") from None
    if spool_dir is not None:
        names = [str(o["name"]) for o in manifest.outputs]
        features, predictions, source = _from_spool(spec, names, spool_dir / spec.name / spec.version)
    else:
        assert data is not None
        features, predictions, source = _from_data(spec, artifact, data)
    rule = rule or DetectionRule()
    sections = []
    for heading, profiles, columns in (("Features", profile.features, features),
                                       ("Predictions", profile.predictions, predictions)):
        results = _statistics(profiles, columns)
        drifted = rule.detect(results)
        sections.append(_section(heading, profiles, columns, results, drifted))
    heading = title or f"Drift report: {spec.name} version {spec.version}"
    document = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(heading)}</title>'
                f"<style>{_CSS}</style></head><body><h1>{html.escape(heading)}</h1>"
                f"<p>Reference: {profile.rows} rows (artifact {html.escape(str(artifact))}, build "
                f"{html.escape(manifest.build_key[:12])}). Current: {html.escape(source)}.</p>"
                f"<p>Drift: test rejects after {rule.correction} correction at α = {rule.alpha:g} and PSI ≥ "
                f'{rule.psi_threshold:g}.</p><p class="legend"><span style="background:{_REFERENCE}"></span>reference'
                f'<span style="background:{_CURRENT}"></span>current</p>{"".join(sections)}'
                f"<footer><p>modelfleet {__version__}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
                "</p></footer></body></html>\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(document, encoding="utf-8")
    return output
