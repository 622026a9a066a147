"""Generate modelfleet's Grafana dashboards (dashboards as code with grafana-foundation-sdk).

    python monitoring/dashboards/generate.py            rewrite monitoring/dashboards/*.json
    python monitoring/dashboards/generate.py --check    exit 1 (with a diff) if a committed file is stale

The JSON files are committed: the grafana role reads them (as will the Pulumi programs), not this script.
Each dashboard is a module in boards/ (serving, drift, gpu, rollout) built from the shared panel
vocabulary in boards/panels.py; this script renders them.
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
from pathlib import Path

from boards import drift, gpu, rollout, serving
from boards.panels import Board

HERE = Path(__file__).resolve().parent

DASHBOARDS: dict[str, Callable[[], Board]] = {
    "serving.json": serving.serving,
    "drift.json": drift.drift,
    "gpu.json": gpu.gpu,
    "rollout.json": rollout.rollout,
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
