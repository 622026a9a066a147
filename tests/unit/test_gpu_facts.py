"""modelfleet.serving.gpu_facts against fixture sysfs/proc trees (no GPU exists here).

The trees hold the files the kernel exposes (PCI vendor/device/class, /proc/driver/nvidia/version, the
SecureBoot EFI variable); the commands (modinfo, nvidia-smi, mokutil) go through a FAKE runner that
replays outputs recorded from real hosts: a stand-in for hardware that cannot exist on this machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import collection_root

sys.path.insert(0, str(collection_root()))

from ansible.module_utils.testing import patch_module_args
from ansible_collections.modelfleet.serving.plugins.module_utils import gpu_facts
from ansible_collections.modelfleet.serving.plugins.modules import gpu_facts as gpu_facts_module

PROC_PROPRIETARY = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
PROC_OPEN = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  "
    "(dvs-builder@U16-I3-B03-4-3)  Thu Jan 23 23:59:51 UTC 2025\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
SMI_8_H100 = "".join("NVIDIA H100 80GB HBM3, 81559, Disabled, Enabled, 570.86.15\n" for _ in range(8))
SMI_T4 = "Tesla T4, 15360, [N/A], Disabled, 535.129.03\n"
SMI_MIG = (
    "NVIDIA A100-SXM4-80GB, 81920, Enabled, Enabled, 535.129.03\n"
    "NVIDIA A100-SXM4-80GB, 81920, Disabled, [N/A], 535.129.03\n"
)
SECURE_BOOT = "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


class FakeRunner:
    """FAKE command runner: answers recorded outputs per argv prefix; anything else is 'not found' (127)."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        for prefix, answer in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return answer
        return 127, "", f"{argv[0]}: not found"


def pci(root: Path, address: str, vendor: int, device: int, pci_class: int) -> None:
    d = root / "sys/bus/pci/devices" / address
    d.mkdir(parents=True)
    (d / "vendor").write_text(f"0x{vendor:04x}\n")
    (d / "device").write_text(f"0x{device:04x}\n")
    (d / "class").write_text(f"0x{pci_class:06x}\n")


def host(root: Path, gpus: int, device: int = 0x2330, proc: str | None = None, nvswitches: int = 0,
         secure_boot: int | None = None) -> Path:
    """A fixture tree: an Intel host bridge and NIC, `gpus` NVIDIA GPUs (each with its audio function)."""
    pci(root, "0000:00:00.0", 0x8086, 0x1237, 0x060000)
    pci(root, "0000:00:03.0", 0x8086, 0x100E, 0x020000)
    for i in range(gpus):
        pci(root, "0000:%02x:00.0" % (0x18 + i), 0x10DE, device, 0x030200)
        pci(root, "0000:%02x:00.1" % (0x18 + i), 0x10DE, 0x10F0, 0x040300)  # HDMI audio: not a GPU
    for i in range(nvswitches):
        pci(root, "0000:%02x:00.0" % (0x80 + i), 0x10DE, 0x22A3, 0x068000)
    if proc is not None:
        (root / "proc/driver/nvidia").mkdir(parents=True)
        (root / "proc/driver/nvidia/version").write_text(proc)
    if secure_boot is not None:
        (root / SECURE_BOOT).parent.mkdir(parents=True)
        (root / SECURE_BOOT).write_bytes(b"\x06\x00\x00\x00" + bytes([secure_boot]))
    return root


def modinfo(version: str, license_text: str) -> dict[tuple[str, ...], tuple[int, str, str]]:
    return {
        ("modinfo", "-F", "version"): (0, version + "\n", ""),
        ("modinfo", "-F", "license"): (0, license_text + "\n", ""),
    }


def test_no_gpu_is_a_normal_answer(tmp_path: Path) -> None:
    runner = FakeRunner()
    facts = gpu_facts.gather(str(host(tmp_path, 0)), runner)
    assert facts["present"] is False and facts["count"] == 0 and facts["devices"] == []
    assert facts["driver"] == {"loaded_version": None, "loaded_flavour": None, "installed_version": None,
                               "installed_flavour": None, "reboot_required": False}
    assert facts["secure_boot"] is False  # no /sys/firmware/efi: legacy boot
    assert not any(c[0] == "nvidia-smi" for c in runner.calls), "nvidia-smi is not asked on a host without GPU"


def test_empty_root_is_no_gpu(tmp_path: Path) -> None:
    facts = gpu_facts.gather(str(tmp_path / "missing"), FakeRunner())
    assert facts["count"] == 0 and facts["nvswitch_count"] == 0


def test_one_gpu_proprietary_loaded_equals_installed(tmp_path: Path) -> None:
    runner = FakeRunner({**modinfo("535.129.03", "NVIDIA"), ("nvidia-smi",): (0, SMI_T4, "")})
    facts = gpu_facts.gather(str(host(tmp_path, 1, 0x1EB8, PROC_PROPRIETARY)), runner)
    assert facts["count"] == 1 and facts["device_ids"] == ["0x1eb8"] and facts["names"] == ["Tesla T4"]
    assert facts["devices"][0]["pci_address"] == "0000:18:00.0"
    assert facts["driver"] == {"loaded_version": "535.129.03", "loaded_flavour": "proprietary",
                               "installed_version": "535.129.03", "installed_flavour": "proprietary",
                               "reboot_required": False}
    smi = facts["nvidia_smi"]
    assert smi["available"] is True
    assert smi["gpus"] == [{"name": "Tesla T4", "memory_total_mib": 15360, "mig_mode": None,
                            "persistence_mode": "disabled", "driver_version": "535.129.03"}]
    assert facts["mig_enabled"] is False and facts["open_module_required"] is False


