"""Lambda deployment packages for one artifact: a zip (when it fits) and a container image context.

Both hold the same task tree: modelfleet and its runtime dependencies as manylinux wheels for Lambda's
Python (installed with ``pip install --target --platform``: no compiler, no Docker), ``awslambdaric``,
and the verified artifact under ``model/``. The zip is written only when the unzipped tree fits
Lambda's 250 MB limit; the image has no such limit (10 GB). The image follows the documented
alternative-base-image pattern: any base with a matching ``python3`` (``--base-image``), the runtime
interface client as entrypoint, and — when ``--rie`` is given — the Runtime Interface Emulator, used
when the container runs outside Lambda (no ``AWS_LAMBDA_RUNTIME_API``), for local tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from modelfleet.artifact import verify_artifact
from modelfleet.errors import ModelfleetError

#: Lambda's limit on a zip package's unzipped size (function and layers together).
ZIP_UNZIPPED_LIMIT = 250 * 1000 * 1000
HANDLER = "modelfleet.serverless.aws_lambda.handler"
ENTRY = """#!/bin/sh
# Outside Lambda (no runtime API), run under the Runtime Interface Emulator when the image has it.
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ] && [ -x /usr/local/bin/aws-lambda-rie ]; then
  exec /usr/local/bin/aws-lambda-rie python3 -m awslambdaric "$@"
fi
exec python3 -m awslambdaric "$@"
"""
DOCKERFILE = """# A modelfleet Lambda function: alternative base image + awslambdaric (modelfleet serverless package).
ARG BASE_IMAGE={base_image}
FROM ${{BASE_IMAGE}}
ENV LAMBDA_TASK_ROOT=/var/task PYTHONPATH=/var/task MODELFLEET_ARTIFACT=/var/task/model PYTHONDONTWRITEBYTECODE=1
COPY task/ /var/task/
COPY entry.sh /usr/local/bin/modelfleet-lambda-entry
{rie}WORKDIR /var/task
ENTRYPOINT ["/usr/local/bin/modelfleet-lambda-entry"]
CMD ["{handler}"]
"""


class PackageError(ModelfleetError):
    """The package cannot be built (artifact, wheels, sizes)."""


@dataclass(frozen=True)
class PackageResult:
    task: Path
    unzipped_bytes: int
    zip_path: Path | None  # None: the tree is over the zip limit (the image is the way)
    zip_bytes: int | None
    image_context: Path


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackageError(f"pip {' '.join(args[:2])} failed:\n{done.stderr.strip()[-2000:]}")


#: Wheel platforms for x86_64 Lambda: onnxruntime >= 1.18 ships manylinux_2_27/2_28 wheels only, which need a
#: glibc >= 2.28 — Lambda's Amazon Linux 2023 runtimes (python3.12 and later), not python3.11's Amazon Linux 2.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux2014_x86_64")


def install_task(project: Path, target: Path, python_version: str, platforms: tuple[str, ...]) -> None:
    """modelfleet (built from ``project``) and its runtime dependencies, as ``platform`` wheels, into ``target``."""
    if not (project / "pyproject.toml").is_file():
        raise PackageError(f"{project}: no pyproject.toml (pass the modelfleet source tree with --project)")
    with tempfile.TemporaryDirectory() as wheels:
        _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, str(project))
        built = sorted(Path(wheels).glob("modelfleet-*.whl"))
        platform_args = [arg for platform in platforms for arg in ("--platform", platform)]
        _pip("install", "--quiet", "--target", str(target), *platform_args, "--python-version", python_version,
             "--implementation", "cp", "--only-binary=:all:", "--upgrade", f"{built[0]}[serverless]")
    for cache in target.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def write_zip(task: Path, path: Path) -> int:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for file in sorted(task.rglob("*")):
            if file.is_file():
                info = zipfile.ZipInfo.from_file(file, file.relative_to(task).as_posix())
                info.compress_type = zipfile.ZIP_DEFLATED
                with file.open("rb") as handle:
                    archive.writestr(info, handle.read())
    return path.stat().st_size


def build_package(artifact: Path, output: Path, *, project: Path, base_image: str = "python:3.11-slim-bookworm",
                  rie: Path | None = None, python_version: str = "3.11",
                  platforms: tuple[str, ...] = PLATFORMS) -> PackageResult:
    """Build ``output/image/`` (context with ``task/``) and ``output/function.zip`` when it fits."""
    verify_artifact(artifact)  # never package what would fail the cold start
    context = output / "image"
    if context.exists():
        shutil.rmtree(context)
    task = context / "task"
    task.mkdir(parents=True)
    install_task(project, task, python_version, platforms)
    shutil.copytree(artifact, task / "model")
    (context / "entry.sh").write_text(ENTRY)
    (context / "entry.sh").chmod(0o755)
    rie_line = ""
    if rie is not None:
        shutil.copy2(rie, context / "aws-lambda-rie")
        rie_line = "COPY aws-lambda-rie /usr/local/bin/aws-lambda-rie\n"
    (context / "Dockerfile").write_text(DOCKERFILE.format(base_image=base_image, rie=rie_line, handler=HANDLER))
    (context / ".dockerignore").write_text("**/__pycache__\n")
    unzipped = tree_size(task)
    target = output / "function.zip"
    target.unlink(missing_ok=True)
    zip_path, zip_bytes = None, None
    if unzipped <= ZIP_UNZIPPED_LIMIT:
        zip_path, zip_bytes = target, write_zip(task, target)
    return PackageResult(task, unzipped, zip_path, zip_bytes, context)
