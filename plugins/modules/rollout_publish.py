#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rollout_publish
short_description: Publish a rollout decision on a serving host and set the next weights, in one run
version_added: "0.1.0"
description:
  - One rollout step on one serving host in a single module run (one remote execution instead of the several
    that M(ansible.builtin.slurp), M(ansible.builtin.copy) and M(modelfleet.serving.router_weight) take one
    after the other).
  - First reads O(read) (nothing is changed by that), returned as M(ansible.builtin.slurp) returns a file.
  - Then writes O(files) in their order (the copy of the rollout state kept with the fleet, the textfile
    metrics), each whole and atomically (a temporary file beside it, flushed, then renamed over it), so a
    reader never sees half a file. A file that already has the content is not rewritten.
  - Then, with O(weights), sets the weights of the model's slots in the HAProxy router exactly as
    M(modelfleet.serving.router_weight) does (same checks, order of commands, gRPC backend, O(wait_ready),
    server state file, error messages). The weights therefore never run ahead of the published files.
  - Stops at the first failure; the files written before it stay written (they describe a decision already
    taken on the controller).
author:
  - modelfleet contributors (@modelfleet)
options:
  read:
    description:
      - Files to read before anything is written, each returned in RV(read) (in this order).
      - A file that cannot be read (missing, a directory, no permission) fails nothing; its entry has no
        C(content) but a C(msg), as an M(ansible.builtin.slurp) with C(failed_when=false) leaves it.
    type: list
    elements: path
    default: []
  files:
    description:
      - Files to write before the weights, in order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the file; missing directories are created (mode 0755, the file's owner).
        type: path
        required: true
      content:
        description: The whole text of the file.
        type: str
        required: true
      mode:
        description: Permissions of this file; O(mode) when not given.
        type: str
      owner:
        description: Owner of this file; O(owner) when not given.
        type: str
      group:
        description: Group of this file; O(group) when not given.
        type: str
  mode:
    description: Permissions of the files in O(files), as 3 or 4 octal digits.
    type: str
    default: "0644"
  owner:
    description: Owner of the files in O(files) (a user name or uid); left as it is when not given.
    type: str
  group:
    description: Group of the files in O(files) (a group name or gid); left as it is when not given.
    type: str
  socket:
    description: HAProxy's runtime API socket (admin level), as in M(modelfleet.serving.router_weight).
    type: path
    default: /run/haproxy/admin.sock
  backend:
    description: The router backend (the model's name). Needed with O(weights).
    type: str
  weights:
    description:
      - "Weights of the backend's servers after the files are written, for example C({blue: 90, green: 10})."
      - Not given, the router is not touched (a step that keeps the weights where they are).
    type: dict
  grpc:
    description: Also set the weights on C(<backend>_grpc) when the router has it.
    type: bool
    default: true
  wait_ready:
    description: Before changing weights, wait until the servers that are to receive traffic pass their health checks.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait with O(wait_ready=true) before failing.
    type: int
    default: 60
  timeout:
    description: Seconds to wait for HAProxy's reply to each runtime API command.
    type: float
    default: 10
  server_state_file:
    description:
      - HAProxy's C(server-state-file), written after a weight change so that a restart loads the new weights
        (M(modelfleet.serving.router_weight)'s O(modelfleet.serving.router_weight#module:state_file)).
    type: path
    default: /var/lib/haproxy/server-state
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Writes nothing and sends no change to HAProxy; says which files and weights would change.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The old and new text of each file, and one line per router server (weight and state).
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Needs root (C(become=true)) for the router socket and for files owned by root.
seealso:
  - module: modelfleet.serving.router_weight
  - module: modelfleet.serving.model_rollout
"""

EXAMPLES = r"""
- name: Publish the last analysis and set the next step's weights
  modelfleet.serving.rollout_publish:
    files:
      - path: /var/lib/modelfleet/releases/credit-risk.rollout.json
        content: "{{ lookup('ansible.builtin.file', rollout_result.state_file, rstrip=false) }}"
      - path: /var/lib/node_exporter/textfile/modelfleet_rollout_credit_risk.prom
        content: "{{ rollout_result.metrics }}"
    owner: root
    group: root
    backend: credit-risk
    weights: {blue: 50, green: 50}
    wait_ready: true
  become: true
"""

RETURN = r"""
read:
  description:
    - Each file of O(read), in order, as M(ansible.builtin.slurp) returns it (C(source), C(content) in base64,
      C(encoding)); without C(content) but with C(msg) when it could not be read.
  returned: always
  type: list
  elements: dict
  sample: [{source: /var/lib/modelfleet/releases/credit-risk.json, content: e30K, encoding: base64}]
files:
  description: Each file of O(files), in order, and whether it changed (content or mode and owner).
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/lib/modelfleet/releases/credit-risk.rollout.json, changed: true}]
router:
  description: What M(modelfleet.serving.router_weight) returns (before, after, commands, ready, waited, ...).
  returned: when O(weights) is given
  type: dict
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.modelfleet.serving.plugins.module_utils import router_weights
from ansible_collections.modelfleet.serving.plugins.module_utils.published_files import (
    PublishError,
    group_id,
    parse_mode,
    publish,
    slurp,
    user_id,
)

ARGUMENT_SPEC = dict(
    read=dict(type="list", elements="path", default=[]),
    files=dict(
        type="list",
        elements="dict",
        default=[],
        options=dict(
            path=dict(type="path", required=True),
            content=dict(type="str", required=True),
            mode=dict(type="str"),
            owner=dict(type="str"),
            group=dict(type="str"),
        ),
    ),
    mode=dict(type="str", default="0644"),
    owner=dict(type="str"),
    group=dict(type="str"),
    socket=dict(type="path", default="/run/haproxy/admin.sock"),
    backend=dict(type="str"),
    weights=dict(type="dict"),
    grpc=dict(type="bool", default=True),
    wait_ready=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=60),
    timeout=dict(type="float", default=10),
    server_state_file=dict(type="path", default="/var/lib/haproxy/server-state"),
)


