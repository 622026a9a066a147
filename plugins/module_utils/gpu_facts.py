# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""What a host knows about its NVIDIA GPUs: PCI devices, driver versions, kernel module flavour, Secure Boot.

Standard library only: it runs on bare hosts, before anything of modelfleet is installed there. Files are
read under a root directory (``/`` on a host, a fixture tree in tests); commands (``modinfo``, ``nvidia-smi``,
``mokutil``) go through a runner ``run(argv) -> (rc, stdout, stderr)`` that tests replace. No GPU is a
normal answer (``count`` 0), never an error.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

import os
import re
import typing as t

Runner = t.Callable[[t.List[str]], t.Tuple[int, str, str]]

NVIDIA_VENDOR = 0x10DE
#: PCI class 0x03xxxx is a display controller (0x0300 VGA, 0x0302 3D controller: data-centre GPUs).
DISPLAY_CLASS = 0x03
#: NVSwitch devices are NVIDIA "other bridge" functions (class 0x0680); they need fabric manager.
BRIDGE_OTHER_CLASS = 0x0680
SECURE_BOOT_VAR = "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=name,memory.total,mig.mode.current,persistence_mode,driver_version",
                    "--format=csv,noheader,nounits"]

#: A few PCI device ids and what they are (name, architecture). Unknown ids get no name.
KNOWN_DEVICES = {
    0x1DB1: ("Tesla V100-SXM2-16GB", "volta"),
    0x1DB4: ("Tesla V100-PCIE-16GB", "volta"),
    0x1DB5: ("Tesla V100-SXM2-32GB", "volta"),
    0x1DB6: ("Tesla V100-PCIE-32GB", "volta"),
    0x1EB8: ("Tesla T4", "turing"),
    0x20B0: ("A100-SXM4-40GB", "ampere"),
    0x20B2: ("A100-SXM4-80GB", "ampere"),
    0x20B5: ("A100 80GB PCIe", "ampere"),
    0x20F1: ("A100-PCIE-40GB", "ampere"),
    0x2236: ("A10", "ampere"),
    0x26B5: ("L40", "ada"),
    0x26B9: ("L40S", "ada"),
    0x27B8: ("L4", "ada"),
    0x2330: ("H100 80GB HBM3 (SXM5)", "hopper"),
    0x2331: ("H100 PCIe", "hopper"),
    0x2335: ("H200 (SXM)", "hopper"),
    0x2901: ("B200", "blackwell"),
}
#: Architectures whose GPUs only work with the open kernel modules.
OPEN_ONLY_ARCHS = frozenset(["blackwell"])

_VERSION = re.compile(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)\b")
_NA = re.compile(r"^\[.*\]$")


def _read(root: str, rel: str) -> t.Optional[str]:
    try:
        with open(os.path.join(root, rel), "r") as handle:
            return handle.read()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def _hex(text: t.Optional[str]) -> t.Optional[int]:
    if text is None:
        return None
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


def pci_devices(root: str) -> t.List[t.Dict[str, t.Any]]:
    """NVIDIA functions on the PCI bus (GPUs and NVSwitches), sorted by address."""
    base = os.path.join(root, "sys/bus/pci/devices")
    try:
        addresses = sorted(os.listdir(base))
    except OSError:
        return []
    found = []
    for address in addresses:
        rel = os.path.join("sys/bus/pci/devices", address)
        if _hex(_read(root, rel + "/vendor")) != NVIDIA_VENDOR:
            continue
        device = _hex(_read(root, rel + "/device"))
        pci_class = _hex(_read(root, rel + "/class"))
        if device is None or pci_class is None:
            continue
        if pci_class >> 16 == DISPLAY_CLASS:
            kind = "gpu"
        elif pci_class >> 8 == BRIDGE_OTHER_CLASS:
            kind = "nvswitch"
        else:
            continue  # the GPU's audio or USB function
        name, arch = KNOWN_DEVICES.get(device, (None, None))
        found.append({"pci_address": address, "device_id": "0x%04x" % device, "class": "0x%06x" % pci_class,
                      "kind": kind, "name": name, "architecture": arch})
    return found


def parse_proc_version(text: t.Optional[str]) -> t.Dict[str, t.Any]:
    """The loaded module's version and flavour from ``/proc/driver/nvidia/version`` (None when not loaded)."""
    if not text:
        return {"version": None, "flavour": None}
    match = _VERSION.search(text)
    flavour = "open" if "Open Kernel Module" in text else "proprietary"
    return {"version": match.group(1) if match else None, "flavour": flavour}


def flavour_from_license(license_text: str) -> t.Optional[str]:
    """``modinfo -F license nvidia``: the open modules are dual MIT/GPL, the proprietary one says NVIDIA."""
    text = license_text.strip()
    if not text:
        return None
    return "open" if "GPL" in text or "MIT" in text else "proprietary"


