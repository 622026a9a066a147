#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Facts about a host's NVIDIA GPUs, driver and Secure Boot state
version_added: "0.2.0"
description:
  - Finds NVIDIA GPUs on the PCI bus (vendor C(0x10de), class C(0x03xxxx)) in sysfs, with their device ids and,
    for a table of common data-centre models, their names and architectures. NVSwitch functions (class
    C(0x0680)) are counted apart; they need fabric manager.
  - Reads the loaded driver version and kernel module flavour (open or proprietary) from
    C(/proc/driver/nvidia/version), and the installed module's version and licence with C(modinfo).
  - Reads the Secure Boot state from the C(SecureBoot) EFI variable, else with C(mokutil --sb-state).
  - Where C(nvidia-smi) works, adds each GPU's model, memory, MIG mode, persistence mode and driver version.
  - A host without a GPU is a normal answer (RV(ansible_facts.modelfleet_gpu=false), count 0), never an error.
  - Sets C(modelfleet_gpu) (a boolean, read by the prometheus role's C(dcgm) scrape job and by the
    modelfleet_runtime role) and C(modelfleet_gpu_facts) (the details).
author:
  - modelfleet contributors (@modelfleet)
options:
  root:
    description:
      - Directory under which C(sys/) and C(proc/) are read. V(/) on a host; a fixture tree in tests.
      - Commands (C(modinfo), C(nvidia-smi), C(mokutil)) always run on the host itself.
    type: path
    default: /
  nvidia_smi:
    description:
      - Query C(nvidia-smi) when GPUs are present. Off, the RV(ansible_facts.modelfleet_gpu_facts.nvidia_smi) entry
        says it was not queried.
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads only; runs the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  facts:
    description: Action returns an C(ansible_facts) dictionary that will update existing host facts.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Needs no privileges; reading the EFI variable may need root on some kernels (then C(mokutil) is asked).
seealso:
  - name: NVIDIA driver README, kernel modules
    description: Open and proprietary kernel modules, and which GPUs need the open ones.
    link: https://download.nvidia.com/XFree86/Linux-x86_64/latest/README/kernel_open.html
"""

EXAMPLES = r"""
- name: Look at the GPUs
  modelfleet.serving.gpu_facts:

- name: Stop when the installed driver is not the loaded one
  ansible.builtin.assert:
    that: not modelfleet_gpu_facts.driver.reboot_required
    fail_msg: "reboot {{ inventory_hostname }}: driver {{ modelfleet_gpu_facts.driver.installed_version }} is installed,
      {{ modelfleet_gpu_facts.driver.loaded_version }} is loaded"
"""

RETURN = r"""
ansible_facts:
  description: The facts set.
  returned: always
  type: dict
  contains:
    modelfleet_gpu:
      description: Whether the host has at least one NVIDIA GPU.
      type: bool
      sample: true
    modelfleet_gpu_facts:
      description: The details.
      type: dict
      contains:
        present:
          description: At least one NVIDIA GPU.
          type: bool
        count:
          description: Number of NVIDIA GPUs on the PCI bus.
          type: int
          sample: 8
        devices:
          description: One entry per GPU, with C(pci_address), C(device_id), C(class), C(kind), C(name) and
            C(architecture) (the last two null for ids outside the module's table).
          type: list
          elements: dict
        device_ids:
          description: The distinct PCI device ids, as C(0x....).
          type: list
          elements: str
          sample: ["0x2330"]
        names:
          description: Model names from the PCI ids, null where unknown.
          type: list
          elements: str
        architectures:
          description: Known architectures of the GPUs.
          type: list
          elements: str
          sample: [hopper]
        open_module_required:
          description: A GPU needs the open kernel modules (Blackwell).
          type: bool
        nvswitch_count:
          description: NVSwitch functions on the PCI bus (a host with any needs fabric manager).
          type: int
        driver:
          description: C(loaded_version), C(loaded_flavour) (open or proprietary, from /proc), C(installed_version),
            C(installed_flavour) (from modinfo), and C(reboot_required), true when a module is installed and the
            loaded one is another version or none.
          type: dict
        secure_boot:
          description: Secure Boot enabled; null when neither the EFI variable nor mokutil tells.
          type: bool
        nvidia_smi:
          description: C(available), C(error) and C(gpus), each GPU with C(name), C(memory_total_mib), C(mig_mode),
            C(persistence_mode) and C(driver_version) (null where nvidia-smi says N/A).
          type: dict
        mig_enabled:
          description: At least one GPU has MIG mode enabled.
          type: bool
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.modelfleet.serving.plugins.module_utils.gpu_facts import gather


def build_module() -> AnsibleModule:
    return AnsibleModule(
        argument_spec=dict(root=dict(type="path", default="/"), nvidia_smi=dict(type="bool", default=True)),
        supports_check_mode=True,
    )


def runner(module: AnsibleModule) -> t.Callable[[t.List[str]], t.Tuple[int, str, str]]:
    """Run a command if its program exists (run_command fails the module on a missing one)."""

    def run(argv: t.List[str]) -> t.Tuple[int, str, str]:
        path = module.get_bin_path(argv[0], opt_dirs=["/usr/sbin", "/sbin", "/usr/bin"])
        if path is None:
            return 127, "", "%s: not found" % argv[0]
        rc, out, err = module.run_command([path, *argv[1:]], environ_update={"LC_ALL": "C"})
        return rc, out, err

    return run


def main() -> None:
    module = build_module()
    facts = gather(module.params["root"], runner(module), query_smi=module.params["nvidia_smi"])
    module.exit_json(changed=False, ansible_facts={"modelfleet_gpu": facts["present"], "modelfleet_gpu_facts": facts})


if __name__ == "__main__":
    main()
