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

import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.modelfleet.serving.plugins.module_utils.haproxy_runtime import (
    WEIGHT_MAX,
    WEIGHT_MIN,
    RuntimeApi,
    RuntimeApiError,
    ServerInfo,
)

ARGUMENT_SPEC = dict(
    socket=dict(type="path", default="/run/haproxy/admin.sock"),
    backend=dict(type="str", required=True),
    server=dict(type="str"),
    weight=dict(type="int"),
    weights=dict(type="dict"),
    state=dict(type="str", choices=["ready", "drain", "maint"]),
    grpc=dict(type="bool", default=True),
    wait_ready=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=60),
    timeout=dict(type="float", default=10),
    save_state=dict(type="bool", default=True),
    state_file=dict(type="path", default="/var/lib/haproxy/server-state"),
)

# The modelfleet router's gRPC backend of a model is named like the model with this suffix.
GRPC_SUFFIX = "_grpc"

# Order of admin states by how much traffic they admit: raising comes first, lowering last.
_OPENNESS = {"maint": 0, "drain": 1, "ready": 2}


def requested_weights(params: dict[str, t.Any]) -> dict[str, int]:
    """The weights asked for, by server, validated (raises ValueError with a readable message)."""
    if params.get("weights") is not None:
        raw = dict(params["weights"])
        if not raw:
            raise ValueError("weights must name at least one server")
    elif params.get("weight") is not None:
        raw = {params["server"]: params["weight"]}
    else:
        return {}
    weights = {}
    for server, value in raw.items():
        if isinstance(value, bool):
            raise ValueError("weight of %s must be an integer, not %r" % (server, value))
        try:
            weight = int(str(value).strip())
        except ValueError:
            raise ValueError("weight of %s must be an integer, not %r" % (server, value)) from None
        if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
            raise ValueError(
                "weight of %s is %d; HAProxy weights are %d to %d" % (server, weight, WEIGHT_MIN, WEIGHT_MAX)
            )
        weights[str(server)] = weight
    return weights


def addressed_servers(params: dict[str, t.Any]) -> list[str]:
    if params.get("weights"):
        return [str(name) for name in params["weights"]]
    return [params["server"]]


def plan(
    backend: str, current: dict[str, ServerInfo], weights: dict[str, int], states: dict[str, str]
) -> tuple[list[str], list[str]]:
    """Runtime API commands to reach the requested weights and states: (before waiting, after waiting).

    Admin states that admit more traffic come first (a server leaving maintenance must be checked before
    it can be waited for); then weights that go up, weights that go down, and states that admit less.
    """
    opening, closing, raising, lowering = [], [], [], []
    for server, state in states.items():
        now = current[server].admin
        if state != now:
            command = "set server %s/%s state %s" % (backend, server, state)
            (opening if _OPENNESS[state] > _OPENNESS[now] else closing).append(command)
    for server, weight in weights.items():
        now = current[server].weight
        if weight != now:
            command = "set server %s/%s weight %d" % (backend, server, weight)
            (raising if weight > now else lowering).append(command)
    return opening, raising + lowering + closing


def grpc_companion(api: RuntimeApi, backend: str) -> tuple[str, dict[str, ServerInfo]] | None:
    """The model's gRPC backend (``<backend>_grpc``) and its servers, or None when HAProxy has no such backend."""
    name = backend + GRPC_SUFFIX
    try:
        return name, api.servers(name)
    except RuntimeApiError as exc:
        if str(exc).startswith("unknown backend"):
            return None
        raise


def predict(current: dict[str, ServerInfo], weights: dict[str, int], states: dict[str, str]) -> dict[str, t.Any]:
    predicted = {}
    for name, info in current.items():
        entry = info.as_dict()
        if name in weights:
            entry["weight"] = weights[name]
        if name in states:
            entry["admin"] = states[name]
            entry["up"] = entry["up"] and states[name] != "maint"
        predicted[name] = entry
    return predicted


def diff_text(backend: str, servers: dict[str, dict[str, t.Any]]) -> str:
    return "".join(
        "%s/%s: weight %d, %s\n" % (backend, name, entry["weight"], entry["admin"]) for name, entry in servers.items()
    )