def test_eight_gpus_open_with_nvswitches(tmp_path: Path) -> None:
    runner = FakeRunner({**modinfo("570.86.15", "Dual MIT/GPL"), ("nvidia-smi",): (0, SMI_8_H100, "")})
    facts = gpu_facts.gather(str(host(tmp_path, 8, 0x2330, PROC_OPEN, nvswitches=4)), runner)
    assert facts["count"] == 8 and facts["nvswitch_count"] == 4
    assert facts["architectures"] == ["hopper"]
    assert facts["driver"]["loaded_flavour"] == "open" and facts["driver"]["installed_flavour"] == "open"
    assert facts["driver"]["loaded_version"] == "570.86.15"
    assert len(facts["nvidia_smi"]["gpus"]) == 8
    assert {g["persistence_mode"] for g in facts["nvidia_smi"]["gpus"]} == {"enabled"}


def test_blackwell_needs_the_open_module(tmp_path: Path) -> None:
    facts = gpu_facts.gather(str(host(tmp_path, 1, 0x2901)), FakeRunner())
    assert facts["open_module_required"] is True and facts["names"] == ["B200"]


def test_unknown_device_id_has_no_name(tmp_path: Path) -> None:
    facts = gpu_facts.gather(str(host(tmp_path, 1, 0x1234)), FakeRunner())
    assert facts["count"] == 1 and facts["names"] == [None] and facts["architectures"] == []


def test_loaded_differs_from_installed_requires_reboot(tmp_path: Path) -> None:
    runner = FakeRunner({**modinfo("550.127.08", "NVIDIA"), ("nvidia-smi",): (0, SMI_T4, "")})
    facts = gpu_facts.gather(str(host(tmp_path, 1, 0x1EB8, PROC_PROPRIETARY)), runner)
    assert facts["driver"]["loaded_version"] == "535.129.03"
    assert facts["driver"]["installed_version"] == "550.127.08"
    assert facts["driver"]["reboot_required"] is True


def test_installed_not_loaded_requires_reboot(tmp_path: Path) -> None:
    """Installed but not loaded (a fresh install, nouveau still bound): the installed driver is not in use yet."""
    facts = gpu_facts.gather(str(host(tmp_path, 1, 0x1EB8)), FakeRunner(modinfo("535.129.03", "NVIDIA")))
    assert facts["driver"]["loaded_version"] is None and facts["driver"]["reboot_required"] is True


def test_nvidia_smi_failure_is_reported_not_raised(tmp_path: Path) -> None:
    failed = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    facts = gpu_facts.gather(str(host(tmp_path, 1)), FakeRunner({("nvidia-smi",): (9, failed, "")}))
    assert facts["nvidia_smi"] == {"available": False, "error": failed.strip(), "gpus": []}


def test_nvidia_smi_parsing_na_and_mig() -> None:
    gpus = gpu_facts.parse_nvidia_smi(SMI_MIG)
    assert [g["mig_mode"] for g in gpus] == ["enabled", "disabled"]
    assert gpus[1]["persistence_mode"] is None
    assert gpus[0]["memory_total_mib"] == 81920


def test_nvidia_smi_name_with_comma_and_not_supported() -> None:
    gpus = gpu_facts.parse_nvidia_smi("Odd, Name, [Not Supported], [N/A], Enabled, 550.54.14\n\n")
    assert gpus == [{"name": "Odd, Name", "memory_total_mib": None, "mig_mode": None,
                     "persistence_mode": "enabled", "driver_version": "550.54.14"}]


@pytest.mark.parametrize("line, message", [
    ("Tesla T4, 15360, Disabled\n", "has 3 fields, expected 5"),
    ("Tesla T4, lots, [N/A], Disabled, 535.129.03\n", "'lots' is not a number"),
])
def test_nvidia_smi_bad_output(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gpu_facts.parse_nvidia_smi(line)


@pytest.mark.parametrize("byte, expected", [(1, True), (0, False)])
def test_secure_boot_from_efivar(tmp_path: Path, byte: int, expected: bool) -> None:
    assert gpu_facts.secure_boot(str(host(tmp_path, 0, secure_boot=byte)), FakeRunner()) is expected


def test_secure_boot_from_mokutil(tmp_path: Path) -> None:
    (tmp_path / "sys/firmware/efi").mkdir(parents=True)
    assert gpu_facts.secure_boot(str(tmp_path), FakeRunner({("mokutil",): (0, "SecureBoot enabled\n", "")})) is True
    assert gpu_facts.secure_boot(str(tmp_path), FakeRunner({("mokutil",): (1, "SecureBoot disabled\n", "")})) is False
    assert gpu_facts.secure_boot(str(tmp_path), FakeRunner()) is None  # EFI, but nothing tells


def test_flavour_from_license() -> None:
    assert gpu_facts.flavour_from_license("Dual MIT/GPL") == "open"
    assert gpu_facts.flavour_from_license("NVIDIA") == "proprietary"
    assert gpu_facts.flavour_from_license("") is None


def test_module_sets_the_facts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The module itself on a fixture tree with one GPU; this machine's modinfo/nvidia-smi find no NVIDIA module."""
    root = host(tmp_path, 1, 0x27B8, PROC_OPEN)
    with patch_module_args({"root": str(root), "nvidia_smi": False}), pytest.raises(SystemExit) as exit_info:
        gpu_facts_module.main()
    assert exit_info.value.code == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert result["changed"] is False
    assert result["ansible_facts"]["modelfleet_gpu"] is True
    facts = result["ansible_facts"]["modelfleet_gpu_facts"]
    assert facts["names"] == ["L4"] and facts["driver"]["loaded_version"] == "570.86.15"
    assert facts["nvidia_smi"]["error"] == "not queried"
