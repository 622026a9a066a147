#!/usr/bin/env python3
"""Extract the OpenAPI schema of one served version from CRD manifests, for offline validation in the tests.

    scripts/vendor_crd_schemas.py OUT_DIR SOURCE_NOTE CRD.yaml:VERSION [...]

writes ``OUT_DIR/<kind>-<version>.json`` (descriptions dropped: they are most of the size) with a
``$comment`` naming where the CRD came from. Used for tests/unit/k8s_crd_schemas/ (see its README.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def main(argv: list[str]) -> int:
    out_dir, note, *sources = argv
    for source in sources:
        path, _, version = source.rpartition(":")
        crd = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        kind = crd["spec"]["names"]["kind"]
        served = {v["name"]: v for v in crd["spec"]["versions"]}
        schema = _strip(served[version]["schema"]["openAPIV3Schema"])
        schema = {"$comment": f"{crd['metadata']['name']} {version} from {note}", **schema}
        target = Path(out_dir) / f"{kind.lower()}-{version}.json"
        target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"{target}: {target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
