#!/usr/bin/env python3
"""STAND-IN apt repositories for the provision scenario: dummy NVIDIA driver and container toolkit packages.

No GPU, no NVIDIA repository and no kernel headers for this machine's kernel exist here; these packages have the
names and versions the roles pin and hold (and a no-op nvidia-persistenced unit, a nvidia-container-runtime
that only prints), so that repositories, pins, holds and services are exercised for real by apt and systemd.

    standin_repo.py OUTDIR KERNEL    -> OUTDIR/debian (Debian-style, suites bookworm and bookworm-updates)
                                        OUTDIR/toolkit/stable/deb/amd64 (flat, like NVIDIA's)
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DRIVER = "535.216.01-1~standin"
TOOLKIT = "1.17.8-1"
DATE = "Thu, 01 Jan 2026 00:00:00 UTC"
UNIT = """[Unit]
Description=STAND-IN nvidia-persistenced (modelfleet provision scenario; no GPU here)

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""


def deb(out: Path, name: str, version: str, files: dict[str, tuple[str, int]] | None = None) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        (root / "DEBIAN/control").write_text(
            f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: modelfleet tests <t@modelfleet.invalid>\n"
            f"Section: misc\nPriority: optional\nDescription: STAND-IN {name} (dummy package, modelfleet tests)\n")
        for path, (content, mode) in (files or {}).items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        target = out / f"{name}_{version.split(':')[-1]}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(target)], check=True,
                       capture_output=True)
    return target


def packages_entry(debfile: Path, relative: str) -> str:
    control = subprocess.run(["dpkg-deb", "--field", str(debfile)], check=True, capture_output=True, text=True).stdout
    data = debfile.read_bytes()
    return (control.rstrip("\n") + f"\nFilename: {relative}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n\n")


def release(directory: Path, files: list[str], **fields: str) -> None:
    lines = [f"{k.replace('_', '-')}: {v}" for k, v in fields.items()] + [f"Date: {DATE}", "SHA256:"]
    for rel in files:
        data = (directory / rel).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {rel}")
    (directory / "Release").write_text("\n".join(lines) + "\n")


def main() -> None:
    out, kernel = Path(sys.argv[1]), sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    debian = out / "debian"
    pool = debian / "pool"
    pool.mkdir(parents=True)
    driver = [deb(pool, n, DRIVER) for n in ("nvidia-driver", "nvidia-open-kernel-dkms", "nvidia-kernel-dkms")]
    driver.append(deb(pool, "nvidia-persistenced", DRIVER,
                      {"/lib/systemd/system/nvidia-persistenced.service": (UNIT, 0o644)}))
    driver.append(deb(pool, "firmware-misc-nonfree", "20230210-5~standin"))
    # Epoch 99: wins over Debian's own dkms (the real one pulls in a compiler) and names this machine's kernel.
    driver += [deb(pool, "dkms", "99:0~standin"), deb(pool, f"linux-headers-{kernel}", "99:0~standin")]
    components = ["contrib", "non-free", "non-free-firmware"]
    for suite in ("bookworm", "bookworm-updates"):
        dist = debian / "dists" / suite
        listed = []
        for component in components:
            binary = dist / component / "binary-amd64"
            binary.mkdir(parents=True)
            here = (suite, component) == ("bookworm", "non-free")
            entries = [packages_entry(d, f"pool/{d.name}") for d in driver] if here else []
            (binary / "Packages").write_text("".join(entries))
            listed.append(f"{component}/binary-amd64/Packages")
        release(dist, listed, Origin="modelfleet-standin", Label="STAND-IN", Suite=suite, Codename=suite,
                Architectures="amd64", Components=" ".join(components))
    flat = out / "toolkit/stable/deb/amd64"
    flat.mkdir(parents=True)
    runtime = "#!/bin/sh\necho 'STAND-IN nvidia-container-runtime (no GPU here)' >&2\nexit 1\n"
    toolkit = [deb(flat, "nvidia-container-toolkit", TOOLKIT),
               deb(flat, "nvidia-container-toolkit-base", TOOLKIT,
                   {"/usr/bin/nvidia-container-runtime": (runtime, 0o755)}),
               deb(flat, "libnvidia-container-tools", TOOLKIT), deb(flat, "libnvidia-container1", TOOLKIT)]
    (flat / "Packages").write_text("".join(packages_entry(d, f"./{d.name}") for d in toolkit))
    release(flat, ["Packages"], Origin="modelfleet-standin", Label="STAND-IN", Architectures="amd64")


if __name__ == "__main__":
    main()
