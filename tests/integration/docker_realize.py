"""Create, on the test harness's Docker engine, what a Pulumi program declared under mocks.

A stand-in for the Pulumi CLI and its Docker provider plugin (neither exists here): each recorded
``docker:index/*`` resource becomes the docker CLI call with the same meaning (image build, volume, container
with its entrypoint, command, env, ports, volumes, network mode and uploads). What this cannot show is the
provider's own behaviour (diffs, replacements); what it does show is that the declared containers work
together. Uploads follow the provider: a tar of absolute paths extracted at ``/`` before the container starts.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from cloud_mocks import Resource
from docker_engine import Docker

IMAGE, VOLUME, CONTAINER = "docker:index/image:Image", "docker:index/volume:Volume", "docker:index/container:Container"


def router_stand_in(docker: Docker, tag: str, base_image: str, workdir: Path) -> None:
    """An image laid out like the official haproxy image (config /usr/local/etc/haproxy/haproxy.cfg, user
    haproxy, /var/lib/haproxy writable), made from this machine's haproxy (no registry to pull from)."""
    haproxy = shutil.which("haproxy", path="/usr/sbin:/usr/bin") or "/usr/sbin/haproxy"
    lib = workdir / "lib"
    lib.mkdir(parents=True)
    shutil.copy2(haproxy, workdir / "haproxy")
    ldd = subprocess.run(["ldd", haproxy], capture_output=True, text=True, check=True).stdout
    for line in ldd.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and not parts[0].startswith(("libc.so", "libm.so")):
            shutil.copy2(parts[2], lib / parts[0])
    (workdir / "Dockerfile").write_text(f"""FROM {base_image}
COPY haproxy /usr/sbin/haproxy
COPY lib/ /opt/haproxy/lib/
ENV LD_LIBRARY_PATH=/opt/haproxy/lib
RUN useradd --system --user-group haproxy && install -d -o haproxy -g haproxy /var/lib/haproxy \\
 && install -d /usr/local/etc/haproxy
USER haproxy
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
""")
    docker.build(tag, workdir, {})


def _upload_tar(uploads: list[dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for upload in uploads:
            data = upload["content"].encode() if "content" in upload else Path(upload["source"]).read_bytes()
            info = tarfile.TarInfo(upload["file"].lstrip("/"))
            info.size, info.mode = len(data), int(upload.get("permissions", "0644"), 8)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Realized:
    """The engine objects made from one recorded program; :meth:`remove` deletes them all."""

    def __init__(self, docker: Docker, resources: list[Resource]) -> None:
        self.docker = docker
        self.images: list[str] = []
        self.volumes: list[str] = []
        self.containers: list[str] = []
        self._names = {r.name: r.inputs["name"] for r in resources if r.typ == CONTAINER}
        try:
            for resource in resources:
                if resource.typ == IMAGE:
                    self._image(resource.inputs)
            for resource in resources:
                if resource.typ == VOLUME:
                    docker.run("volume", "create", resource.inputs["name"])
                    self.volumes.append(resource.inputs["name"])
            containers = [r for r in resources if r.typ == CONTAINER]
            # The namespace holder first: the others join it.
            for resource in sorted(containers, key=lambda r: "networkMode" in r.inputs):
                self._container(resource.inputs)
        except BaseException:
            self.remove()
            raise

    def _image(self, inputs: dict[str, Any]) -> None:
        build = inputs["build"]
        self.images.append(inputs["imageName"])
        self.docker.build(inputs["imageName"], Path(build["context"]), build.get("args", {}),
                          ["--file", build["dockerfile"]])

    def _container(self, inputs: dict[str, Any]) -> None:
        name = inputs["name"]
        args = ["create", "--name", name]
        entrypoint = inputs.get("entrypoints") or []
        if entrypoint:
            args += ["--entrypoint", entrypoint[0]]
        if inputs.get("init"):
            args.append("--init")
        if "networkMode" in inputs:
            owner = inputs["networkMode"].removeprefix("container:").removesuffix("-id")
            args += ["--network", f"container:{self._names[owner]}"]
        for port in inputs.get("ports", []):
            args += ["--publish", f"{port['ip']}:{int(port['external'])}:{int(port['internal'])}"]
        for env in inputs.get("envs", []):
            args += ["--env", env]
        for volume in inputs.get("volumes", []):
            args += ["--volume", f"{volume['volumeName']}:{volume['containerPath']}"
                     + (":ro" if volume.get("readOnly") else "")]
        for label in inputs.get("labels", []):
            args += ["--label", f"{label['label']}={label['value']}"]
        if inputs.get("gpus"):
            args += ["--gpus", inputs["gpus"]]
        args += [inputs["image"], *entrypoint[1:], *inputs.get("command", [])]
        self.docker.run(*args)
        self.containers.append(name)
        if inputs.get("uploads"):
            result = subprocess.run([self.docker.binary, "cp", "-", f"{name}:/"], input=_upload_tar(inputs["uploads"]),
                                    env=self.docker.env, capture_output=True, timeout=120, check=False)
            assert result.returncode == 0, result.stderr.decode()
        self.docker.run("start", name)

    def logs(self) -> str:
        return "\n".join(f"--- {c}\n{self.docker.run('logs', '--tail', '30', c, check=False).stderr[-3000:]}"
                         for c in self.containers)

    def remove(self) -> None:
        self.docker.remove(containers=list(reversed(self.containers)))
        if self.volumes:
            self.docker.run("volume", "rm", "--force", *self.volumes, check=False)
        self.docker.remove(images=self.images)
