"""bench/rollout/scale.py — how a canary rollout's own cost grows with the number of serving hosts.

For each host count N it starts N light systemd hosts with the project's harness (scripts/fleet.sh, named
``mfs-<i>`` at 172.30.0.100 upward on the fleet network, away from the demo, fleet and provision hosts), runs
the real router role (HAProxy) on them in front of two STAND-IN backends (bench/rollout/scale_fleet/standin_backend.py,
not modelfleet's model server), then times the real rollout role (``modelfleet.serving.model_rollout`` and
``router_weight``, driven by ``ansible-playbook``) over a 3-step rollout whose gates read a STAND-IN Prometheus
(bench/rollout/scale_standins.py) that passes them at once. It measures

- the weight change of each step: when every host's HAProxy reported the new weight (polled through its
  Prometheus endpoint), the spread between the first and the last host (target: within 2 s), and how long
  the playbook's weight task took;
- the rollout's overhead beyond its waits: wall time minus steps x interval, per step (target < 10 s at 24 hosts),

and how both grow with N (the log-log slope between the smallest and the largest N; below 1 is sub-linear).

    python bench/rollout/scale.py --hosts 2,8,24 [--repeat 3] [--interval 5s] [--keep]

Prints a markdown table; the figures go to .cache/bench/rollout-scale.json. Not a test (timings). The hosts
and the generated inventories are removed at the end (``--keep`` leaves the last N's hosts up).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import ROOT, host_environment, loadavg, log, run_quiet
from bench.rollout.scale_cpu import CpuSplit
from bench.rollout.scale_standins import StandInPrometheus, WeightWatcher
from modelfleet.durations import parse_duration

HERE = ROOT / "bench" / "rollout" / "scale_fleet"
WORK = ROOT / ".cache" / "bench" / "scale"
OUTPUT = ROOT / ".cache" / "bench" / "rollout-scale.json"
MODEL = "scale-standin"
BASE_IMAGE = "local/debian12-systemd:latest"
IMAGE = "local/modelfleet-scale-router:latest"
FIRST_ADDRESS = 100
STEPS = (10.0, 50.0, 100.0)
SPREAD_TARGET_S, OVERHEAD_TARGET_S = 2.0, 10.0


def docker_env() -> dict[str, str]:
    """The environment with DOCKER_HOST of the harness's engine (scripts/testbed.sh env)."""
    line = run_quiet([str(ROOT / "scripts" / "testbed.sh"), "env"]).stdout.strip()
    return {**os.environ, "DOCKER_HOST": line.split("=", 1)[1]}


