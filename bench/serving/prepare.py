"""What a bench/serving run is set up with (stdlib only): the peers' virtualenvs, the models (reference
answers and request bodies, artifacts built when missing), the raw ONNX Runtime ceiling, and the description
of the machine and the software the report ends with.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from bench.common import ensure_venv as common_ensure_venv
from bench.common import host_environment, log, run_quiet
from bench.common import package_versions as common_package_versions
from bench.serving.grpc_load import LARGE_MODEL, h2load_version

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MISSING_ARTIFACT = 3  # ort_tools.py prepare: the artifact is not built yet

# What each peer's virtualenv gets (plus onnxruntime pinned to modelfleet's own release).
# The pins are the ones TESTBED.md found necessary: MLServer 1.7 breaks with starlette >= 0.47 and
# with uvloop >= 0.22 ("There is no current event loop"), and parses HTTP in pure Python without
# httptools; KServe 0.21 needs a newer starlette than MLServer, hence separate venvs; PyTriton's
# bundled Triton needs numpy < 2.
PEER_REQUIREMENTS: dict[str, list[str]] = {
    "mlserver": ["mlserver~=1.7.0", "starlette<0.47", "uvloop<0.22", "httptools"],
    "kserve": ["kserve~=0.21.0", "httptools"],
    "pytriton": ["nvidia-pytriton~=0.7.0", "numpy<2"],
}
PEER_IMPORTS = {"mlserver": "mlserver, onnxruntime, uvloop, httptools",
                "kserve": "kserve, onnxruntime, httptools",
                "pytriton": "pytriton.triton, onnxruntime"}
KEY_PACKAGES = ("mlserver", "kserve", "nvidia-pytriton", "tritonclient", "onnxruntime", "numpy", "starlette",
                "fastapi", "uvicorn", "uvloop", "httptools", "modelfleet")


def package_versions(python: str) -> dict[str, str]:
    return common_package_versions(python, KEY_PACKAGES)


def ensure_venv(name: str, base_python: str, ort_version: str, cache: Path, rebuild: bool) -> dict[str, Any]:
    """Create (or reuse) .cache/bench/venvs/<name>; returns its description or raises RuntimeError."""
    requirements = [*PEER_REQUIREMENTS[name], f"onnxruntime=={ort_version}"]
    return common_ensure_venv(cache / "venvs" / name, base_python, requirements, PEER_IMPORTS[name],
                              package_names=KEY_PACKAGES, rebuild=rebuild)


def prepare_model(model: str, mf_python: str, artifacts: Path, work: Path) -> dict[str, Any]:
    model_yml = ROOT / "examples" / model / "model.yml"
    if model == LARGE_MODEL:  # built on the fly (protocols.py), like the front-end comparison there
        code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); from protocols import "
                "build_large; build_large(Path(sys.argv[2]), Path(sys.argv[3]))")
        built = run_quiet([mf_python, "-c", code, str(HERE), str(work / "src"), str(work / "artifacts")], cwd=ROOT)
        if built.returncode != 0:
            raise SystemExit(f"building the large-input model failed:\n{built.stderr[-2000:]}")
        model_yml, artifacts = work / "src" / LARGE_MODEL / "model.yml", work / "artifacts"
    out_json = work / f"{model}.model.json"
    body = work / f"{model}.body.json"
    argv = [mf_python, str(HERE / "ort_tools.py"), "prepare", str(model_yml), str(artifacts), str(out_json),
            str(body)]
    result = run_quiet(argv)
    if result.returncode == MISSING_ARTIFACT:
        log(f"{model}: no artifact under {artifacts}; training and converting it")
        for step in ([mf_python, str(ROOT / "examples" / model / "train.py")],
                     [mf_python, "-m", "modelfleet.cli", "convert", str(model_yml), "--output", str(artifacts)]):
            built = run_quiet(step, cwd=ROOT)
            if built.returncode != 0:
                raise SystemExit(f"{shlex.join(step)} failed:\n{built.stdout[-2000:]}{built.stderr[-2000:]}")
        result = run_quiet(argv)
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed:\n{result.stderr[-3000:]}")
    info: dict[str, Any] = json.loads(out_json.read_text())
    return info


def ort_ceiling(model: dict[str, Any], mf_python: str, cpu: int, seconds: float) -> dict[str, Any]:
    argv = ["taskset", "-c", str(cpu), mf_python, str(HERE / "ort_tools.py"), "ceiling", model["onnx"],
            model["samples"], "--seconds", str(seconds), "--batch", "1", "--batch", "32"]
    result = run_quiet(argv)
    if result.returncode != 0:
        return {"error": result.stderr[-2000:]}
    ceiling: dict[str, Any] = json.loads(result.stdout)
    return ceiling


def environment(ctx: dict[str, Any]) -> dict[str, Any]:
    """The machine, the load generators, modelfleet's commit and every interpreter's key packages."""
    lscpu = run_quiet(["lscpu"]).stdout
    hypervisor = re.search(r"Hypervisor vendor:\s*(.*)", lscpu)
    wrk_version = run_quiet(["wrk", "-v"])
    wrk_text = wrk_version.stdout + wrk_version.stderr
    host = host_environment(["src/modelfleet/serve"], dirty_key="serve_dirty")
    return {
        **{key: host[key] for key in ("cpu_model", "cores")},
        "virtualization": f"{hypervisor.group(1).strip()} VM" if hypervisor else "bare metal or unknown",
        **{key: host[key] for key in ("kernel", "memory_gib")},
        "wrk": wrk_text.splitlines()[0] if wrk_text else "?",
        "h2load": h2load_version(),
        "onnxruntime": ctx["ort_version"],
        "git": host["git"],
        "packages": {"modelfleet": ctx["modelfleet_packages"],
                     **{name: v["packages"] for name, v in ctx["venvs"].items()}},
        "interpreters": {"modelfleet": ctx["modelfleet_interpreter"],
                         **{name: {"python": v["python"], "libdir": v["libdir"]} for name, v in ctx["venvs"].items()}},
    }
