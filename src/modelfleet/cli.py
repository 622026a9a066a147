"""The ``modelfleet`` command line: ``modelfleet convert MODEL_YML --output DIR`` and friends."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from modelfleet import __version__
from modelfleet.errors import UsageError
from modelfleet.exitcodes import run_handler


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


def _serve(args: argparse.Namespace) -> int:
    import logging

    from modelfleet.serve.dataplane import ServerSettings
    from modelfleet.serve.main import run
    from modelfleet.serve.runtime import RuntimeOptions
    from modelfleet.spec import Serving, load_spec

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serving = load_spec(args.spec).serving if args.spec else Serving()
    providers = args.providers.split(",") if args.providers else list(serving.providers)
    unknown = sorted(set(providers) - {"tensorrt", "cuda", "cpu"})
    if unknown:
        raise UsageError(f"unknown provider(s) {unknown}; use tensorrt, cuda, cpu")
    runtime = RuntimeOptions(
        providers=providers,  # checked above
        optimization=args.optimization, intra_op_threads=args.threads, device_id=args.device_id,
        trt_cache_dir=Path(args.trt_cache_dir) if args.trt_cache_dir else None,
        max_batch=args.max_batch or serving.batching.max_batch)
    settings = ServerSettings(
        artifact=Path(args.artifact_dir).resolve(), runtime=runtime,
        max_queue_delay_us=(args.max_queue_delay_us if args.max_queue_delay_us is not None
                            else serving.batching.max_queue_delay_us),
        max_queue_size=args.max_queue_size or serving.batching.max_queue_size,
        inline_inference=not args.inference_thread, max_request_bytes=args.max_request_bytes,
        body_timeout=args.body_timeout, spool_dir=Path(args.spool_dir) if args.spool_dir else None,
        spool_sample_rate=args.spool_sample_rate, spool_max_bytes=args.spool_max_bytes,
        spool_segment_bytes=args.spool_segment_bytes, gc_freeze_when_ready=True)
    return run(settings, args.host, args.port, grpc_port=args.grpc_port, shutdown_delay=args.shutdown_delay,
               drain_timeout=args.drain_timeout, limit_concurrency=args.limit_concurrency, log_level=args.log_level)


def _add_serve(commands: Any) -> None:
    from modelfleet.serve import defaults as d

    serve = commands.add_parser("serve", help="serve one model artifact over the Open Inference Protocol")
    serve.add_argument("artifact_dir", help="artifact directory from `modelfleet convert` (<root>/<name>/<version>)")
    serve.add_argument("--host", default=d.HOST, help=f"listen address, HTTP and gRPC (default {d.HOST})")
    serve.add_argument("--port", type=int, default=d.PORT, help=f"HTTP port (default {d.PORT}; 0: any free port)")
    serve.add_argument("--grpc-port", type=int, default=d.GRPC_PORT,
                       help="also serve the OIP over gRPC on this port (default: no gRPC; 0: any free port)")
    serve.add_argument("--spec", help="model.yml whose serving settings give the defaults below")
    serve.add_argument("--providers", help="execution providers in order: tensorrt,cuda,cpu (default: spec, or cpu)")
    serve.add_argument("--max-batch", type=int,
                       help=f"dynamic batching: rows per execution (default: spec, or {d.MAX_BATCH})")
    serve.add_argument("--max-queue-delay-us", type=int,
                       help="dynamic batching: longest wait for a batch to fill "
                            f"(default: spec, or {d.MAX_QUEUE_DELAY_US})")
    serve.add_argument("--max-queue-size", type=int,
                       help=f"requests waiting before 503 (default: spec, or {d.MAX_QUEUE_SIZE})")
    serve.add_argument("--inference-thread", action="store_true",
                       help="run the model on a worker thread instead of the event loop (for slow models)")
    serve.add_argument("--threads", type=int, default=d.INTRA_OP_THREADS,
                       help="ONNX Runtime intra-op threads (0: one per core)")
    serve.add_argument("--optimization", default=d.OPTIMIZATION, choices=["disable", "basic", "extended", "all"],
                       help=f"online graph optimization level on this host (default {d.OPTIMIZATION})")
    serve.add_argument("--device-id", type=int, default=0, help="GPU index for CUDA/TensorRT")
    serve.add_argument("--trt-cache-dir", help="TensorRT engine cache (default: ARTIFACT_DIR/trt-cache)")
    serve.add_argument("--max-request-bytes", type=int, default=d.MAX_REQUEST_BYTES,
                       help="request body / gRPC message limit (413 / RESOURCE_EXHAUSTED beyond)")
    serve.add_argument("--body-timeout", type=float, default=d.BODY_TIMEOUT,
                       help="seconds to receive a body (408 beyond)")
    serve.add_argument("--limit-concurrency", type=int, default=d.LIMIT_CONCURRENCY,
                       help="HTTP connections+requests before 503")
    serve.add_argument("--spool-dir", help="write sampled request/response records here (for the drift exporter)")
    serve.add_argument("--spool-sample-rate", type=float, default=d.SPOOL_SAMPLE_RATE,
                       help="share of requests spooled (0-1]")
    serve.add_argument("--spool-max-bytes", type=int, default=d.SPOOL_MAX_BYTES, help="spool size bound per version")
    serve.add_argument("--spool-segment-bytes", type=int, default=d.SPOOL_SEGMENT_BYTES, help="spool segment size")
    serve.add_argument("--shutdown-delay", type=float, default=d.SHUTDOWN_DELAY,
                       help="on SIGTERM, seconds to keep serving while not ready (router health checks notice)")
    serve.add_argument("--drain-timeout", type=float, default=d.DRAIN_TIMEOUT,
                       help="on SIGTERM, longest wait for requests")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=_serve)


def _add_drift_exporter(commands: Any) -> None:
    exporter = commands.add_parser("drift-exporter", help="export drift and quality of every model version on this "
                                   "host to Prometheus (tails the payload spool)")
    exporter.add_argument("--spool-dir", required=True, help="the servers' payload spool (<dir>/<model>/<version>/)")
    exporter.add_argument("--artifacts-dir", required=True, help="artifact root (<dir>/<model>/<version>/)")
    exporter.add_argument("--state-dir", help="checkpoint directory (default SPOOL_DIR/.drift-exporter)")
    exporter.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    exporter.add_argument("--port", type=int, default=9108, help="listen port (default 9108)")
    exporter.add_argument("--bucket", default="10s", help="time bucket of the sliding windows (default 10s)")
    exporter.add_argument("--windows", help="comma-separated windows, e.g. 5m,1h (default: each spec's drift.windows)")
    exporter.add_argument("--correction", default="bonferroni", choices=["bonferroni", "fdr", "none"],
                          help="multiple-testing correction across features (default bonferroni)")
    exporter.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    exporter.add_argument("--psi-threshold", type=float, default=0.0,
                          help="drift is detected only where PSI reaches this too (default 0: the tests alone)")
    exporter.add_argument("--label-ttl", default="1h", help="how long predictions and early labels wait to be joined")
    exporter.add_argument("--max-pending", type=int, default=100_000, help="predictions (and labels) waiting, at most")
    exporter.add_argument("--labels-file", help="JSON Lines file of labels to watch")
    exporter.add_argument("--web-config-file", help="TLS and basic auth, in Prometheus exporter-toolkit format")
    exporter.add_argument("--checkpoint-interval", default="30s", help="checkpoint period (default 30s)")
    exporter.add_argument("--discovery-interval", default="5s", help="how often to look for new versions (default 5s)")
    exporter.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    def handler(args: argparse.Namespace) -> int:
        from modelfleet.drift.command import exporter_main

        return exporter_main(args)

    exporter.set_defaults(handler=handler)


def _add_verify(commands: Any) -> None:
    verify = commands.add_parser("verify", help="check an artifact's files against its manifest's sha256 sums")
    verify.add_argument("artifact_dir", help="artifact directory (<root>/<name>/<version>)")
    verify.add_argument("--json", action="store_true", help="print name, version, build key and files as JSON")

    def handler(args: argparse.Namespace) -> int:
        from modelfleet.artifact import verify_artifact

        manifest = verify_artifact(Path(args.artifact_dir))
        if args.json:
            print(json.dumps({"name": manifest.name, "version": manifest.version, "build_key": manifest.build_key,
                              "files": manifest.files}, indent=2))
        else:
            print(f"{manifest.name} v{manifest.version}: {len(manifest.files)} files match the manifest")
        return 0

    verify.set_defaults(handler=handler)


def _add_drift(commands: Any) -> None:
    drift = commands.add_parser("drift", help="drift tools").add_subparsers(dest="drift_command", required=True)
    report = drift.add_parser("report", help="write a self-contained HTML drift report (reference vs current)")
    report.add_argument("--artifact", required=True, help="artifact directory (<root>/<model>/<version>)")
    current = report.add_mutually_exclusive_group(required=True)
    current.add_argument("--spool-dir", help="spool root (reads <dir>/<model>/<version>/)")
    current.add_argument("--data", help=".npz with one array per model input")
    report.add_argument("--output", "-o", required=True, help="the HTML file to write")
    report.add_argument("--title", help="report title")

    def handler(args: argparse.Namespace) -> int:
        from modelfleet.drift.command import report_main

        return report_main(args)

    report.set_defaults(handler=handler)


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
    _add_serve(commands)
    _add_drift_exporter(commands)
    _add_drift(commands)
    _add_verify(commands)
    from modelfleet.alerting.command import add_parser as add_retrain_hook
    from modelfleet.k8s.command import add_parser as add_k8s
    from modelfleet.k8s.command import add_rollout_parser
    from modelfleet.serverless.command import add_parser as add_serverless

    add_retrain_hook(commands)
    add_k8s(commands)
    add_rollout_parser(commands)
    add_serverless(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status follows :mod:`modelfleet.exitcodes` (0 ok, 1 failure, 2 usage/input)."""
    args = build_parser().parse_args(argv)
    return run_handler(f"modelfleet {args.command}", args.handler, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
