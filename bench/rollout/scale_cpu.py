"""Where a scale benchmark run's CPU time goes: the controller, the serving hosts, the container engine.

On this testbed all three share the machine's cores; on a real fleet each host's share runs on that host's own
CPU, in parallel with the others. :class:`CpuSplit` samples, before and after a run:

- the **controller**: CPU seconds of this process's finished children (``ansible-playbook`` and its workers,
  the ``docker exec`` clients they start), :func:`bench.common.children_cpu_s`;
- the **hosts**: the containers' cgroup CPU usage (the engine's one-shot stats, ``cpu_stats.cpu_usage``), which
  holds everything a module run does on a host (its Python, HAProxy's replies, systemd);
- the **engine**: ``dockerd`` and ``containerd`` (their own and their finished children's CPU time; shared with
  anything else using the engine meanwhile) and the hosts' ``containerd-shim`` processes, which carry every
  ``docker exec`` (on a real fleet: sshd on each host).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any

from bench.common import children_cpu_s

TICKS = os.sysconf("SC_CLK_TCK")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def container_cpu_s(docker_host: str, names: list[str]) -> dict[str, float]:
    """Container name -> its cgroup's CPU seconds so far (one-shot stats from the engine's API socket)."""
    if not docker_host.startswith("unix://"):
        raise ValueError(f"DOCKER_HOST {docker_host!r}: only a unix socket is supported")
    found = {}
    for name in names:
        connection = _UnixConnection(docker_host[len("unix://"):])
        try:
            connection.request("GET", f"/containers/{name}/stats?stream=false&one-shot=true")
            stats = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        found[name] = stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
    return found


def container_ids(docker_host: str, names: list[str]) -> list[str]:
    """The engine's full ids of the named containers."""
    ids = []
    for name in names:
        connection = _UnixConnection(docker_host[len("unix://"):])
        try:
            connection.request("GET", f"/containers/{name}/json")
            ids.append(str(json.loads(connection.getresponse().read())["Id"]))
        finally:
            connection.close()
    return ids


def engine_cpu_s(ids: list[str]) -> float:
    """CPU seconds (own + finished children's) of dockerd, containerd and the shims of the containers ``ids``."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        command = stat[stat.index("(") + 1:stat.rindex(")")]
        ours = command in ("dockerd", "containerd") or (
            command.startswith("containerd-shim") and any(i in cmdline for i in ids))
        if ours:
            fields = stat[stat.rindex(")") + 2:].split()
            total += sum(int(v) for v in fields[11:15]) / TICKS  # utime, stime, cutime, cstime
    return total


class CpuSplit:
    """CPU seconds of the controller, the hosts and the engine between :meth:`start` and :meth:`stop`."""

    def __init__(self, docker_host: str, hosts: list[str]) -> None:
        self.docker_host, self.hosts = docker_host, hosts
        self.ids = container_ids(docker_host, hosts)
        self.before: dict[str, Any] = {}

    def sample(self) -> dict[str, Any]:
        return {"controller": children_cpu_s(), "hosts": container_cpu_s(self.docker_host, self.hosts),
                "engine": engine_cpu_s(self.ids)}

    def start(self) -> None:
        self.before = self.sample()

    def stop(self, wall_s: float) -> dict[str, Any]:
        """The split: seconds per part, the hosts' mean and max per host, and each part's share of the total."""
        after = self.sample()
        per_host = {h: round(after["hosts"][h] - self.before["hosts"][h], 3) for h in self.hosts}
        split = {"controller_s": after["controller"] - self.before["controller"],
                 "hosts_s": sum(per_host.values()), "engine_s": after["engine"] - self.before["engine"]}
        total = sum(split.values())
        return {**{k: round(v, 3) for k, v in split.items()},
                "host_mean_s": round(split["hosts_s"] / len(self.hosts), 3),
                "host_max_s": max(per_host.values()), "per_host_s": per_host,
                "share": {k[:-2]: round(v / total, 3) if total else None for k, v in split.items()},
                "cores_busy": round(total / wall_s, 2) if wall_s else None}
