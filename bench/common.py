"""What every benchmark runner shares (bench/serving, bench/drift, and the ones to come): stdlib only.

The runners are started by path (``python bench/<name>/run.py``, see the Makefile); each puts the
checkout's root on ``sys.path`` first and then ``from bench.common import ...``.

- logging and subprocesses: :func:`log`, :func:`run_quiet`, :func:`tail`;
- the machine: :func:`loadavg`, :func:`cpu_ticks`, :func:`children_cpu_s`, :func:`host_environment`;
- taking turns on pinned cores: :func:`cores_lock` (``.cache/bench/cores.lock``; any other benchmark can
  join in with ``flock .cache/bench/cores.lock COMMAND``), :func:`terminate_as_interrupt`;
- interpreters and the peers' virtualenvs: :func:`default_modelfleet_python`, :func:`interpreter_info`,
  :func:`package_versions`, :func:`ensure_venv`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_quiet(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- the machine


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_ticks(*, all_cores: bool = False) -> dict[str, tuple[int, int, int]]:
    """``cpuN`` (and ``cpu``, all cores together, with ``all_cores``) -> (busy, total, steal) jiffies from
    /proc/stat; steal (the hypervisor running someone else) is not busy."""
    result = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d* " if all_cores else r"cpu\d+ ", line):
            name, *values = line.split()
            numbers = [int(v) for v in values[:8]]
            idle, steal = numbers[3] + numbers[4], numbers[7]
            result[name] = (sum(numbers) - idle - steal, sum(numbers), steal)
    return result


def children_cpu_s() -> float:
    """CPU seconds (user + system) of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def host_environment(dirty_paths: Sequence[str] = (), dirty_key: str = "dirty") -> dict[str, Any]:
    """CPU model, cores, kernel, memory, Python, and the checkout's commit (``git.<dirty_key>``: uncommitted
    changes under ``dirty_paths``, under the key earlier results used)."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    meminfo = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    commit = run_quiet(["git", "-C", str(ROOT), "rev-parse", "HEAD"]).stdout.strip()
    dirty = run_quiet(["git", "-C", str(ROOT), "status", "--porcelain", "--", *dirty_paths]).stdout
    return {"cpu_model": model.group(1).strip() if model else platform.processor(), "cores": os.cpu_count(),
            "kernel": platform.release(), "memory_gib": round(int(meminfo.group(1)) / 2**20, 1) if meminfo else None,
            "python": platform.python_version(),
            "git": {"commit": commit, dirty_key: [ln.strip() for ln in dirty.splitlines() if ln.strip()]}}


# --------------------------------------------------------------------------- taking turns


@contextlib.contextmanager
def cores_lock(path: Path, timeout: float) -> Iterator[dict[str, Any]]:
    """Hold an exclusive flock on ``path`` while measuring, so that benchmarks pinning cores take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with path.open("a") as handle:
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started > timeout:
                    raise SystemExit(f"another benchmark held {path} for {timeout:.0f} s; giving up") from None
                if not announced:
                    log(f"another benchmark holds {path}; waiting (up to {timeout:.0f} s)")
                    announced = True
                time.sleep(1.0)
        try:
            yield {"path": str(path), "waited_s": round(time.monotonic() - started, 1)}
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile: the runner stops what it runs and reports what it measured."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- interpreters and virtualenvs


def default_modelfleet_python() -> str:
    """An interpreter with modelfleet installed: /work/.venv-dev's, else the checkout's .venv, else python3."""
    for candidate in (Path("/work/.venv-dev/bin/python"), ROOT / ".venv" / "bin" / "python"):
        if candidate.exists():
            return str(candidate)
    return "python3"


def interpreter_info(python: str) -> dict[str, str]:
    """``executable``, ``version`` and ``libdir`` of ``python``; exits when it cannot run."""
    code = ("import json, sys, sysconfig; print(json.dumps({'executable': sys.executable, "
            "'version': sys.version.split()[0], 'libdir': sysconfig.get_config_var('LIBDIR') or ''}))")
    result = run_quiet([python, "-c", code])
    if result.returncode != 0:
        raise SystemExit(f"{python}: cannot run: {result.stderr.strip()}")
    info: dict[str, str] = json.loads(result.stdout)
    return info


def package_versions(python: str, names: Sequence[str], *, with_python: bool = False) -> dict[str, str]:
    """Installed versions of ``names`` in ``python`` (missing ones left out; ``python`` itself if asked)."""
    code = ("import json, importlib.metadata as m, sys\n"
            f"out = {{'python': sys.version.split()[0]}} if {with_python} else {{}}\n"
            f"for n in {list(names)!r}:\n    try:\n        out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError:\n        pass\nprint(json.dumps(out))")
    result = run_quiet([python, "-c", code])
    versions: dict[str, str] = json.loads(result.stdout) if result.returncode == 0 else {}
    return versions


def ensure_venv(venv: Path, base_python: str, requirements: Sequence[str], import_check: str, *,
                package_names: Sequence[str], with_python: bool = False, upgrade_pip: bool = False,
                env: Mapping[str, str] | None = None, rebuild: bool = False) -> dict[str, Any]:
    """Create (or reuse, when its stamp matches) the virtualenv ``venv`` with ``requirements``; check that
    ``import_check`` imports there. Returns its path, python, whether reused, install time, package versions
    and libdir; raises RuntimeError (with the install log's last lines) when a step fails."""
    python = venv / "bin" / "python"
    base = interpreter_info(base_python)
    stamp = {"requirements": list(requirements), "base_python": base["executable"], "base_version": base["version"]}
    stamp_file = venv / ".bench-stamp.json"

    def described(reused: bool, install_s: float) -> dict[str, Any]:
        return {"path": str(venv), "python": str(python), "reused": reused, "install_s": install_s,
                "packages": package_versions(str(python), package_names, with_python=with_python),
                "libdir": interpreter_info(str(python))["libdir"]}

    if not rebuild and python.exists() and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return described(True, 0.0)
    log(f"preparing virtualenv {venv} ({' '.join(requirements)}); this can take a few minutes")
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    install_log = venv.parent / f"{venv.name}.install.log"
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    steps = [[base["executable"], "-m", "venv", str(venv)], *([[*pip, "-U", "pip"]] if upgrade_pip else []),
             [*pip, *requirements], [str(python), "-c", f"import {import_check}"]]
    with install_log.open("w") as out:
        for argv in steps:
            out.write(f"$ {shlex.join(argv)}\n")
            out.flush()
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False,
                                    env={**os.environ, **(env or {})})
            if result.returncode != 0:
                raise RuntimeError(f"`{shlex.join(argv)}` exited {result.returncode}; last lines of "
                                   f"{install_log}:\n{tail(install_log, 15)}")
    (venv / "freeze.txt").write_text(run_quiet([str(python), "-m", "pip", "freeze"]).stdout)
    stamp_file.write_text(json.dumps(stamp))
    return described(False, round(time.monotonic() - started, 1))
