#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: model_server_restart
short_description: Restart model-server versions one slot at a time without failing a request
version_added: "0.1.0"
description:
  - Restarts C(modelfleet-serve@<model>-<version>) systemd instances, for example after their environment file or
    the unit changed, one at a time, so that the HAProxy router in front of them always has a serving slot.
  - The method is chosen per instance from the router's state right before its restart.
    V(drain) when the model's other slot is up and weighted (drain this slot, wait until nothing is in flight,
    restart, wait for readiness and for HAProxy to see it up, set it ready again).
    V(surge) when this slot is the only one serving (a stand-in of the same version starts in the free slot and
    takes the weight meanwhile, then stops).
    V(deferred) when the other slot is up at weight 0, a canary waiting in a rollout (not restarted, since its traffic
    would go to an untested version).
    V(idle) when this slot serves nothing now (restarted directly).
    V(undrained) when O(router_socket) is empty, a host without router (restarted directly).
  - Weights are never changed permanently; a failed restart leaves the router with a serving slot (see notes).
author:
  - modelfleet contributors (@modelfleet)
options:
  instances:
    description:
      - Instances to restart, C(<model>-<version>), each with an environment file in O(config_dir)C(/serve).
      - Instances that are not running are skipped (a restart would start them).
    type: list
    elements: str
  model:
    description:
      - Restart every configured, running instance of this model (instead of O(instances)).
    type: str
  only_stale:
    description:
      - Restart only instances whose process started before their environment file or O(unit_file) last changed.
    type: bool
    default: false
  config_dir:
    description:
      - The model_server role's configuration directory (environment files in its C(serve) directory).
    type: path
    default: /etc/modelfleet
  unit_file:
    description:
      - The systemd unit template; with O(only_stale=true) a change to it makes every instance stale.
    type: path
    default: /etc/systemd/system/modelfleet-serve@.service
  router_socket:
    description:
      - HAProxy's admin-level runtime API socket of the router on this host. Empty for a host without router.
    type: path
    default: /run/haproxy/admin.sock
  ready_timeout:
    description:
      - Seconds to wait for a restarted server (or a stand-in) to be ready, and for HAProxy to see it up.
    type: int
    default: 300
  drain_timeout:
    description:
      - Seconds to wait for a drained slot to have nothing in flight before restarting anyway (the server
        finishes what it has on SIGTERM).
    type: int
    default: 30
  timeout:
    description:
      - Seconds to wait for each runtime API reply.
    type: float
    default: 10
  journal_lines:
    description:
      - Journal lines of a server that did not become ready, in the error message.
    type: int
    default: 20
requirements:
  - systemd, and HAProxy 2.0 or later with an admin-level C(stats socket) where there is a router.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Returns the plan (each instance and the method it would get now) and restarts nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - A server that does not become ready makes the module fail with its last journal lines. With V(drain) its slot
    stays drained (the other slot serves); with V(surge) the stand-in keeps serving at the slot's weight and the
    message says how to stop it. The router is never left without a serving slot by this module.
  - Run plays that use it with C(serial) over the serving hosts when clients reach several hosts; within a host
    the instances are restarted one at a time.
seealso:
  - module: modelfleet.serving.router_weight
"""

EXAMPLES = r"""
- name: Restart credit-risk's versions whose environment changed since they started
  modelfleet.serving.model_server_restart:
    model: credit-risk
    only_stale: true
  become: true

- name: Restart one version
  modelfleet.serving.model_server_restart:
    instances: [credit-risk-3]
  become: true
"""

RETURN = r"""
plan:
  description: Each instance to restart with the method it gets (decided again right before its restart).
  returned: always
  type: list
  elements: dict
  sample: [{instance: credit-risk-3, slot: blue, method: surge, reason: "the only serving slot: ..."}]
restarted:
  description: Instances restarted, with method, slot and seconds taken.
  returned: always
  type: list
  elements: dict
  sample: [{instance: credit-risk-3, slot: blue, method: surge, reason: "...", seconds: 7.2}]
deferred:
  description: Instances not restarted because a rollout is under way beside them.
  returned: always
  type: list
  elements: str
  sample: [credit-risk-3]
not_restarted:
  description: Instances left alone, with the reason (not running, or current with O(only_stale=true)).
  returned: always
  type: dict
  sample: {credit-risk-2: not running}
daemon_reload:
  description: Whether systemd had to reload its units first (a unit file changed since it was loaded).
  returned: always
  type: bool
steps:
  description: Every systemctl call and runtime API change made, in order.
  returned: always
  type: list
  elements: str
