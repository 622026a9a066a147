"""The GPU hardware check (``make gpu-hardware-check`` on a GPU host): nvidia-smi parsing and DCGM collectors.

Prints what it found and exits 0 when every check that could run passed, 1 otherwise. gpu_facts itself runs
first, as the Ansible module (scripts/gpu-hardware-check.sh).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modelfleet.gpu import dcgm

REPO = Path(__file__).resolve().parents[3]
QUERY = ["--query-gpu=name,memory.total,mig.mode.current,persistence_mode,driver_version",
         "--format=csv,noheader,nounits"]


def _parse_smi(output: str) -> list[dict[str, Any]]:
    # The collection's parser (module_utils), importable once `make collection` made the link.
    sys.path.insert(0, str(REPO / ".cache" / "collections"))
    from ansible_collections.modelfleet.serving.plugins.module_utils.gpu_facts import (  # type: ignore[import-untyped]
        parse_nvidia_smi,
    )

    gpus: list[dict[str, Any]] = parse_nvidia_smi(output)
    return gpus


def check_nvidia_smi(binary: str) -> tuple[bool, dict[str, Any]]:
    """Run nvidia-smi's query and parse it; passes when it ran and every row parsed."""
    try:
        done = subprocess.run([binary, *QUERY], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, {"error": str(exc)}
    if done.returncode != 0:
        return False, {"error": (done.stderr or done.stdout).strip(), "rc": done.returncode}
    try:
        return True, {"raw": done.stdout.splitlines(), "parsed": _parse_smi(done.stdout)}
    except ValueError as exc:
        return False, {"raw": done.stdout.splitlines(), "error": str(exc)}


def role_collectors() -> tuple[list[str], dict[str, Any]]:
    defaults = yaml.safe_load((REPO / "roles/dcgm_exporter/defaults/main.yml").read_text())
    known = yaml.safe_load((REPO / "roles/dcgm_exporter/vars/main.yml").read_text())["_dcgm_exporter_fields"]
    return list(defaults["dcgm_exporter_collectors"]), known


def check_dcgm(url: str | None) -> tuple[bool, dict[str, Any]]:
    """The role's collectors are known fields; with a running exporter, which of them it serves."""
    collectors, known = role_collectors()
    unknown = dcgm.unknown_fields(collectors, known)
    report: dict[str, Any] = {"collectors": len(collectors), "unknown": unknown}
    passed = not unknown
    if url:
        try:
            with urllib.request.urlopen(url, timeout=15) as response:
                served = dcgm.exposition_fields(response.read().decode())
        except (OSError, urllib.error.URLError) as exc:
            report["exporter"] = {"url": url, "error": str(exc)}
            return False, report
        missing = sorted(set(collectors) - served - {n for n, f in known.items() if f["type"] == "label"})
        # Profiling (DCGM_FI_PROF_*) fields are unsupported on some GPUs (dcgm-exporter #22, #212): reported,
        # not failed; any other missing field fails.
        report["exporter"] = {"url": url, "served": len(served), "missing": missing}
        passed = passed and not [m for m in missing if not m.startswith("DCGM_FI_PROF_")]
    return passed, report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nvidia-smi", default="nvidia-smi", help="nvidia-smi to run")
    parser.add_argument("--dcgm-url", default=None, help="a running dcgm-exporter's /metrics, e.g. http://127.0.0.1:9400/metrics")
    args = parser.parse_args(argv)
    smi_ok, smi = check_nvidia_smi(args.nvidia_smi)
    dcgm_ok, dcgm_report = check_dcgm(args.dcgm_url)
    print(json.dumps({"nvidia_smi": {"passed": smi_ok, **smi}, "dcgm": {"passed": dcgm_ok, **dcgm_report}}, indent=2))
    return 0 if smi_ok and dcgm_ok else 1


if __name__ == "__main__":
    sys.exit(main())