def run(module: AnsibleModule) -> dict[str, t.Any]:
    params = module.params
    backend = params["backend"]
    try:
        weights = requested_weights(params)
    except ValueError as exc:
        module.fail_json(msg=str(exc), backend=backend)
    if params["wait_timeout"] < 0:
        module.fail_json(msg="wait_timeout must be >= 0, not %d" % params["wait_timeout"], backend=backend)
    servers = addressed_servers(params)
    states = {name: params["state"] for name in servers} if params["state"] else {}

    api = RuntimeApi(params["socket"], timeout=params["timeout"])
    result: dict[str, t.Any] = dict(changed=False, backend=backend, commands=[], waited=0.0)
    result["grpc_backend"] = None
    try:
        current = api.servers(backend)
        companion = grpc_companion(api, backend) if params["grpc"] and weights else None
    except RuntimeApiError as exc:
        module.fail_json(msg=str(exc), **result)
    unknown = [name for name in servers if name not in current]
    if unknown:
        module.fail_json(
            msg="backend %s has no server %s (it has: %s)"
            % (backend, ", ".join(repr(name) for name in unknown), ", ".join(current) or "no servers"),
            **result,
        )

    grpc_commands: list[str] = []
    if companion is not None:
        grpc_backend, grpc_current = companion
        missing = [name for name in weights if name not in grpc_current]
        if missing:
            module.fail_json(
                msg="gRPC backend %s has no server %s (it has: %s); its weights would not follow %s's"
                % (grpc_backend, ", ".join(repr(name) for name in missing), ", ".join(grpc_current) or "no servers",
                   backend),
                **result,
            )
        result["grpc_backend"] = grpc_backend
        grpc_commands = plan(grpc_backend, grpc_current, weights, {})[1]

    before = {name: info.as_dict() for name, info in current.items()}
    result["before"] = before
    opening, rest = plan(backend, current, weights, states)
    rest = rest + grpc_commands
    commands = opening + rest
    result["commands"] = commands
    result["changed"] = bool(commands)
    waiting_for = [
        name for name in servers if states.get(name, current[name].admin) != "maint" and weights.get(name) != 0
    ]

    if module.check_mode:
        result["after"] = predict(current, weights, states)
        if companion is not None:
            result["grpc_after"] = predict(companion[1], weights, {})
        result["ready"] = {name: current[name].up for name in servers}
    else:
        sent: list[str] = []
        try:
            for command in opening:
                api.change(command)
                sent.append(command)
            if params["wait_ready"] and waiting_for:
                current, waited = api.wait_up(backend, waiting_for, params["wait_timeout"])
                result["waited"] = round(waited, 3)
            for command in rest:
                api.change(command)
                sent.append(command)
            final = api.servers(backend) if commands else current
            if companion is not None:
                result["grpc_after"] = {
                    name: info.as_dict()
                    for name, info in (api.servers(companion[0]) if grpc_commands else companion[1]).items()
                }
        except RuntimeApiError as exc:
            result.update(commands=sent, changed=bool(sent))
            module.fail_json(msg=str(exc), **result)
        result["after"] = {name: info.as_dict() for name, info in final.items()}
        result["ready"] = {name: final[name].up for name in servers}
        if commands and params["save_state"]:
            try:
                api.save_state(params["state_file"])
            except (RuntimeApiError, OSError) as exc:
                module.fail_json(
                    msg="the change was made, but HAProxy's server state file %s could not be written "
                    "(a restart would load older weights): %s" % (params["state_file"], exc),
                    **result,
                )
            result["state_file"] = params["state_file"]

    if module._diff:
        header = "haproxy %s:%s" % (params["socket"], backend)
        before_text, after_text = diff_text(backend, before), diff_text(backend, result["after"])
        if companion is not None:
            grpc_backend, grpc_current = companion
            before_text += diff_text(grpc_backend, {name: info.as_dict() for name, info in grpc_current.items()})
            after_text += diff_text(grpc_backend, result["grpc_after"])
        result["diff"] = dict(
            before=before_text,
            after=after_text,
            before_header=header,
            after_header=header,
        )
    return result


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