"""

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.modelfleet.serving.plugins.module_utils.haproxy_runtime import RuntimeApi, RuntimeApiError
from ansible_collections.modelfleet.serving.plugins.module_utils.serve_restart import (
    Instance,
    Restarter,
    RestartError,
    configured,
    is_stale,
    load,
)

ARGUMENT_SPEC = dict(
    instances=dict(type="list", elements="str"),
    model=dict(type="str"),
    only_stale=dict(type="bool", default=False),
    config_dir=dict(type="path", default="/etc/modelfleet"),
    unit_file=dict(type="path", default="/etc/systemd/system/modelfleet-serve@.service"),
    router_socket=dict(type="path", default="/run/haproxy/admin.sock"),
    ready_timeout=dict(type="int", default=300),
    drain_timeout=dict(type="int", default=30),
    timeout=dict(type="float", default=10),
    journal_lines=dict(type="int", default=20),
)


class Systemctl:
    """systemd through systemctl and journalctl."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.systemctl = module.get_bin_path("systemctl", required=True)
        self.reload_needed = False  # a unit read had NeedDaemonReload=yes (its file changed since systemd loaded it)

    def run(self, verb: str, unit: str) -> None:
        rc, out, err = self.module.run_command([self.systemctl, verb, unit])
        if rc != 0:
            raise RestartError("systemctl %s %s failed (rc %d): %s" % (verb, unit, rc, (err or out).strip()))

    def started_at(self, unit: str) -> t.Optional[float]:
        rc, out, err = self.module.run_command(
            [self.systemctl, "show", "--property=ActiveState,ExecMainStartTimestampMonotonic,NeedDaemonReload", unit]
        )
        if rc != 0:
            raise RestartError("systemctl show %s failed (rc %d): %s" % (unit, rc, (err or out).strip()))
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.reload_needed = self.reload_needed or values.get("NeedDaemonReload") == "yes"
        monotonic_us = int(values.get("ExecMainStartTimestampMonotonic") or 0)
        if values.get("ActiveState") not in ("active", "activating", "reloading") or not monotonic_us:
            return None
        # systemd's monotonic clock is CLOCK_MONOTONIC, as Python's time.monotonic on Linux.
        return time.time() - (time.monotonic() - monotonic_us / 1e6)

    def journal(self, unit: str, lines: int) -> str:
        journalctl = self.module.get_bin_path("journalctl")
        if not journalctl:
            return "(no journalctl)"
        rc, out, err = self.module.run_command([journalctl, "-u", unit, "-n", str(lines), "--no-pager", "-o", "cat"])
        return out if rc == 0 else "(journalctl failed: %s)" % err.strip()


def probe(host: str, port: int) -> bool:
    """The server's readiness endpoint answers 200."""
    url = "http://%s:%d/v2/health/ready" % ("[%s]" % host if ":" in host else host, port)
    try:
        return bool(open_url(url, method="GET", timeout=2, validate_certs=False).getcode() == 200)
    except Exception:
        return False


def select(module: AnsibleModule, services: Systemctl) -> tuple[list[Instance], dict[str, str]]:
    params = module.params
    names = params["instances"]
    if names is None:
        names = configured(params["config_dir"], params["model"])
    chosen, skipped = [], {}
    for name in names:
        instance = load(params["config_dir"], name)
        started = services.started_at(instance.unit)
        if started is None:
            skipped[name] = "not running"
        elif params["only_stale"] and not is_stale(instance, started, params["unit_file"]):
            skipped[name] = "running with its current configuration"
        else:
            chosen.append(instance)
    return chosen, skipped


def run(module: AnsibleModule, services: t.Any = None) -> dict[str, t.Any]:
    params = module.params
    result: dict[str, t.Any] = dict(
        changed=False, plan=[], restarted=[], deferred=[], not_restarted={}, steps=[], daemon_reload=False
    )
    for name in ("ready_timeout", "drain_timeout", "journal_lines"):
        if params[name] < 0:
            module.fail_json(msg="%s must be >= 0, not %d" % (name, params[name]), **result)
    services = services or Systemctl(module)
    api = RuntimeApi(params["router_socket"], timeout=params["timeout"]) if params["router_socket"] else None
    restarter = Restarter(
        services,
        api,
        probe,
        ready_timeout=params["ready_timeout"],
        drain_timeout=params["drain_timeout"],
        journal_lines=params["journal_lines"],
    )
    try:
        chosen, result["not_restarted"] = select(module, services)
        for instance in chosen:
            method, reason = restarter.plan(instance)
            result["plan"].append(dict(instance=instance.name, slot=instance.slot, method=method, reason=reason))
        result["daemon_reload"] = bool(chosen) and bool(getattr(services, "reload_needed", False))
        if module.check_mode:
            result["changed"] = any(entry["method"] != "deferred" for entry in result["plan"])
            result["deferred"] = [entry["instance"] for entry in result["plan"] if entry["method"] == "deferred"]
            return result
        if result["daemon_reload"]:
            restarter.steps.append("systemctl daemon-reload")
            rc, out, err = module.run_command([services.systemctl, "daemon-reload"])
            if rc != 0:
                raise RestartError("systemctl daemon-reload failed (rc %d): %s" % (rc, (err or out).strip()))
        for instance in chosen:
            outcome = restarter.restart(instance)
            if outcome["method"] == "deferred":
                result["deferred"].append(instance.name)
            else:
                result["restarted"].append(outcome)
                result["changed"] = True
    except (RestartError, RuntimeApiError, OSError) as exc:
        result.update(steps=restarter.steps, changed=result["changed"] or bool(restarter.steps))
        module.fail_json(msg=str(exc), **result)
    result["steps"] = restarter.steps
    for warning in restarter.warnings:
        module.warn(warning)
    return result


def build_module() -> AnsibleModule:
    return AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_one_of=[("instances", "model")],
        mutually_exclusive=[("instances", "model")],
        supports_check_mode=True,
    )


def main() -> None:
    module = build_module()
    module.exit_json(**run(module))


if __name__ == "__main__":
    main()