def installed_module(run: Runner) -> t.Dict[str, t.Any]:
    """The nvidia module that modprobe would load (``modinfo``), or None for each field when there is none."""
    rc, out, _err = run(["modinfo", "-F", "version", "nvidia"])
    version = out.strip().splitlines()[0].strip() if rc == 0 and out.strip() else None
    flavour = None
    if version:
        rc, out, _err = run(["modinfo", "-F", "license", "nvidia"])
        flavour = flavour_from_license(out) if rc == 0 else None
    return {"version": version, "flavour": flavour}


def _value(text: str) -> t.Optional[str]:
    text = text.strip()
    return None if not text or _NA.match(text) else text


def parse_nvidia_smi(output: str) -> t.List[t.Dict[str, t.Any]]:
    """Rows of ``nvidia-smi --query-gpu=name,memory.total,mig.mode.current,persistence_mode,driver_version
    --format=csv,noheader,nounits``. ``[N/A]`` and ``[Not Supported]`` become None; memory is MiB."""
    gpus = []
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(",", 4)  # a model name may hold a comma; the four values after it cannot
        if len(parts) != 5:
            raise ValueError("nvidia-smi line %d has %d fields, expected 5: %r" % (number, len(parts), line))
        name, memory, mig, persistence, driver = (_value(p) for p in parts)
        memory_mib = None
        if memory is not None:
            try:
                memory_mib = int(float(memory))
            except ValueError as exc:
                raise ValueError("nvidia-smi line %d: memory.total %r is not a number" % (number, memory)) from exc
        gpus.append({
            "name": name,
            "memory_total_mib": memory_mib,
            "mig_mode": mig.lower() if mig else None,
            "persistence_mode": persistence.lower() if persistence else None,
            "driver_version": driver,
        })
    return gpus


def query_nvidia_smi(run: Runner) -> t.Dict[str, t.Any]:
    """What nvidia-smi says, or why it could not say it (no GPU, no driver loaded, tool missing)."""
    try:
        rc, out, err = run(list(NVIDIA_SMI_QUERY))
    except OSError as exc:
        return {"available": False, "error": str(exc), "gpus": []}
    if rc != 0:
        return {"available": False, "error": (err or out).strip() or "exit status %d" % rc, "gpus": []}
    try:
        return {"available": True, "error": None, "gpus": parse_nvidia_smi(out)}
    except ValueError as exc:
        return {"available": False, "error": str(exc), "gpus": []}


def secure_boot(root: str, run: Runner) -> t.Optional[bool]:
    """True/False from the SecureBoot EFI variable (its last byte), else ``mokutil --sb-state``; False on a
    host without EFI (legacy boot); None when nothing tells."""
    try:
        with open(os.path.join(root, SECURE_BOOT_VAR), "rb") as handle:
            data = handle.read()
        if data:
            return data[-1:] == b"\x01"
    except (IOError, OSError):
        pass
    if not os.path.isdir(os.path.join(root, "sys/firmware/efi")):
        return False
    try:
        rc, out, _err = run(["mokutil", "--sb-state"])
    except OSError:
        return None
    text = out.lower()
    if rc == 0 and "secureboot enabled" in text:
        return True
    if "secureboot disabled" in text:
        return False
    return None


def gather(root: str, run: Runner, query_smi: bool = True) -> t.Dict[str, t.Any]:
    """Everything above as one fact dictionary (see the gpu_facts module's RETURN)."""
    devices = pci_devices(root)
    gpus = [d for d in devices if d["kind"] == "gpu"]
    loaded = parse_proc_version(_read(root, "proc/driver/nvidia/version"))
    installed = installed_module(run)
    smi = query_nvidia_smi(run) if query_smi and gpus else {"available": False, "error": "not queried", "gpus": []}
    archs = sorted(set(d["architecture"] for d in gpus if d["architecture"]))
    # An installed module that is not the one running (another version, or none loaded yet): a reboot (or an
    # unload and load) is needed before the installed driver is in use.
    reboot = bool(installed["version"] and installed["version"] != loaded["version"])
    mig = [g["mig_mode"] for g in smi["gpus"]]
    return {
        "present": bool(gpus),
        "count": len(gpus),
        "devices": gpus,
        "device_ids": sorted(set(d["device_id"] for d in gpus)),
        "names": [d["name"] for d in gpus],
        "architectures": archs,
        "open_module_required": any(a in OPEN_ONLY_ARCHS for a in archs),
        "nvswitch_count": len([d for d in devices if d["kind"] == "nvswitch"]),
        "driver": {
            "loaded_version": loaded["version"],
            "loaded_flavour": loaded["flavour"],
            "installed_version": installed["version"],
            "installed_flavour": installed["flavour"],
            # A module is installed and another version is loaded: only a reboot (or unload) brings the new one.
            "reboot_required": reboot,
        },
        "secure_boot": secure_boot(root, run),
        "nvidia_smi": smi,
        "mig_enabled": "enabled" in mig,
    }
