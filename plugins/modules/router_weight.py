#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: router_weight
short_description: Set the weights and states of a model's slots in the HAProxy router, live
version_added: "0.1.0"
description:
  - Talks to HAProxy's runtime API (the admin-level C(stats socket)) on the serving host to read and change the
    weight and administrative state of servers in a backend. The modelfleet router has one backend per model
    (named like the model) with two servers, C(blue) and C(green), one per slot; this module moves traffic
    between them without reloading HAProxy.
  - Idempotent, it reads the current state first and sends only the commands needed. Several servers change in
    one task (O(weights)); weights that go up are set before weights that go down, so the backend never has a
    moment with every server at weight 0.
  - The modelfleet router serves each model over gRPC too, from a backend C(<model>_grpc) whose servers track
    the model backend's servers (health, drain and maintenance follow them) but keep their own weights;
    HAProxy's C(track) never copies weights. With O(grpc=true) (the default), the weights set on O(backend) are
    also set on C(<backend>_grpc) when the router has that backend, so both protocols split alike.
  - With O(wait_ready=true) it first waits until the servers that are to receive traffic pass their health checks.
  - After a change it writes HAProxy's server state file (O(state_file)), the file HAProxy loads when it starts,
    so that the new weights also survive a crash and restart, not only a reload.
  - Errors say what went wrong and where, for a missing socket, missing permissions, an unknown backend or
    server (listing the servers the backend has), a weight out of range, a command HAProxy refused (with its
    reply), a wait that timed out (with each server's last health check).
author:
  - modelfleet contributors (@modelfleet)
options:
  socket:
    description:
      - Path of HAProxy's runtime API socket. It must be declared with C(level admin).
    type: path
    default: /run/haproxy/admin.sock
  backend:
    description:
      - The HAProxy backend. In the modelfleet router this is the model's name.
    type: str
    required: true
  server:
    description:
      - One server of O(backend) to act on (V(blue) or V(green) in the modelfleet router).
      - Given alone (without O(weight) or O(state)) the module only reads, and waits when O(wait_ready=true).
    type: str
  weight:
    description:
      - Absolute HAProxy weight for O(server), 0 to 256. 0 sends it no new requests.
      - Weights are relative within a backend; the rollout uses percentages (canary V(p), stable V(100-p)).
    type: int
  weights:
    description:
      - "Weights of several servers of O(backend) at once, as a mapping of server name to absolute weight (0 to 256),
        for example C({blue: 90, green: 10})."
    type: dict
  state:
    description:
      - Administrative state of every server addressed (O(server) or the keys of O(weights)).
      - V(ready) takes traffic, V(drain) gets no new load-balanced requests but stays health checked, V(maint)
        gets nothing and is not checked.
    type: str
    choices: [ready, drain, maint]
  grpc:
    description:
      - Also set the weights on the backend C(<backend>_grpc) (the model's gRPC backend in the modelfleet router),
        when HAProxy has that backend; a router without gRPC is left as it is.
      - Only weights are copied; admin states (O(state)) reach the gRPC servers through HAProxy's C(track).
    type: bool
    default: true
  wait_ready:
    description:
      - Before changing weights, wait until the servers addressed pass their health checks (HAProxy reports them
        up). Servers set to weight 0 or to V(maint) are not waited for.
      - In check mode the module does not wait; RV(ready) tells whether each server is up now.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait with O(wait_ready=true) before failing.
    type: int
    default: 60
  timeout:
    description:
      - Seconds to wait for HAProxy's reply to each runtime API command.
    type: float
    default: 10
  save_state:
    description:
      - After a change, write HAProxy's server state (C(show servers state)) to O(state_file).
    type: bool
    default: true
  state_file:
    description:
      - HAProxy's C(server-state-file) (global section). HAProxy loads it on start and reload, with
        C(load-server-state-from-file global).
    type: path
    default: /var/lib/haproxy/server-state
requirements:
  - HAProxy 2.0 or later with an admin-level C(stats socket) (the modelfleet router role configures one).
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads the current state and returns the commands that would be sent and the predicted state.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: One line per server of the backend with its weight and administrative state.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Needs write access to the socket, normally root (C(become=true)).
  - HAProxy keeps runtime weights across a reload only if the configured (initial) weight of the server did not
    change; the modelfleet router's configuration keeps initial weights fixed for this reason.
  - Unlike M(community.general.haproxy), this module supports check and diff modes, changes several servers
    in one task and returns the state before and after.
seealso:
  - name: HAProxy management guide
    description: The runtime API commands this module uses (show servers state, show stat, set server).
    link: https://docs.haproxy.org/2.6/management.html
"""

EXAMPLES = r"""
- name: Send 10% of credit-risk's traffic to the canary in the green slot, once it passes its health checks
  modelfleet.serving.router_weight:
    backend: credit-risk
    weights:
      blue: 90
      green: 10
    wait_ready: true
    wait_timeout: 120
  become: true

- name: Roll back at once
  modelfleet.serving.router_weight:
    backend: credit-risk
    weights: {blue: 100, green: 0}
  become: true

- name: Take the green slot out of service entirely
  modelfleet.serving.router_weight:
    backend: credit-risk
    server: green
    state: maint
  become: true

- name: Read the slots (changes nothing)
  modelfleet.serving.router_weight:
    backend: credit-risk
    server: blue
  register: router
  become: true
"""

RETURN = r"""
backend:
  description: The backend acted on.
  returned: always
  type: str
  sample: credit-risk
before:
  description: Every server of the backend before the task, by name.
  returned: always
  type: dict
  sample:
    blue:
      weight: 100
      initial_weight: 100
      admin: ready
      operational: up
      status: UP
      check: L7OK
      check_desc: Layer7 check passed
      up: true
    green:
      weight: 0
      initial_weight: 0
      admin: ready
      operational: up
      status: UP
      check: L7OK
      check_desc: Layer7 check passed
      up: true
after:
  description: Every server of the backend after the task (in check mode, the predicted weights and states).
  returned: always
  type: dict
  sample:
    blue:
      weight: 90
      initial_weight: 100
      admin: ready
      operational: up
      status: UP
      check: L7OK
      check_desc: Layer7 check passed
      up: true
    green:
      weight: 10
      initial_weight: 0
      admin: ready
      operational: up
      status: UP
      check: L7OK
      check_desc: Layer7 check passed
      up: true
commands:
  description: Runtime API commands sent, in order (in check mode, the commands that would be sent).
  returned: always
  type: list
  elements: str
  sample: ["set server credit-risk/green weight 10", "set server credit-risk/blue weight 90",
           "set server credit-risk_grpc/green weight 10", "set server credit-risk_grpc/blue weight 90"]
grpc_backend:
  description: The gRPC backend whose weights followed O(backend)'s, or null when there is none (or O(grpc=false)).
  returned: always
  type: str
  sample: credit-risk_grpc
grpc_after:
  description: Every server of the gRPC backend after the task (in check mode, predicted), like RV(after).
  returned: when RV(grpc_backend) is not null
  type: dict
ready:
  description: Whether each server addressed passes its health checks (after waiting, with O(wait_ready=true)).
  returned: always
  type: dict
  sample: {blue: true, green: true}
waited:
  description: Seconds spent waiting for the servers to become ready.
  returned: always
  type: float
  sample: 2.4
state_file:
  description: The server state file written after the change.
  returned: when a change was made and O(save_state=true)
  type: str
  sample: /var/lib/haproxy/server-state
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.modelfleet.serving.plugins.module_utils.router_weights import ARGUMENT_SPEC, run


def build_module() -> AnsibleModule:
    return AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_one_of=[("server", "weights")],
        mutually_exclusive=[("server", "weights"), ("weight", "weights")],
        required_by=dict(weight="server"),
        supports_check_mode=True,
    )


def main() -> None:
    module = build_module()
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
