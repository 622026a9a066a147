"""``modelfleet k8s render`` and ``modelfleet rollout``: the Kubernetes front ends of the command line.

``k8s render MODEL_YML`` prints the model's objects as a YAML stream, for GitOps repositories (Argo CD, Flux):
the same objects ``pulumi/k8s`` creates, from the same builder, as ``helm template`` would print them.
``rollout MODEL_YML`` judges the canary once (:mod:`modelfleet.k8s.rollout`) and writes the next weight into
the stack or settings file. Bad settings exit with status 2 and one line per problem.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _render(args: argparse.Namespace) -> int:
    from modelfleet.k8s.render import build, to_yaml
    from modelfleet.k8s.settings import load_settings
    from modelfleet.spec import load_spec

    spec = load_spec(args.model_yml)
    settings = load_settings(args.settings, args.set,
                             base={"canary_version": args.canary_version, "canary_weight": args.canary_weight,
                                   "stable_version": args.stable_version, "namespace": args.namespace})
    objects = build(spec, settings)
    for obj in objects:
        annotations = obj["metadata"].get("annotations", {})
        share, weight = annotations.get("modelfleet.io/canary-share"), annotations.get("modelfleet.io/canary-weight")
        if share is not None and float(share) != float(weight):
            print(f"modelfleet k8s: warning: traffic: replicas gives the canary {share}% of the pods "
                  f"(canary_weight {weight}); more replicas make the split finer", file=sys.stderr)
    sys.stdout.write(to_yaml(objects))
    return 0


def add_parser(commands: Any) -> None:
    """Add ``k8s render`` to the ``modelfleet`` command's subparsers."""
    k8s = commands.add_parser("k8s", help="Kubernetes objects of a model (for GitOps; pulumi/k8s uses the same)")
    sub = k8s.add_subparsers(dest="k8s_command", required=True)
    render = sub.add_parser("render", help="print the model's Kubernetes objects as a YAML stream")
    render.add_argument("model_yml", help="the model spec (model.yml)")
    render.add_argument("--settings", "-f", help="YAML file of Kubernetes settings (docs/kubernetes.md)")
    render.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="one setting, e.g. traffic=replicas or autoscaling.enabled=true (repeatable; "
                        "applied after --settings)")
    render.add_argument("--stable-version", help="the version serving now (default: the spec's version)")
    render.add_argument("--canary-version", help="the version being rolled out")
    render.add_argument("--canary-weight", type=int, help="%% of requests to the canary: 0 or a rollout step")
    render.add_argument("--namespace", "-n", help="namespace of every object (default modelfleet)")
    render.set_defaults(handler=_render)


def _rollout(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from modelfleet.durations import parse_duration
    from modelfleet.errors import UsageError
    from modelfleet.k8s.rollout import WeightsFile, rollout_step
    from modelfleet.rollout.prometheus import PrometheusClient
    from modelfleet.rollout.state import StateStore
    from modelfleet.spec import load_spec

    spec = load_spec(args.model_yml)
    target = WeightsFile(Path(args.stack), "stack") if args.stack else WeightsFile(Path(args.settings), "settings")
    state_dir = Path(args.state_dir) if args.state_dir else target.path.resolve().parent / ".modelfleet-rollout"
    try:
        max_wait = parse_duration(args.max_wait, allow_zero=True) if args.max_wait is not None else None
    except ValueError as exc:
        raise UsageError(f"--max-wait: {exc}") from None
    result = rollout_step(spec, target, PrometheusClient(args.prometheus, timeout=args.timeout), StateStore(state_dir),
                          max_wait=max_wait)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        canary = f"canary {result.canary} at {result.weight}%" if result.canary else "no canary"
        print(f"{spec.name}: {result.decision}: {result.reason}")
        print(f"{target.path}: stable {result.stable}, {canary}{' (done)' if result.done else ''}")
    return 0


def add_rollout_parser(commands: Any) -> None:
    """Add ``rollout`` (one canary judgement for Kubernetes) to the ``modelfleet`` command's subparsers."""
    rollout = commands.add_parser("rollout", help="judge a Kubernetes canary on Prometheus and write the next weight "
                                  "(or promotion/rollback) into the stack or settings file")
    rollout.add_argument("model_yml", help="the model spec (model.yml): rollout steps and gates")
    rollout.add_argument("--prometheus", required=True, help="the cluster Prometheus' URL (http(s)://host:port)")
    where = rollout.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="Pulumi stack file of pulumi/k8s (Pulumi.<stack>.yaml)")
    where.add_argument("--settings", help="settings file of `modelfleet k8s render -f`")
    rollout.add_argument("--state-dir", help="rollout state (default .modelfleet-rollout beside the file; keep it "
                         "with the file so any CI runner resumes)")
    rollout.add_argument("--max-wait", help="longest extra wait for evidence in a step (default: one interval)")
    rollout.add_argument("--timeout", type=float, default=10.0, help="seconds per Prometheus query (default 10)")
    rollout.add_argument("--json", action="store_true", help="print the result as JSON")
    rollout.set_defaults(handler=_rollout)
