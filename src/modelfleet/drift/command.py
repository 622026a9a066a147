"""What ``modelfleet drift-exporter`` and ``modelfleet drift report`` do with their parsed arguments."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from modelfleet.drift.exporter import Exporter, ExporterSettings, window_names
from modelfleet.durations import parse_duration
from modelfleet.errors import UsageError


def exporter_main(args: argparse.Namespace) -> int:
    from modelfleet.drift.app import run
    from modelfleet.drift.metrics import DetectionRule

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        bucket = parse_duration(args.bucket)
        windows = window_names(w.strip() for w in args.windows.split(",") if w.strip()) if args.windows else None
        ttl = parse_duration(args.label_ttl)
        interval = parse_duration(args.checkpoint_interval)
        discovery = parse_duration(args.discovery_interval)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if windows is not None and min(windows.values()) < bucket:
        raise UsageError(f"every window must be at least one bucket ({args.bucket}) long")
    if not 0 < args.alpha < 1:
        raise UsageError("--alpha must be in (0, 1)")
    spool = Path(args.spool_dir)
    state = Path(args.state_dir) if args.state_dir else spool / ".drift-exporter"
    settings = ExporterSettings(spool_dir=spool, artifacts_dir=Path(args.artifacts_dir), state_dir=state,
                                bucket_seconds=bucket, windows=windows, label_ttl=ttl,
                                labels_file=Path(args.labels_file) if args.labels_file else None,
                                checkpoint_interval=interval, discovery_interval=discovery,
                                max_pending=args.max_pending)
    rule = DetectionRule(args.correction, args.alpha, args.psi_threshold)
    return run(Exporter(settings), rule, args.host, args.port,
               Path(args.web_config_file) if args.web_config_file else None, args.log_level)


def report_main(args: argparse.Namespace) -> int:
    from modelfleet.drift.report import write_report

    path = write_report(Path(args.artifact), Path(args.output), spool_dir=Path(args.spool_dir) if args.spool_dir
                        else None, data=Path(args.data) if args.data else None, title=args.title)
    print(path, file=sys.stdout)
    return 0
