"""``modelfleet serverless package`` and ``modelfleet serverless import-logs``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _package(args: argparse.Namespace) -> int:
    from modelfleet.serverless.package import PLATFORMS, ZIP_UNZIPPED_LIMIT, build_package

    result = build_package(Path(args.artifact), Path(args.output), project=Path(args.project),
                           base_image=args.base_image, rie=Path(args.rie) if args.rie else None,
                           python_version=args.python_version,
                           platforms=tuple(args.platform or PLATFORMS))
    mb = 1e6
    print(f"task tree {result.task}: {result.unzipped_bytes / mb:.1f} MB unzipped "
          f"(Lambda zip limit {ZIP_UNZIPPED_LIMIT / mb:.0f} MB)")
    if result.zip_path is not None and result.zip_bytes is not None:
        print(f"zip package {result.zip_path}: {result.zip_bytes / mb:.1f} MB")
    else:
        print("no zip package: the unzipped tree is over Lambda's limit; deploy the container image")
    print(f"image context {result.image_context} (docker build {result.image_context})")
    return 0


def _import_logs(args: argparse.Namespace) -> int:
    from modelfleet.serverless.records import export_to_spool

    result = export_to_spool([Path(p) for p in args.log_files], Path(args.spool_dir))
    for (model, version), count in sorted(result.records.items()):
        print(f"{model} version {version}: {count} record(s)")
    print(f"{result.lines} line(s) read, {result.other_lines} not records, "
          f"{sum(result.malformed.values())} malformed {dict(result.malformed) or ''}".rstrip(), file=sys.stderr)
    if not result.records:
        print("no request/response records found (is MODELFLEET_RECORD_SAMPLE_RATE above 0?)", file=sys.stderr)
        return 1
    return 0


def add_parser(commands: Any) -> None:
    serverless = commands.add_parser("serverless", help="a model as an AWS Lambda function or Google Cloud Function")
    sub = serverless.add_subparsers(dest="serverless_command", required=True)
    package = sub.add_parser("package", help="build the Lambda zip package (when it fits) and image context")
    package.add_argument("artifact", help="artifact directory (<root>/<model>/<version>)")
    package.add_argument("--output", "-o", required=True, help="writes OUTPUT/image/ and OUTPUT/function.zip")
    package.add_argument("--project", default=".", help="the modelfleet source tree (pyproject.toml)")
    package.add_argument("--base-image", default="python:3.11-slim-bookworm",
                         help="image base with python3 matching --python-version")
    package.add_argument("--rie", help="add this Lambda Runtime Interface Emulator binary (local runs)")
    package.add_argument("--python-version", default="3.11", help="the image's / Lambda runtime's Python version "
                         "(zip packages: 3.12 or later, whose Amazon Linux 2023 has the glibc onnxruntime needs)")
    package.add_argument("--platform", action="append", help="wheel platform, repeatable (default: manylinux "
                         "2_28, 2_27 and 2014 x86_64; manylinux_2_28_aarch64 for arm64)")
    package.set_defaults(handler=_package)
    logs = sub.add_parser("import-logs", help="turn exported function logs into spool segments for the drift tools")
    logs.add_argument("log_files", nargs="+", help="exported log files (CloudWatch, Cloud Logging, raw output)")
    logs.add_argument("--spool-dir", required=True, help="spool root; writes <dir>/<model>/<version>/<seq>.jsonl")
    logs.set_defaults(handler=_import_logs)
