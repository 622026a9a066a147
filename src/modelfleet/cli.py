"""The ``modelfleet`` command line: ``modelfleet convert MODEL_YML --output DIR`` and friends."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from modelfleet import __version__
from modelfleet.errors import ModelfleetError


def _convert(args: argparse.Namespace) -> int:
    from modelfleet.convert import STAGES, build_artifact
    from modelfleet.spec import load_spec

    console = Console(stderr=True)
    spec = load_spec(args.model_yml)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=args.quiet) as progress:
        task = progress.add_task(f"{spec.name} v{spec.version}", total=len(STAGES))

        def advance(stage: str) -> None:
            progress.update(task, completed=STAGES.index(stage), description=f"{spec.name} v{spec.version}: {stage}")

        result = build_artifact(spec, Path(args.output), force=args.force, check_only=args.check, progress=advance)
        progress.update(task, completed=len(STAGES))
    if args.json:
        print(json.dumps({"changed": result.changed, "outcome": result.outcome, "path": str(result.path),
                          "reason": result.reason, "build_key": result.build_key, "manifest": result.manifest,
                          "timings": result.timings}, indent=2))
        return 0
    console.print(f"[bold]{spec.name}[/] v{spec.version}: {result.outcome} — {result.reason}")
    if result.manifest is not None and result.changed:
        for name, report in result.manifest["parity"]["outputs"].items():
            if report["kind"] == "float":
                console.print(f"  parity {name}: max |diff| {report['max_abs_diff']:.3g} over "
                              f"{report['elements']} elements (allowed {report['allowed']:.3g} at the worst)")
            else:
                console.print(f"  parity {name}: {report['elements']} values identical")
        total = sum(result.timings.values())
        console.print(f"  built in {total:.2f} s ({', '.join(f'{k} {v:.2f}' for k, v in result.timings.items())})")
    print(result.path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelfleet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modelfleet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="convert, validate, optimize and stamp a model as ONNX")
    convert.add_argument("model_yml", help="the model spec (model.yml)")
    convert.add_argument("--output", "-o", required=True, help="artifact root; writes OUTPUT/<name>/<version>/")
    convert.add_argument("--force", action="store_true", help="replace an existing, different build of this version")
    convert.add_argument("--check", action="store_true", help="report what would be built; change nothing")
    convert.add_argument("--json", action="store_true", help="print the result as JSON")
    convert.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    convert.set_defaults(handler=_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ModelfleetError as exc:
        print(f"modelfleet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
