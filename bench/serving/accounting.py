"""CPU accounting from /proc for bench/serving (stdlib only): who ran where while a point was measured.

- :func:`proc_stats`, :func:`group_members`, :func:`cmdline`, :func:`ps_snapshot`: processes and their CPU time;
- :func:`wait_quiet`: wait for the cores to be quiet before measuring;
- :class:`Window`: the CPU one measured run got (per core, the server's process group, the load generator,
  everyone else); :func:`disturbance` sums up how much others got in the way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import children_cpu_s, cpu_ticks, run_quiet

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    pgrp: int
    ticks: int  # utime + stime
    cpu: int  # processor it last ran on


def proc_stats() -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1: raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2:].split()
        # rest[0] is field 3 (state): pgrp is field 5, utime/stime 14/15, processor 39.
        stats[int(entry.name)] = ProcStat(int(entry.name), comm, int(rest[2]), int(rest[11]) + int(rest[12]),
                                          int(rest[36]))
    return stats


def group_members(pgid: int, stats: dict[int, ProcStat] | None = None) -> list[ProcStat]:
    return [s for s in (stats or proc_stats()).values() if s.pgrp == pgid]


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
    return " ".join(raw.replace("\0", " ").split())


def ps_snapshot(limit: int = 12) -> list[dict[str, Any]]:
    """The processes with the most CPU time since they started (ps-like), with the core they last ran on."""
    result = run_quiet(["ps", "-eo", "pid,psr,pcpu,etimes,comm", "--sort=-pcpu", "--no-headers"])
    rows = []
    for line in result.stdout.splitlines()[:limit]:
        pid, psr, pcpu, etimes, comm = line.split(None, 4)
        rows.append({"pid": int(pid), "cpu": int(psr), "pcpu_lifetime": float(pcpu), "elapsed_s": int(etimes),
                     "comm": comm, "cmd": cmdline(int(pid))[:160]})
    return rows


def wait_quiet(cpus: Sequence[int], max_other: float, max_wait: float, pgid: int | None = None) -> dict[str, Any]:
    """Wait until other processes use at most max_other % of each core (2 s samples), at most max_wait s.

    The machine is shared: tests, builds and other benchmarks come and go. Nothing of the benchmark
    but an idle server (process group pgid, subtracted) runs while this samples.
    """
    started = time.monotonic()
    while True:
        cores0, procs0 = cpu_ticks(), proc_stats()
        time.sleep(2.0)
        cores1, procs1 = cpu_ticks(), proc_stats()
        own = 0.0
        if pgid is not None:
            own = 100.0 * sum(p.ticks - procs0[p.pid].ticks for p in group_members(pgid, procs1)
                              if p.pid in procs0) / CLK_TCK / 2.0
        busy = {}
        for cpu in cpus:
            b1, t1, _ = cores1[f"cpu{cpu}"]
            b0, t0, _ = cores0[f"cpu{cpu}"]
            busy[f"cpu{cpu}"] = round(100.0 * (b1 - b0) / max(1, t1 - t0), 1)
        other = {name: max(0.0, value - (own if name == f"cpu{cpus[0]}" else 0.0)) for name, value in busy.items()}
        waited = time.monotonic() - started
        if max(other.values()) <= max_other or waited >= max_wait:
            return {"waited_s": round(waited, 1), "other_pct": {k: round(v, 1) for k, v in other.items()},
                    "quiet": max(other.values()) <= max_other}


class Window:
    """CPU used during one wrk run: per core, by the server's process group, by wrk, by everything else."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.t0 = time.monotonic()
        self.cores0 = cpu_ticks()
        self.procs0 = proc_stats()
        self.children0 = children_cpu_s()

    def finish(self, server_cpu: int, load_cpu: int) -> dict[str, Any]:
        seconds = time.monotonic() - self.t0
        cores1 = cpu_ticks()
        procs1 = proc_stats()
        wrk_s = children_cpu_s() - self.children0
        server_ticks = sum(p.ticks - self.procs0[p.pid].ticks if p.pid in self.procs0 else p.ticks
                           for p in group_members(self.pgid, procs1))
        cores: dict[str, float] = {}
        steal: dict[str, float] = {}
        for name, (busy, total, stolen) in cores1.items():
            busy0, total0, stolen0 = self.cores0.get(name, (busy, total, stolen))
            cores[name] = 100.0 * (busy - busy0) / max(1, total - total0)
            steal[name] = 100.0 * (stolen - stolen0) / max(1, total - total0)
        server_pct = 100.0 * server_ticks / CLK_TCK / seconds
        wrk_pct = 100.0 * wrk_s / seconds
        others: list[dict[str, Any]] = []
        for pid, after in procs1.items():
            before = self.procs0.get(pid)
            if after.pgrp == self.pgid or pid == os.getpid():
                continue
            # A process that started during the window counts whole; one that ended in it is not seen.
            pct = 100.0 * (after.ticks - (before.ticks if before else 0)) / CLK_TCK / seconds
            if pct >= 0.5:
                others.append({"pid": pid, "comm": after.comm, "cpu": after.cpu, "pct": round(pct, 1),
                               "cmd": cmdline(pid)[:160]})
        others.sort(key=lambda o: -o["pct"])
        server_core = cores.get(f"cpu{server_cpu}", 0.0)
        load_core = cores.get(f"cpu{load_cpu}", 0.0)
        return {
            "seconds": round(seconds, 3),
            "core_busy_pct": {k: round(v, 1) for k, v in cores.items()},
            "core_steal_pct": {k: round(v, 1) for k, v in steal.items()},  # time the hypervisor took away
            "server_cpu_pct": round(server_pct, 1),
            "server_cpu_s": round(server_ticks / CLK_TCK, 2),
            "wrk_cpu_pct": round(wrk_pct, 1),
            "other_on_server_core_pct": round(max(0.0, server_core - server_pct), 1),
            "other_on_load_core_pct": round(max(0.0, load_core - wrk_pct), 1),
            "other_processes": others[:8],  # those that ran while wrk did (excluding the server and wrk)
        }


def disturbance(cpu: dict[str, Any], server_cpu: int) -> float:
    """How much others got in the way: CPU they took on the server's core or on wrk's (a wrk that waits
    for its core leaves the server idle), or time the hypervisor took from the server's core."""
    return float(max(cpu["other_on_server_core_pct"], cpu["other_on_load_core_pct"],
                     cpu.get("core_steal_pct", {}).get(f"cpu{server_cpu}", 0.0)))
