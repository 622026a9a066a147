"""``modelfleet k8s render MODEL_YML``: the model's Kubernetes objects as a YAML stream on stdout.

For GitOps repositories (Argo CD, Flux): the same objects ``pulumi/k8s`` creates, from the same builder, as
``helm template`` would print them. Bad settings exit with status 2 and one line per problem.
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
    sys.stdout.write(to_yaml(build(spec, settings)))
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