def checked(argv: list[str], what: str, **kwargs: Any) -> str:
    done = run_quiet(argv, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout


def ensure_image(env: dict[str, str]) -> None:
    """The fleet image plus HAProxy and socat, so the router role installs nothing per host (one apt run)."""
    checked([str(ROOT / "scripts" / "testbed.sh"), "up"], "scripts/testbed.sh up")
    if run_quiet(["docker", "image", "inspect", IMAGE], env=env).returncode == 0:
        return
    log(f"building {IMAGE}: {BASE_IMAGE} + haproxy, socat (once)")
    name = "mfs-image-build"
    run_quiet(["docker", "rm", "-f", name], env=env)
    checked(["docker", "run", "-d", "--name", name, "--network", os.environ.get("FLEET_NETWORK", "modelfleet"),
             "--ip", f"172.30.0.{FIRST_ADDRESS - 1}", "--cap-add", "SYS_ADMIN", "--cgroupns=private",
             "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "--stop-signal", "SIGRTMIN+3",
             BASE_IMAGE, "/sbin/init"], "starting the image build host", env=env)
    try:
        # Three tries: the archive's signature check fails now and then here ("invalid signature").
        checked(["docker", "exec", name, "sh", "-c", "for try in 1 2 3; do apt-get update -q && break; sleep 5; done"
                 " && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy socat"],
                "apt-get install haproxy", env=env)
        checked(["docker", "commit", name, IMAGE], "docker commit", env=env)
    finally:
        run_quiet(["docker", "rm", "-f", name], env=env)


def write_inventory(hosts: int) -> tuple[Path, dict[str, str]]:
    if FIRST_ADDRESS + hosts > 255:
        raise SystemExit(f"--hosts {hosts}: at most {255 - FIRST_ADDRESS} hosts fit above 172.30.0.{FIRST_ADDRESS}")
    addresses = {f"mfs-{i + 1}": f"172.30.0.{FIRST_ADDRESS + i}" for i in range(hosts)}
    inventory = {"all": {
        "vars": {"ansible_connection": "community.docker.docker", "ansible_python_interpreter": "/usr/bin/python3"},
        "hosts": {"localhost": {"ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
        "children": {"serving": {"hosts": {name: {"fleet_address": address} for name, address in addresses.items()}}},
    }}
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"hosts-{hosts}.yml"
    path.write_text(json.dumps(inventory, indent=1))  # JSON is YAML: fleet.sh and Ansible read it
    return path, addresses


def forks_setting() -> int:
    """The forks ansible-playbook runs with: $ANSIBLE_FORKS, else ansible.cfg's, else Ansible's default 5."""
    if os.environ.get("ANSIBLE_FORKS"):
        return int(os.environ["ANSIBLE_FORKS"])
    config = configparser.ConfigParser()
    config.read(ROOT / "ansible.cfg")
    return config.getint("defaults", "forks", fallback=5)


def playbook(inventory: Path, name: str, env: dict[str, str], extra: dict[str, Any] | None = None,
             ) -> tuple[float, dict[str, Any]]:
    """Run bench/rollout/scale_fleet/<name> with the json callback; (wall seconds, the callback's document)."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(HERE / name)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    run_env = {**env, "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_NOCOLOR": "1",
               "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    started = time.monotonic()
    done = run_quiet(argv, cwd=ROOT, env=run_env)
    wall = time.monotonic() - started
    try:
        document = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        document = {}
    if done.returncode != 0:
        failed = "\n".join(failures(document)) or f"{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{failed}")
    return wall, document


def failures(document: dict[str, Any]) -> list[str]:
    """``host: task: message`` of every failed or unreachable task result in a json callback document."""
    found = []
    for play in document.get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                if result.get("failed") or result.get("unreachable"):
                    found.append(f"{host}: {task.get('task', {}).get('name')}: {result.get('msg', '')}")
    return found


def task_spans(document: dict[str, Any], name: str = "") -> list[tuple[str, float]]:
    """(task name, seconds from its start to its end on the last host) of every task run whose name contains
    ``name`` (role prefix included, e.g. ``modelfleet.serving.rollout : ...``), in order."""
    spans = []
    for play in document.get("plays", []):
        for task in play.get("tasks", []):
            info = task.get("task", {})
            span = info.get("duration", {})
            if name in str(info.get("name", "")) and span.get("end") and span.get("start"):
                spans.append((str(info["name"]), _iso(span["end"]) - _iso(span["start"])))
    return spans


def time_by_task(document: dict[str, Any]) -> dict[str, float]:
    """Seconds spent per task name over the whole run (where the overhead goes), largest first."""
    totals: dict[str, float] = {}
    for name, seconds in task_spans(document):
        totals[name] = totals.get(name, 0.0) + seconds
    return dict(sorted(((k, round(v, 3)) for k, v in totals.items()), key=lambda kv: -kv[1]))


def _iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def weight_changes(watcher: WeightWatcher) -> list[dict[str, Any]]:
    """Per step: when the first and the last host showed the step's weight, and the spread between them."""
    result = []
    for index, weight in enumerate(STEPS):
        seen = {host: next((at for at, w in trace.changes if w == int(weight)), None)
                for host, trace in watcher.traces.items()}
        times = [at for at in seen.values() if at is not None]
        result.append({"step": index + 1, "weight": weight, "hosts_seen": len(times), "hosts": len(seen),
                       "spread_s": (max(times) - min(times)) if times else None,
                       "missing": sorted(h for h, at in seen.items() if at is None)})
    return result


def one_rollout(hosts: int, inventory: Path, addresses: dict[str, str], env: dict[str, str], interval: float,
                poll: float) -> dict[str, Any]:
    setup_s, _ = playbook(inventory, "setup.yml", env)
    log(f"N={hosts}: hosts set up in {setup_s:.1f} s")
    state_dir = WORK / f"rollouts-{hosts}"
    shutil.rmtree(state_dir, ignore_errors=True)
    prometheus = StandInPrometheus(list(addresses))
    watcher = WeightWatcher(addresses, MODEL, "green", interval=poll)
    watcher.start()
    time.sleep(max(0.5, 3 * poll))  # every host's starting weight read before anything changes
    cpu = CpuSplit(env["DOCKER_HOST"], list(addresses))
    try:
        cpu.start()
        wall, document = playbook(inventory, "rollout.yml", env, {
            "scale_prometheus_url": prometheus.url, "scale_state_dir": str(state_dir),
            "scale_rollout_overrides": {"steps": list(STEPS), "interval": f"{interval:g}s"}})
        cpu_split = cpu.stop(wall)
    finally:
        watcher.stop()
        prometheus.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
    changes = weight_changes(watcher)
    weight_tasks = [s for _, s in task_spans(document, "Set the canary weight on every host")]
    analyses = [s for _, s in task_spans(document, "Analyse the step in Prometheus")]
    overhead = wall - len(STEPS) * interval
    return {"setup_s": setup_s, "wall_s": wall, "overhead_s": overhead, "overhead_per_step_s": overhead / len(STEPS),
            "weight_task_s": weight_tasks, "analysis_s": analyses, "weight_changes": changes,
            "max_spread_s": max((c["spread_s"] for c in changes if c["spread_s"] is not None), default=None),
            "all_hosts_seen": all(c["hosts_seen"] == c["hosts"] for c in changes),
            "poll_errors": sum(t.errors for t in watcher.traces.values()),
            "stand_in_queries": len(prometheus.queries), "time_by_task_s": time_by_task(document),
            "cpu_s": cpu_split}


def measure(hosts: int, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    inventory, addresses = write_inventory(hosts)
    fleet = str(ROOT / "scripts" / "fleet.sh")
    fleet_env = {**env, "TESTBED_IMAGE": IMAGE}
    try:
        started = time.monotonic()
        checked([fleet, "up", str(inventory)], f"fleet.sh up ({hosts} hosts)", env=fleet_env)
        up_s = time.monotonic() - started
        log(f"N={hosts}: {hosts} hosts up in {up_s:.1f} s")
        runs = []
        for repeat in range(args.repeat):
            log(f"N={hosts}: rollout {repeat + 1}/{args.repeat} (load {loadavg()[0]:.1f})")
            runs.append(one_rollout(hosts, inventory, addresses, env, args.interval_s, args.poll))
            run = runs[-1]
            cpu = run["cpu_s"]
            log(f"N={hosts}: wall {run['wall_s']:.1f} s, overhead/step {run['overhead_per_step_s']:.2f} s, "
                f"max spread {run['max_spread_s']} s; CPU s: controller {cpu['controller_s']:.1f}, "
                f"hosts {cpu['hosts_s']:.1f} (max {cpu['host_max_s']:.1f} per host), engine {cpu['engine_s']:.1f}")
    finally:
        if not args.keep:
            run_quiet([fleet, "down", str(inventory)], env=fleet_env)
            inventory.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                WORK.rmdir()  # only when nothing else is left in it
    return {"hosts": hosts, "hosts_up_s": up_s, "runs": runs, "summary": summarize(runs)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}

    spreads = [c["spread_s"] for r in runs for c in r["weight_changes"] if c["spread_s"] is not None]
    return {"overhead_per_step_s": stats([r["overhead_per_step_s"] for r in runs]),
            "weight_task_s": stats([s for r in runs for s in r["weight_task_s"]]),
            "spread_s": stats(spreads) if spreads else None,
            "cpu_s": {part: stats([r["cpu_s"][part] for r in runs])
                      for part in ("controller_s", "hosts_s", "host_max_s", "engine_s")},
            "all_hosts_seen": all(r["all_hosts_seen"] for r in runs)}


def growth(results: list[dict[str, Any]], key: str) -> float | None:
    """log-log slope of the median of ``key`` between the smallest and the largest N (1 = linear)."""
    if len(results) < 2:
        return None
    first, last = results[0], results[-1]
    a, b = first["summary"][key]["median"], last["summary"][key]["median"]
    if a <= 0 or b <= 0:
        return None
    return math.log(b / a) / math.log(last["hosts"] / first["hosts"])


def table(results: list[dict[str, Any]], interval: float) -> str:
    lines = ["| hosts | rollouts | overhead per step, s (median, min–max) | weight task, s (median, max) "
             "| weight spread across hosts, s (median, max) | all hosts seen "
             "| CPU s: controller, hosts (max per host), engine |",
             "|---:|---:|---|---|---|---|---|"]
    for result in results:
        s = result["summary"]
        o, w, sp = s["overhead_per_step_s"], s["weight_task_s"], s["spread_s"]
        spread = f"{sp['median']:.2f}, {sp['max']:.2f}" if sp else "n/a"
        c = {part: v["median"] for part, v in s["cpu_s"].items()}
        cpu = f"{c['controller_s']:.0f}, {c['hosts_s']:.0f} ({c['host_max_s']:.1f}), {c['engine_s']:.0f}"
        lines.append(f"| {result['hosts']} | {o['n']} | {o['median']:.2f} ({o['min']:.2f}–{o['max']:.2f}) "
                     f"| {w['median']:.2f}, {w['max']:.2f} | {spread} | {'yes' if s['all_hosts_seen'] else 'NO'} "
                     f"| {cpu} |")
    slope_o, slope_w = growth(results, "overhead_per_step_s"), growth(results, "weight_task_s")
    if slope_o is not None and slope_w is not None:
        lines.append("")
        lines.append(f"Growth from {results[0]['hosts']} to {results[-1]['hosts']} hosts (log-log slope, 1 = linear): "
                     f"overhead per step {slope_o:.2f}, weight task {slope_w:.2f}.")
    lines.append(f"Steps {', '.join(f'{w:g}' for w in STEPS)} %, interval {interval:g} s; targets: spread <= "
                 f"{SPREAD_TARGET_S:g} s, overhead per step < {OVERHEAD_TARGET_S:g} s at 24 hosts.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="2,8,24", help="host counts, comma-separated (default 2,8,24)")
    parser.add_argument("--repeat", type=int, default=1, help="rollouts per host count (default 1)")
    parser.add_argument("--interval", default="5s", help="each step's interval (default 5s)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between weight reads per host (0.1)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"JSON results (default {OUTPUT})")
    parser.add_argument("--keep", action="store_true", help="leave the last host count's hosts up")
    args = parser.parse_args(argv)
    try:
        counts = sorted({int(n) for n in args.hosts.split(",") if n.strip()})
        args.interval_s = parse_duration(args.interval)
    except ValueError as exc:
        parser.error(f"--hosts is a comma-separated list of host counts, --interval a duration: {exc}")
    if not counts or counts[0] < 1 or args.repeat < 1 or args.poll <= 0:
        parser.error("--hosts needs counts >= 1, --repeat >= 1 and --poll > 0")
    if counts[-1] > 255 - FIRST_ADDRESS:
        parser.error(f"--hosts: at most {255 - FIRST_ADDRESS} hosts fit above 172.30.0.{FIRST_ADDRESS}")
    forks = forks_setting()
    if forks < counts[-1]:
        log(f"warning: forks = {forks} < {counts[-1]} hosts: Ansible works through the hosts in batches")
    env = docker_env()
    ensure_image(env)
    results = [measure(n, env, args) for n in counts]
    document = {"benchmark": "rollout-scale", "steps": list(STEPS), "interval_s": args.interval_s,
                "poll_s": args.poll, "forks": forks, "environment": host_environment(), "loadavg_end": loadavg(),
                "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1))
    print(table(results, args.interval_s))
    log(f"figures in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
