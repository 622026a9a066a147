# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: rollout_reconcile
short_description: What brings a serving host back in line with its fleet after it was lost mid-rollout
version_added: "0.1.0"
description:
  - Compares a host's release record of a model with the rollout state kept on the serving hosts
    (C(<model>.rollout.json), the newest copy wins) and, without a state of its canary, with the other hosts'
    release records.
  - Returns C(abort) when the fleet rolled the host's canary back (the state ended rolled back or aborted, or no
    other host runs that version), C(promote) when the fleet promoted it from the same stable version, and
    C(none) otherwise (no canary recorded, a rollout still under way, or nothing to compare with).
  - Only a finished rollout or the other hosts' records decide; anything unclear is C(none), never a guess.
author:
  - modelfleet contributors (@modelfleet)
options:
  _input:
    description: This host's release record (C(model), C(stable), C(canary), C(previous)).
    type: dict
    required: true
  peers:
    description: The other hosts' release records of the model.
    type: list
    elements: dict
    required: true
  states:
    description:
      - Copies of the rollout state from the serving hosts, as slurped (base64) or as JSON text or mappings.
        A copy that cannot be read, or of another model, is ignored.
    type: list
    elements: raw
    required: true
"""

EXAMPLES = r"""
- name: Decide how this host rejoins the fleet
  ansible.builtin.set_fact:
    reconcile: "{{ model_server_release | modelfleet.serving.rollout_reconcile(peer_records, state_copies) }}"
"""

RETURN = r"""
_value:
  description: C(action) (V(none), V(abort) or V(promote)) and C(reason), one sentence.
  type: dict
"""

import base64
import json

ENDED_BACK = ("rolled_back", "aborted")


def _version(release):
    if isinstance(release, dict) and release.get("version") is not None:
        return str(release["version"])
    return None


def _parsed(copy):
    """A state copy as a mapping, or None when it cannot be read."""
    if isinstance(copy, dict):
        return copy
    if not isinstance(copy, str):
        return None
    for text in (copy, None):
        if text is None:
            try:
                text = base64.b64decode(copy, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None
        try:
            data = json.loads(text)
        except ValueError:
            continue
        return data if isinstance(data, dict) else None
    return None


def _newest_state(states, model, canary):
    """The newest state copy of this model's rollout of ``canary``."""
    found = None
    for copy in states or []:
        state = _parsed(copy)
        if state is None or state.get("model") != model or str(state.get("canary")) != canary:
            continue
        try:
            updated = float(state.get("updated_at") or 0)
        except (TypeError, ValueError):
            continue
        if found is None or updated > found[0]:
            found = (updated, state)
    return found[1] if found else None


def rollout_reconcile(record, peers, states):
    """``{'action': 'none'|'abort'|'promote', 'reason': str}`` for a host with ``record`` among ``peers``."""
    record = record or {}
    model = record.get("model")
    canary = _version(record.get("canary"))
    stable = _version(record.get("stable"))
    if canary is None:
        return {"action": "none", "reason": "no canary recorded: nothing to reconcile"}
    state = _newest_state(states, model, canary)
    if state is not None:
        phase = str(state.get("phase"))
        if phase in ENDED_BACK:
            return {"action": "abort",
                    "reason": "the fleet's rollout of canary %s ended %s (state kept on the serving hosts): its "
                              "canary is stopped here too and the stable version %s gets all traffic"
                              % (canary, phase, stable)}
        if phase == "promoted":
            if str(state.get("stable")) == stable:
                return {"action": "promote",
                        "reason": "the fleet promoted canary %s over stable %s (state kept on the serving hosts): "
                                  "it becomes stable here too" % (canary, stable)}
            return {"action": "none",
                    "reason": "the fleet promoted canary %s over stable %s, but this host's stable is %s: left as it "
                              "is" % (canary, state.get("stable"), stable)}
        return {"action": "none", "reason": "the rollout of canary %s is %s: it goes on" % (canary, phase)}
    records = [peer for peer in peers or [] if isinstance(peer, dict)]
    if not records:
        return {"action": "none", "reason": "no rollout state of canary %s and no other host to compare with" % canary}
    running = [peer for peer in records if canary in (_version(peer.get("canary")), _version(peer.get("stable")))]
    if not running:
        return {"action": "abort",
                "reason": "no other host runs version %s (no rollout state of it): its canary is stopped here and the "
                          "stable version %s gets all traffic" % (canary, stable)}
    return {"action": "none",
            "reason": "other hosts run version %s too and no finished rollout says otherwise" % canary}


class FilterModule(object):
    """The rollout filters."""

    def filters(self):
        return {"rollout_reconcile": rollout_reconcile}
