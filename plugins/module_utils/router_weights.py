# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Weights and admin states of a model's router slots, set through HAProxy's runtime API.

The logic of the router_weight module, shared with rollout_publish (which sets a rollout step's weights in the
same run as it writes the step's files): validation, the plan of runtime API commands, the gRPC companion
backend, waiting for readiness, saving HAProxy's server state.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

import typing as t

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


def run(module: t.Any, params: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    """Set the weights and states that ``params`` (router_weight's options; default ``module.params``) ask for,
    through HAProxy's runtime API; fails the module (``module.fail_json``) with a specific message."""
    params = module.params if params is None else params
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