def router_params(params: dict[str, t.Any]) -> dict[str, t.Any]:
    """router_weight's options for this module's weights (no single server, no admin state)."""
    spec = router_weights.ARGUMENT_SPEC
    chosen = dict((name, spec[name].get("default")) for name in spec)
    for name in ("socket", "backend", "weights", "grpc", "wait_ready", "wait_timeout", "timeout"):
        chosen[name] = params[name]
    chosen["state_file"] = params["server_state_file"]
    return chosen


def run(module: AnsibleModule) -> dict[str, t.Any]:
    params = module.params
    result: dict[str, t.Any] = dict(changed=False, read=[slurp(path) for path in params["read"]], files=[])
    diffs = []
    paths = [entry["path"] for entry in params["files"]]
    if len(set(paths)) != len(paths):
        module.fail_json(msg="files names a path more than once: %s" % ", ".join(sorted(set(
            p for p in paths if paths.count(p) > 1))), **result)
    try:
        mode = parse_mode(params["mode"])
        uid, gid = user_id(params["owner"]), group_id(params["group"])
        for entry in params["files"]:
            done = publish(entry["path"], entry["content"],
                           mode if entry["mode"] is None else parse_mode(entry["mode"]),
                           uid if entry["owner"] is None else user_id(entry["owner"]),
                           gid if entry["group"] is None else group_id(entry["group"]), module.check_mode)
            result["files"].append(dict(path=done["path"], changed=done["changed"]))
            result["changed"] = result["changed"] or done["changed"]
            if done["content_changed"]:
                diffs.append(dict(before=done["before"] or "", after=entry["content"],
                                  before_header=done["path"], after_header=done["path"]))
    except PublishError as exc:
        module.fail_json(msg=str(exc), **result)

    if params["weights"] is not None:
        router = router_weights.run(module, router_params(params))
        diff = router.pop("diff", None)
        if diff is not None:
            diffs.append(diff)
        result["router"] = router
        result["changed"] = result["changed"] or router["changed"]
    if module._diff:
        result["diff"] = diffs
    return result


def build_module() -> AnsibleModule:
    return AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_by=dict(weights="backend"),
        supports_check_mode=True,
    )


def main() -> None:
    module = build_module()
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
