"""Model specs and settings shared by the Kubernetes tests (builder, schemas, CLI, Pulumi component).

No cluster, no Pulumi CLI and no cloud account exist here: these helpers only build specs and objects.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from modelfleet.k8s import K8sSettings, build, parse_settings
from modelfleet.spec import ModelSpec, parse_spec

REPO = Path(__file__).resolve().parents[1]
CREDIT_RISK = REPO / "examples" / "credit-risk" / "model.yml"
RULES_DIR = REPO / "monitoring" / "rules"
SHA_1 = "1" * 64
SHA_2 = "2" * 64


def spec_data(**serving: Any) -> dict[str, Any]:
    """The credit-risk example's spec as data, with ``serving`` fields replaced."""
    data = yaml.safe_load(CREDIT_RISK.read_text(encoding="utf-8"))
    data["serving"] = {**copy.deepcopy(data["serving"]), **serving}
    return data


def make_spec(**serving: Any) -> ModelSpec:
    return parse_spec(spec_data(**serving), CREDIT_RISK.parent, str(CREDIT_RISK))


def gpu_spec(gpus: int = 1) -> ModelSpec:
    return make_spec(resources={"gpus": gpus, "memory": "8Gi", "cpu": "2"}, providers=["cuda", "cpu"])


def settings(**fields: Any) -> K8sSettings:
    return parse_settings(fields)


def canary_settings(weight: int = 10, **fields: Any) -> K8sSettings:
    """A canary (version 2) next to the stable (version 1), artifacts downloaded with their checksums."""
    return parse_settings({"canary_version": "2", "canary_weight": weight,
                           "artifact": {"source": "url", "url": "https://models.example.com/{name}/{version}.tar.gz",
                                        "sha256": {"1": SHA_1, "2": SHA_2}}, **fields})


def objects(spec: ModelSpec | None = None, config: K8sSettings | None = None) -> list[dict[str, Any]]:
    return build(spec or make_spec(), config or settings())


def of_kind(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in items if o["kind"] == kind]


def one(items: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in of_kind(items, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    pod = deployment["spec"]["template"]["spec"]
    return next(c for c in [*pod["containers"], *pod.get("initContainers", [])] if c["name"] == name)
