#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nvidia_runtime
short_description: Add the NVIDIA container runtime to Docker's or containerd's configuration, keeping the rest
version_added: "0.2.0"
description:
  - Merges the C(nvidia) runtime into Docker's C(daemon.json) or containerd's C(config.toml). Every other
    setting the host has stays (registry mirrors, log options, other runtimes, and containerd's
    C(SystemdCgroup)); the file is rewritten only when the merge changes it.
  - A file that does not parse (JSON for Docker, TOML for containerd) fails the task with the parser's message and
    is left untouched, as is a containerd configuration of version 1.
  - For containerd the runtime is the runc v2 shim running O(binary); its C(SystemdCgroup) follows
    O(systemd_cgroup), else runc's own setting in the same file. Versions 2 (containerd 1.x) and 3 (2.x) are
    understood; a missing or empty file becomes a version 2 file.
  - The module does not restart the engine; notify a handler when the task reports a change.
author:
  - modelfleet contributors (@modelfleet)
options:
  engine:
    description:
      - Which configuration to edit.
    type: str
    required: true
    choices: [docker, containerd]
  path:
    description:
      - The configuration file. Defaults to C(/etc/docker/daemon.json) or C(/etc/containerd/config.toml).
    type: path
  name:
    description:
      - The runtime's name.
    type: str
    default: nvidia
  binary:
    description:
      - Path of the NVIDIA container runtime on the host.
    type: path
    default: /usr/bin/nvidia-container-runtime
  set_default:
    description:
      - Also make it the default runtime (C(default-runtime) for Docker, C(default_runtime_name) for containerd).
        False leaves the default as it is.
    type: bool
    default: false
  systemd_cgroup:
    description:
      - containerd only. C(SystemdCgroup) of the runtime's options; unset copies runc's setting from the same file.
    type: bool
  backup:
    description:
      - Keep a timestamped copy of the file before changing it.
    type: bool
    default: false
requirements:
  - tomlkit on the host for containerd (Debian and Ubuntu package C(python3-tomlkit)).
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Computes the merged file and reports whether it would change.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The file's text before and after.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Unlike NVIDIA's ansible-role-nvidia-docker, which writes the whole of C(daemon.json), this keeps what is there.
seealso:
  - name: NVIDIA Container Toolkit, configuration
    description: What C(nvidia-ctk runtime configure) writes, which this module reproduces as a merge.
    link: https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html
"""

EXAMPLES = r"""
- name: Add the nvidia runtime to Docker
  modelfleet.serving.nvidia_runtime:
    engine: docker
  notify: Restart docker

- name: Add it to containerd as the default runtime, with the systemd cgroup driver
  modelfleet.serving.nvidia_runtime:
    engine: containerd
    set_default: true
    systemd_cgroup: true
  notify: Restart containerd
"""

RETURN = r"""
path:
  description: The file edited.
  returned: always
  type: str
  sample: /etc/docker/daemon.json
runtimes:
  description: The runtimes the configuration names after the merge.
  returned: success
  type: list
  elements: str
  sample: [nvidia, runc]
default_runtime:
  description: The configured default runtime after the merge, null when the file does not set one.
  returned: success
  type: str
  sample: nvidia
backup_file:
  description: The copy made before the change.
  returned: when O(backup=true) and the file changed
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.modelfleet.serving.plugins.module_utils.nvidia_runtime import (
    HAS_TOMLKIT,
    MergeError,
    merge_containerd,
    merge_docker,
)

DEFAULT_PATHS = {"docker": "/etc/docker/daemon.json", "containerd": "/etc/containerd/config.toml"}


def build_module() -> AnsibleModule:
    return AnsibleModule(
        argument_spec=dict(
            engine=dict(type="str", required=True, choices=["docker", "containerd"]),
            path=dict(type="path"),
            name=dict(type="str", default="nvidia"),
            binary=dict(type="path", default="/usr/bin/nvidia-container-runtime"),
            set_default=dict(type="bool", default=False),
            systemd_cgroup=dict(type="bool"),
            backup=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )


def write(module: AnsibleModule, path: str, text: str) -> None:
    """Replace the file atomically (same directory), keeping an existing file's mode and owner."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".nvidia-runtime-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if not os.path.exists(path):
        os.chmod(tmp, 0o644)
    module.atomic_move(tmp, path)


def main() -> None:
    module = build_module()
    p = module.params
    path = p["path"] or DEFAULT_PATHS[p["engine"]]
    if p["engine"] == "containerd" and not HAS_TOMLKIT:
        module.fail_json(msg=missing_required_lib("tomlkit", reason="to merge containerd's configuration"), path=path)
    if p["engine"] == "docker" and p["systemd_cgroup"] is not None:
        module.fail_json(msg="systemd_cgroup applies to containerd only (Docker sets its cgroup driver in exec-opts)",
                         path=path)
    try:
        with open(path, "r") as handle:
            before = handle.read()
    except FileNotFoundError:
        before = ""
    except (IOError, OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, exc), path=path)
    try:
        if p["engine"] == "docker":
            merged = merge_docker(before, p["name"], p["binary"], p["set_default"], path=path)
        else:
            merged = merge_containerd(before, p["name"], p["binary"], p["set_default"], p["systemd_cgroup"], path=path)
    except MergeError as exc:
        module.fail_json(msg=str(exc), path=path)
    result = dict(changed=merged.changed, path=path, runtimes=merged.runtimes, default_runtime=merged.default_runtime)
    if merged.changed:
        if module._diff:
            result["diff"] = dict(before=before, after=merged.text, before_header=path, after_header=path)
        if not module.check_mode:
            if p["backup"] and os.path.exists(path):
                result["backup_file"] = module.backup_local(path)
            write(module, path, merged.text)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
