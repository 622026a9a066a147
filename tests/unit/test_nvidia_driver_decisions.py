"""The nvidia_driver role's per-family decisions (packages, source, pins, refusals), run by ansible-playbook.

Each case is a host of a local inventory with FAKE facts (tests/unit/ansible_library/fake_facts.py): Ubuntu
and RHEL images cannot be built here, so their decisions are tested as data, through the role's own
tasks/decide.yml; the molecule `provision` scenario runs the whole role on Debian 12 hosts.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import collection_root

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

DEBIAN12 = {"distribution": "Debian", "os_family": "Debian", "distribution_major_version": "12",
            "distribution_version": "12.8", "distribution_release": "bookworm", "architecture": "x86_64",
            "kernel": "6.1.0-28-amd64"}
UBUNTU2404 = {"distribution": "Ubuntu", "os_family": "Debian", "distribution_major_version": "24",
              "distribution_version": "24.04", "distribution_release": "noble", "architecture": "x86_64",
              "kernel": "6.8.0-49-generic"}
UBUNTU2204 = {**UBUNTU2404, "distribution_major_version": "22", "distribution_version": "22.04",
              "distribution_release": "jammy", "kernel": "5.15.0-126-generic"}
RHEL9 = {"distribution": "RedHat", "os_family": "RedHat", "distribution_major_version": "9",
         "distribution_version": "9.5", "distribution_release": "Plow", "architecture": "x86_64",
         "kernel": "5.14.0-503.11.1.el9_5.x86_64"}
HOPPER = {"architectures": ["hopper"], "nvswitch_count": 0, "secure_boot": False}
HGX = {"architectures": ["hopper"], "nvswitch_count": 4, "secure_boot": False}

#: name -> (facts, gpu facts, role variables)
CASES: dict[str, tuple[dict[str, str], dict[str, Any], dict[str, Any]]] = {
    "debian_default": (DEBIAN12, HOPPER, {}),
    "debian_archive_535": (DEBIAN12, HOPPER, {"nvidia_driver_branch": "535"}),
    "debian_archive_proprietary_pinned": (DEBIAN12, {"architectures": ["volta"]},
                                          {"nvidia_driver_branch": "535", "nvidia_driver_version": "535.216.01"}),
    "debian_hgx_archive": (DEBIAN12, HGX, {"nvidia_driver_branch": "535", "nvidia_driver_source": "distribution"}),
    "debian_hgx_cuda": (DEBIAN12, HGX, {"nvidia_driver_branch": "570", "nvidia_driver_version": "570.124.06"}),
    "ubuntu2404_server": (UBUNTU2404, HGX, {"nvidia_driver_branch": "570"}),
    "ubuntu2404_cuda_535": (UBUNTU2404, HOPPER, {"nvidia_driver_branch": "535", "nvidia_driver_source": "cuda"}),
    "ubuntu2204_cuda": (UBUNTU2204, HOPPER, {"nvidia_driver_branch": "560"}),
    "rhel9_open_fm": (RHEL9, HGX, {"nvidia_driver_branch": "570", "nvidia_driver_version": "570.124.06"}),
    "rhel9_proprietary": (RHEL9, {"architectures": ["volta"]}, {"nvidia_driver_branch": "535"}),
    "rhel9_distribution": (RHEL9, HOPPER, {"nvidia_driver_source": "distribution"}),
    "unknown_branch": (DEBIAN12, HOPPER, {"nvidia_driver_branch": "999"}),
    "version_of_other_branch": (DEBIAN12, HOPPER,
                                {"nvidia_driver_branch": "570", "nvidia_driver_version": "535.216.01"}),
    "blackwell_proprietary": (UBUNTU2404, {"architectures": ["blackwell"]}, {"nvidia_driver_flavour": "proprietary"}),
    "volta_open": (UBUNTU2404, {"architectures": ["volta"]}, {"nvidia_driver_flavour": "open"}),
    "secure_boot_without_key": (DEBIAN12, {**HOPPER, "secure_boot": True}, {}),
    "secure_boot_with_key": (DEBIAN12, {**HOPPER, "secure_boot": True},
                             {"nvidia_driver_mok_key": "/k/mok.key", "nvidia_driver_mok_cert": "/k/mok.der"}),
}


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run decide.yml once for every case (one playbook, one host per case); return plan and errors per case."""
    work = tmp_path_factory.mktemp("decisions")
    out = work / "out"
    out.mkdir()
    hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                    "case_facts": facts, "modelfleet_gpu_facts": gpu, **role_vars}
             for name, (facts, gpu, role_vars) in CASES.items()}
    (work / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (work / "play.yml").write_text(yaml.safe_dump([{
        "name": "Decide", "hosts": "all", "gather_facts": False,
        "tasks": [
            {"name": "Fake facts", "fake_facts": {"facts": "{{ case_facts }}"}},
            {"name": "Decide", "ansible.builtin.include_role": {"name": "modelfleet.serving.nvidia_driver",
                                                                 "tasks_from": "decide.yml"}},
            {"name": "Write", "ansible.builtin.copy": {
                "content": "{{ {'plan': _nvidia_driver_plan, 'errors': _nvidia_driver_errors} | to_json }}",
                "dest": f"{out}/{{{{ inventory_hostname }}}}.json", "mode": "0644"}},
        ]}]))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collection_root()),
           "ANSIBLE_LIBRARY": str(HERE / "ansible_library"), "ANSIBLE_HOME": str(work / "ansible-home"),
           "ANSIBLE_FORKS": "4", "ANSIBLE_NOCOLOR": "1"}
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    done = subprocess.run([playbook, "-i", str(work / "hosts.yml"), str(work / "play.yml")], env=env, cwd=work,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return {name: json.loads((out / f"{name}.json").read_text()) for name in CASES}


def ok(plans: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    assert plans[name]["errors"] == [], plans[name]["errors"]
    plan: dict[str, Any] = plans[name]["plan"]
    return plan


def test_debian_default_branch_goes_to_the_cuda_repo(plans: dict[str, dict[str, Any]]) -> None:
    """Debian 12's archive carries only 535: the default 580 comes from NVIDIA's repository, open modules."""
    plan = ok(plans, "debian_default")
    assert plan["source"] == "cuda" and plan["flavour"] == "open" and plan["branch"] == "580"
    assert plan["packages"] == ["nvidia-open-580", "nvidia-persistenced"]
    assert plan["cuda_repo_url"] == "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64"
    assert plan["pin"] == "580.*"
    assert plan["headers"] == ["linux-headers-6.1.0-28-amd64", "dkms"]


def test_debian_archive(plans: dict[str, dict[str, Any]]) -> None:
    plan = ok(plans, "debian_archive_535")
    assert plan["source"] == "distribution" and plan["repo"] == "distribution"
    assert plan["packages"] == [
        "nvidia-driver", "nvidia-open-kernel-dkms", "firmware-misc-nonfree", "nvidia-persistenced"]


def test_debian_volta_gets_proprietary_and_exact_pin(plans: dict[str, dict[str, Any]]) -> None:
    plan = ok(plans, "debian_archive_proprietary_pinned")
    assert plan["flavour"] == "proprietary" and "nvidia-kernel-dkms" in plan["packages"]
    assert plan["pin"] == "535.216.01-*"


def test_debian_archive_has_no_fabric_manager(plans: dict[str, dict[str, Any]]) -> None:
    assert plans["debian_hgx_archive"]["errors"] == [
        "fabric manager is not packaged by the distribution source on Debian 12: set nvidia_driver_source to cuda"]


def test_fabric_manager_of_the_same_branch(plans: dict[str, dict[str, Any]]) -> None:
    """gpu-driver-container #735: fabric manager resolved to another branch. Same branch name, same pin."""
    plan = ok(plans, "debian_hgx_cuda")
    assert plan["fabricmanager"] is True
    assert plan["packages"] == ["nvidia-open-570", "nvidia-persistenced", "nvidia-fabricmanager-570"]
    assert plan["pin"] == "570.124.06-*"
    assert any(fnmatch.fnmatch("nvidia-fabricmanager-570", p) for p in plan["hold_patterns"])


def test_ubuntu_server_packages(plans: dict[str, dict[str, Any]]) -> None:
    plan = ok(plans, "ubuntu2404_server")
    assert plan["source"] == "distribution"
    assert plan["packages"] == [
        "nvidia-headless-570-server-open", "nvidia-utils-570-server", "nvidia-fabricmanager-570"]
    assert plan["headers"][0] == "linux-headers-6.8.0-49-generic"


def test_ubuntu_2404_cuda_needs_560(plans: dict[str, dict[str, Any]]) -> None:
    """NVIDIA/ansible-role-nvidia-driver #81: 24.04 from the CUDA repository starts at 560."""
    assert plans["ubuntu2404_cuda_535"]["errors"] == [
        "branch 535 is not available from the cuda source on Ubuntu 24 (available: 560, 565, 570, 575, 580)"]


def test_ubuntu_2204_cuda(plans: dict[str, dict[str, Any]]) -> None:
    plan = ok(plans, "ubuntu2204_cuda")
    assert plan["source"] == "cuda" and plan["packages"] == ["nvidia-open-560", "nvidia-persistenced"]
    assert plan["cuda_repo_url"].endswith("/ubuntu2204/x86_64")


def test_rhel_module_streams(plans: dict[str, dict[str, Any]]) -> None:
    plan = ok(plans, "rhel9_open_fm")
    assert plan["pkg_mgr"] == "dnf"
    assert plan["packages"] == ["@nvidia-driver:570-open/fm", "nvidia-persistenced"]
    kernel = RHEL9["kernel"]
    assert plan["headers"][:2] == [f"kernel-devel-{kernel}", f"kernel-headers-{kernel}"]
    assert plan["initramfs"][0] == "dracut"
    assert ok(plans, "rhel9_proprietary")["packages"][0] == "@nvidia-driver:535-dkms/default"


def test_rhel_has_no_distribution_source(plans: dict[str, dict[str, Any]]) -> None:
    errors = plans["rhel9_distribution"]["errors"]
    assert errors[0] == "source distribution is not available on RedHat 9 (choose from: cuda)"


def test_unknown_branch(plans: dict[str, dict[str, Any]]) -> None:
    assert plans["unknown_branch"]["errors"] == [
        "branch 999 is not available from the cuda source on Debian 12 (available: 535, 550, 560, 565, 570, 575, 580)"]


def test_version_of_another_branch(plans: dict[str, dict[str, Any]]) -> None:
    assert plans["version_of_other_branch"]["errors"] == ["version 535.216.01 is not of branch 570"]


def test_flavour_refusals(plans: dict[str, dict[str, Any]]) -> None:
    assert plans["blackwell_proprietary"]["errors"] == [
        "blackwell GPUs need the open kernel modules: set nvidia_driver_flavour to open (or auto)"]
    assert plans["volta_open"]["errors"] == [
        "the open kernel modules do not support volta GPUs: set nvidia_driver_flavour to proprietary"]


def test_secure_boot_needs_a_mok_key(plans: dict[str, dict[str, Any]]) -> None:
    assert "are not set: DKMS modules must be signed" in plans["secure_boot_without_key"]["errors"][0]
    assert ok(plans, "secure_boot_with_key")["sign_modules"] is True


def test_hold_patterns_cover_the_driver_but_not_the_toolkit() -> None:
    """Every package that must match the driver is held; the container toolkit's packages have their own versions."""
    role_vars = yaml.safe_load((REPO / "roles/nvidia_driver/vars/main.yml").read_text())
    patterns = role_vars["_nvidia_driver_match_patterns"] + role_vars["_nvidia_driver_satellite_patterns"]
    held = ["nvidia-driver", "nvidia-kernel-dkms", "nvidia-open-kernel-dkms", "nvidia-open-570", "cuda-drivers-535",
            "nvidia-fabricmanager-570", "nvidia-fabric-manager", "libnvidia-compute-570-server", "libcuda1",
            "nvidia-headless-570-server-open", "nvidia-utils-570-server", "libnvidia-nscq-570", "kmod-nvidia-open-dkms",
            "nvidia-persistenced", "firmware-nvidia-gsp", "libnvidia-ml1"]
    free = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container1",
            "libnvidia-container-tools", "datacenter-gpu-manager-4-core", "firmware-misc-nonfree"]
    assert [p for p in held if not any(fnmatch.fnmatch(p, pat) for pat in patterns)] == []
    assert [p for p in free if any(fnmatch.fnmatch(p, pat) for pat in patterns)] == []


def test_the_role_skips_a_host_without_gpu(tmp_path: Path) -> None:
    """The whole role on this machine (no NVIDIA device): argument specs validate, preflight runs, and the host is
    skipped with the message, changing nothing."""
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "name": "Driver on a host without GPU", "hosts": "localhost", "gather_facts": True,
        "roles": [{"role": "modelfleet.serving.nvidia_driver"}]}]))
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collection_root()), "ANSIBLE_HOME": str(tmp_path / "home"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0"}
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    argv = [playbook, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
            "-e", f"nvidia_driver_gpu_facts_root={tmp_path / 'no-gpu'}", str(tmp_path / "play.yml")]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "has no NVIDIA GPU on its PCI bus (vendor 0x10de): the driver is not installed" in done.stdout
    assert "changed=0" in done.stdout
