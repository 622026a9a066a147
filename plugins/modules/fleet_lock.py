#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: fleet_lock
short_description: Take or release a lock file on a fleet host, naming its owner
version_added: "0.1.0"
description:
  - Keeps a lock with the fleet rather than on one controller, so that two deploys of the same model from two
    controllers (CI runners, AWX nodes, laptops) cannot run at once.
  - "O(state=present) creates O(path) atomically with the owner, the controller, its process id and the time.
    A lock held by another owner is refused with an error that names that owner, its controller, pid and the
    lock's age. The same O(owner) takes its own lock again (a rerun after an interruption)."
  - A lock taken before O(stale_before) is broken (explicitly, never by a timeout) and the result names whose it
    was. A file at O(path) that this module did not write counts as held by an unknown owner since its
    modification time.
  - O(state=absent) removes the lock if O(owner) holds it; another owner's lock is left in place.
  - Standard library only, so it runs on hosts without the modelfleet runtime.
author:
  - modelfleet contributors (@modelfleet)
options:
  path:
    description:
      - The lock file, for example C(/var/lib/modelfleet/releases/<model>.lock). Its directory is created if missing.
    type: path
    required: true
  state:
    description:
      - V(present) takes the lock, V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Who takes the lock, for example C(user@controller). Runs with the same owner share it.
    type: str
    required: true
  controller:
    description:
      - The host the run comes from (recorded, shown to whoever is refused).
    type: str
    default: ""
  pid:
    description:
      - The process id of the run on the controller (recorded, shown to whoever is refused).
    type: int
    default: 0
  purpose:
    description:
      - What the lock is taken for (recorded, shown to whoever is refused), for example C(deploy credit-risk v3).
    type: str
    default: ""
  stale_before:
    description:
      - With O(state=present), break another owner's lock taken before this time (seconds since the epoch).
        Give the current time to break any lock.
    type: float
requirements:
  - python >= 3.6 on the host
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports whether the lock would be taken, broken or released, and refuses as a real run would.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - The lock is advisory; the modelfleet playbooks take it on every serving host before they change anything.
seealso:
  - module: modelfleet.serving.model_rollout
"""

EXAMPLES = r"""
- name: Lock the rollouts of credit-risk on every serving host
  modelfleet.serving.fleet_lock:
    path: /var/lib/modelfleet/releases/credit-risk.lock
    owner: "{{ lookup('ansible.builtin.env', 'USER') }}@{{ lookup('ansible.builtin.pipe', 'hostname') }}"
    purpose: deploy credit-risk v3

- name: Break the lock a vanished CI runner left (explicitly)
  modelfleet.serving.fleet_lock:
    path: /var/lib/modelfleet/releases/credit-risk.lock
    owner: ops@bastion
    stale_before: "{{ now(utc=true).timestamp() }}"

- name: Release it
  modelfleet.serving.fleet_lock:
    path: /var/lib/modelfleet/releases/credit-risk.lock
    owner: ops@bastion
    state: absent
"""

RETURN = r"""
msg:
  description: What was done.
  returned: always
  type: str
  sample: "/var/lib/modelfleet/releases/credit-risk.lock: taken"
holder:
  description: The lock as recorded after the run (O(state=present)); on refusal, the other owner's lock.
  returned: when O(state=present)
  type: dict
  sample: {"owner": "ci@runner-7", "controller": "runner-7", "pid": 4242, "purpose": "deploy credit-risk v3",
           "acquired_at": 1765000000.0, "format": 1}
broken:
  description: The lock that was broken because it was older than O(stale_before).
  returned: when a lock was broken
  type: dict
age_seconds:
  description: On refusal, how long the other owner has held the lock.
  returned: when refused
  type: float
"""

import contextlib
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.modelfleet.serving.plugins.module_utils import fleet_lock


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            owner=dict(type="str", required=True),
            controller=dict(type="str", default=""),
            pid=dict(type="int", default=0),
            purpose=dict(type="str", default=""),
            stale_before=dict(type="float"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params["owner"].strip():
        module.fail_json(msg="owner must not be empty: it is how a lock tells its runs apart")
    now = time.time()
    try:
        if params["state"] == "absent":
            changed, message = fleet_lock.release(params["path"], params["owner"], now, check=module.check_mode)
            module.exit_json(changed=changed, msg=message)
        changed, message, holder, broken = fleet_lock.acquire(
            params["path"], params["owner"], params["controller"], params["pid"], params["purpose"], now,
            stale_before=params["stale_before"], check=module.check_mode)
    except fleet_lock.LockError as exc:
        held = None
        with contextlib.suppress(fleet_lock.LockError):
            held = fleet_lock.read(params["path"])
        extra = {}
        if held is not None:
            extra["holder"] = held
            since = held.get("acquired_at")
            if isinstance(since, (int, float)):
                extra["age_seconds"] = round(now - since, 1)
        module.fail_json(msg=str(exc), **extra)
    result = dict(changed=changed, msg=message, holder=holder)
    if broken is not None:
        result["broken"] = broken
        module.warn(message)
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
