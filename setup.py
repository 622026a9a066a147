"""Build hook: the gRPC code of the model server is generated from its .proto at package build time.

``pip install -e .`` (``make venv``) and ``pip wheel .`` (the hosts' wheelhouse) both run ``build_py``,
which first runs ``grpc_tools.protoc`` (a build requirement in pyproject.toml) on every ``.proto`` under
``src/modelfleet``, writing ``<name>_pb2.py`` and ``<name>_pb2.pyi`` beside it. Generated files are
git-ignored. Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SRC = Path(__file__).resolve().parent / "src"


def generate_protos() -> list[Path]:
    """Generate ``*_pb2.py`` / ``*_pb2.pyi`` for every ``.proto`` under ``src/modelfleet``; return them."""
    from grpc_tools import protoc  # a build requirement

    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto shipped with grpcio-tools
    written = []
    for proto in sorted((SRC / "modelfleet").rglob("*.proto")):
        relative = proto.relative_to(SRC)
        code = protoc.main(["grpc_tools.protoc", f"-I{SRC}", f"-I{include}", f"--python_out={SRC}",
                            f"--pyi_out={SRC}", str(proto)])
        if code != 0:
            raise RuntimeError(f"protoc failed on {relative} (exit status {code})")
        written += [proto.with_name(f"{proto.stem}_pb2.py"), proto.with_name(f"{proto.stem}_pb2.pyi")]
    return written


class BuildPy(build_py):
    """``build_py`` that generates the protobuf code first (wheels and editable installs alike)."""

    def run(self) -> None:
        generate_protos()
        super().run()


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPy})
