"""`make demo`: credit-risk on the local fleet, then a canary rollout of v2 under live traffic.

Runs the real playbooks against inventories/local (two serving hosts, one monitoring host; scripts/fleet.sh
made them): monitoring.yml, deploy_model.yml for v1 (a first deploy), then deploy_model.yml for a retrained
v2 while clients send requests through both routers. Ansible's output shows every step and decision; at the
end this prints the outcome, the client-side count of failed requests and where to look.
Run again: the fleet is reused; v1 is restored with rollback_model.yml and v2 rolled out once more.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MODEL = "credit-risk"
sys.path.insert(0, str(ROOT / "tests"))

from harness import load_example  # noqa: E402


def example(name: str) -> ModuleType:
    """examples/credit-risk/<name>.py as a module (through the test harness's one loader)."""
    return load_example(ROOT / "examples" / MODEL / f"{name}.py")


def fleet(inventory: Path) -> tuple[list[tuple[str, str]], str]:
    """(name, address) of the serving hosts and the monitoring host's address, from the inventory."""
    groups = yaml.safe_load(inventory.read_text())["all"]["children"]
    serving = [(name, hostvars["fleet_address"]) for name, hostvars in groups["serving"]["hosts"].items()]
    monitoring = next(iter(groups["monitoring"]["hosts"].values()))["fleet_address"]
    return serving, monitoring


def playbook(inventory: Path, name: str, *extra: str, check: bool = True) -> int:
    print(f"\n=== ansible-playbook playbooks/{name} {' '.join(extra)}", flush=True)
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / name), *extra],
                            cwd=ROOT, check=False)
    if check and result.returncode != 0:
        sys.exit(f"demo: playbooks/{name} failed (exit {result.returncode})")
    return result.returncode


def release(host: str) -> dict[str, Any]:
    result = subprocess.run(["docker", "exec", host, "cat", f"/var/lib/modelfleet/releases/{MODEL}.json"],
                            capture_output=True, text=True, check=False)
    data: dict[str, Any] = json.loads(result.stdout) if result.returncode == 0 else {}
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", type=Path, default=ROOT / "inventories" / "local" / "hosts.yml")
    args = parser.parse_args()
    inventory = args.inventory.resolve()
    serving, monitoring = fleet(inventory)
    routers = [f"http://{address}:8000" for _, address in serving]
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".cache" / "collections"))

    playbook(inventory, "monitoring.yml")
    spec_v1 = ROOT / "examples" / MODEL / "model.yml"
    current = release(serving[0][0]).get("stable") or {}
    if current.get("version") not in (None, "1"):
        playbook(inventory, "rollback_model.yml", "-e", f"model={MODEL}")
        current = release(serving[0][0]).get("stable") or {}
    if current.get("version") != "1":
        playbook(inventory, "deploy_model.yml", "-e", f"model_spec={spec_v1}")

    spec_v2 = example("variants").make_variant("good", "2", ROOT / ".cache" / "demo" / "credit-risk-v2")
    traffic = example("traffic").Traffic(routers, clients=4, rate_per_client=25.0, seed=2024)
    traffic.start()
    time.sleep(5)
    started = time.monotonic()
    # A demo-sized rollout: three steps of 30 s at 100 requests/s (the gates are the spec's). The gates judge a
    # p99 only on a few hundred requests per version, so the first step is 20%, not the spec's 10%.
    overrides = json.dumps({"rollout_overrides": {"steps": [20, 50, 100], "interval": "30s", "min_requests": 100}})
    code = playbook(inventory, "deploy_model.yml", "-e", f"model_spec={spec_v2}", "-e", overrides, check=False)
    took = time.monotonic() - started
    time.sleep(3)
    traffic.stop()

    state_file = ROOT / ".cache" / "rollouts" / f"{MODEL}.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    failed = traffic.failed()
    print("\n=== modelfleet demo")
    print(f"rollout of {MODEL} v2: {state.get('phase', 'unknown')} in {took:.0f} s ({state.get('last_reason', '')})")
    for entry in state.get("history", []):
        print(f"  step {entry['step']} at {entry['weight']:g}%: {entry['decision']}: {entry['reason']}")
    print(f"client requests: {sum(traffic.outcomes.values())}, failed: {failed} {dict(traffic.outcomes)}; "
          f"answered by version: {dict(traffic.versions)}")
    for host, address in serving:
        print(f"  {host}: stable v{(release(host).get('stable') or {}).get('version')}, "
              f"endpoint http://{address}:8000/v2/models/{MODEL}/infer, router metrics http://{address}:8404/metrics, "
              f"drift http://{address}:9108/metrics")
    print(f"Prometheus: http://{monitoring}:9090 (alerts: /alerts), Alertmanager: http://{monitoring}:9093")
    print("try: curl -s -XPOST -H 'content-type: application/json' "
          f"{routers[0]}/v2/models/{MODEL}/infer -d '{{\"inputs\":[{{\"name\":\"x\",\"datatype\":\"FP32\","
          "\"shape\":[1,8],\"data\":[35,52000,0.3,4,0,0.4,1,0]}]}'")
    print("remove the fleet: make demo-down")
    return 0 if code == 0 and state.get("phase") == "promoted" else 1


if __name__ == "__main__":
    sys.exit(main())
