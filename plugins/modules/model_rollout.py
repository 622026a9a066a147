#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: model_rollout
short_description: Canary analysis and rollout decisions for a model version, gated on Prometheus
version_added: "0.1.0"
description:
  - Drives the canary rollout of a model version from the controller. The playbook sets the weights on the
    serving hosts' routers; this module plans the rollout, keeps its state, waits out each step, queries
    Prometheus, and decides whether to advance, hold, promote or roll back.
  - "The loop: O(action=start) returns the first canary weight; the playbook sets it on every serving host and
    calls O(action=analyze), which waits until the step's interval has passed since the weights were set, judges
    the canary on every gate and returns the decision and the next weight. The playbook repeats while RV(phase)
    is V(progressing), then promotes (RV(phase)=V(promoting)) or rolls back (V(rolling_back)) on the hosts and
    calls O(action=finish)."
  - "Gates: the canary target is up on every host at every scrape of the step and did not restart (a killed or
    crashing canary fails the step); at least C(min_requests) canary requests (fewer is inconclusive, never a
    pass); error ratio; p99 latency; p99 and error ratio compared with the stable version (not applicable when the
    stable gets no traffic); max feature and prediction PSI from the drift exporter; accuracy when labels exist
    (no labels: not applicable). No data, NaN, +Inf or an unreachable Prometheus is inconclusive, never a pass.
    Every gate's PromQL, value, threshold and verdict is returned and kept in the state."
  - "Decisions: any gate failed counts a failure and rolls back at C(failure_limit), else holds the step; any
    gate inconclusive holds, and rolls back after more than C(inconclusive_limit) inconclusive analyses in a row;
    all passed advances, or promotes after the last step (promotion sets weight 100 even when the last step is
    lower)."
  - The state is a JSON file O(state_dir)/<model>.json, written atomically after every change, so an interrupted
    run resumes at the step it was on. O(action=start) with the same versions resumes; with a different canary
    while one is in progress it fails unless O(force=true). A finished rollout run again is a no-op.
  - "Every decision is returned (RV(decision), RV(reason), RV(gates)), logged, and exported as Prometheus text
    in RV(metrics) for node_exporter's textfile collector. See docs/rollout.md."
author:
  - modelfleet contributors (@modelfleet)
options:
  action:
    description:
      - V(plan) shows the plan (steps, weights, interval, gates with their PromQL, hosts) and changes nothing.
      - V(start) starts a rollout, or resumes the one in progress for the same versions.
      - V(analyze) waits for the current step's window, judges the canary and decides.
      - V(finish) records the end of a promotion or rollback the playbook has carried out on the hosts.
      - V(abort) stops the rollout (canary weight 0); the playbook then sets the weights on the hosts.
      - V(status) returns the state.
    type: str
    required: true
    choices: [plan, start, analyze, finish, status, abort]
  spec:
    description:
      - Path of the model spec (C(model.yml)) on the controller. Gives the model name, the canary version, the
        C(rollout) settings and the drift windows. Give an absolute path.
    type: path
  rollout:
    description:
      - C(rollout) settings as in the spec (C(steps), C(interval), C(min_requests), C(failure_limit),
        C(inconclusive_limit), C(gates)); merged over the spec's (C(gates) key by key) and validated the same way.
    type: dict
  model:
    description:
      - Model name. Defaults to the spec's C(name).
    type: str
  canary_version:
    description:
      - The version being rolled out. Defaults to the spec's C(version).
    type: str
  stable_version:
    description:
      - The version serving now. Required by O(action=plan) and O(action=start).
      - When it equals the canary, O(action=start) does nothing (the version is already stable).
    type: str
  state_dir:
    description:
      - Directory on the controller for the state files (C(<model>.json), finished ones under C(archive/)).
      - Required by every action except O(action=plan).
    type: path
  hosts:
    description:
      - Names of the serving hosts (the C(host) label of the model server targets in Prometheus). Every one must
        have an C(up) series for the canary; shown in the plan.
    type: list
    elements: str
    default: []
  reachable_hosts:
    description:
      - With O(action=analyze), the serving hosts the playbook still reaches (C(ansible_play_hosts)). A host of the
        rollout's plan missing from it is lost - unreachable, or failed and dropped from the play. The rollout then
        rolls back without analysing (RV(phase)=V(rolling_back), a reason naming the lost hosts), so the playbook
        restores the stable version on the reachable hosts; the next run reconciles the lost ones.
      - Empty (the default) compares nothing.
    type: list
    elements: str
    default: []
  interval:
    description:
      - Overrides C(rollout.interval), the time each step's traffic is observed (C(30s), C(5m)).
    type: str
  max_wait:
    description:
      - How much longer than the interval O(action=analyze) may wait while the analysis is inconclusive (for example
        fewer than C(min_requests) requests), polling Prometheus. C(0) disables it. Defaults to one interval.
    type: str
  weights_set_at:
    description:
      - Epoch seconds at which the playbook finished setting the current weights on every host. Without it the
        window of a new step starts when O(action=analyze) is first called for it.
    type: float
  prometheus_url:
    description:
      - Base URL of the Prometheus HTTP API (C(http://monitor:9090)). Required by O(action=analyze).
    type: str
  prometheus_headers:
    description:
      - Extra HTTP headers for the queries (for example a tenant header).
    type: dict
    default: {}
  prometheus_username:
    description:
      - User for HTTP basic authentication.
    type: str
  prometheus_password:
    description:
      - Password for HTTP basic authentication.
    type: str
  prometheus_bearer_token:
    description:
      - Bearer token sent as C(Authorization) header (an authenticating proxy in front of Prometheus). Excludes
        O(prometheus_username).
    type: str
  validate_certs:
    description:
      - Verify Prometheus' TLS certificate.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle for Prometheus' TLS certificate.
    type: path
  timeout:
    description:
      - Seconds each Prometheus query may take.
    type: float
    default: 10
  drift_window:
    description:
      - The C(window) label of the drift exporter's series used by the PSI and accuracy gates. Defaults to the
        shortest of the spec's C(drift.windows) (C(5m) without a spec).
    type: str
  serve_job:
    description:
      - Prometheus job of the model server targets (for the C(up) gate).
    type: str
    default: modelfleet-serve
  force:
    description:
      - With O(action=start), replace a rollout in progress for another canary (it is recorded as aborted), or
        start again a rollout that already ended.
    type: bool
    default: false
  fleet_states:
    description:
      - Copies of the rollout state kept on the serving hosts (C(<model>.rollout.json) beside the release records),
        base64-encoded as M(ansible.builtin.slurp) returns them; missing copies are left out. When the newest is
        newer than the state in O(state_dir), it is adopted first (this controller's state of other versions is
        archived), so any controller resumes a rollout another one began. The rollout role passes them and
        copies the state file back to the hosts after every change. Not adopted in check mode (a warning says so).
    type: list
    elements: str
    default: []
  canary_since:
    description:
      - With O(action=start), when the serving hosts started the canary (seconds since the epoch; the release
        record's C(canary.since)). An earlier rollout of the model that ended (the same versions deployed again
        after a rollback), or that started before this time (a fleet rebuilt under it), is then history; it is
        archived and the rollout starts afresh instead of resuming or being refused. Without it, only O(force)
        starts again.
    type: float
  reason:
    description:
      - Why the rollout is aborted (recorded with O(action=abort)).
    type: str
    default: ""
requirements:
  - python >= 3.11
  - modelfleet (the C(modelfleet) Python distribution) on the controller
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - V(plan) and V(start) return the plan and whether a rollout would start; V(analyze) returns the queries it
        would run and how long it would wait, without waiting or querying; nothing is written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the rollout state (phase, step, weight, counts) before and after.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - "Runs on the controller (C(delegate_to: localhost), C(run_once: true)); it does not touch the serving hosts."
  - O(action=analyze) blocks for the step's interval (plus up to O(max_wait)); give the task an C(async) or a
    long enough connection timeout when steps are long.
  - Weights are percentages of traffic to the canary; RV(stable_weight) is what the stable gets.
seealso:
  - name: Canary rollouts in modelfleet
    description: The rollout flow, gates and their PromQL, decisions, state and metrics.
    link: https://github.com/modelfleet/modelfleet/blob/main/docs/rollout.md
"""

EXAMPLES = r"""
- name: Show the plan (steps, gates and their PromQL)
  modelfleet.serving.model_rollout:
    action: plan
    spec: /srv/models/credit-risk/model.yml
    stable_version: "2"
    hosts: "{{ groups['serving'] }}"
  delegate_to: localhost
  run_once: true

- name: Start (or resume) the rollout
  modelfleet.serving.model_rollout:
    action: start
    spec: /srv/models/credit-risk/model.yml
    stable_version: "2"
    state_dir: /var/lib/modelfleet/rollouts
    hosts: "{{ groups['serving'] }}"
  delegate_to: localhost
  run_once: true
  register: rollout

- name: Analyse the current step (after the weights were set on every host)
  modelfleet.serving.model_rollout:
    action: analyze
    model: credit-risk
    state_dir: /var/lib/modelfleet/rollouts
    prometheus_url: http://monitor:9090
    weights_set_at: "{{ now().timestamp() }}"
  delegate_to: localhost
  run_once: true
  register: rollout

- name: Record the end after promoting or rolling back on the hosts
  modelfleet.serving.model_rollout:
    action: finish
    model: credit-risk
    state_dir: /var/lib/modelfleet/rollouts
  delegate_to: localhost
  run_once: true

- name: Abort a rollout by hand
  modelfleet.serving.model_rollout:
    action: abort
    model: credit-risk
    state_dir: /var/lib/modelfleet/rollouts
    reason: customer complaints
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
decision:
  description:
    - What this call decided or did. V(start), V(resume), V(advance), V(promote), V(hold), V(rollback), V(promoted),
      V(rolled_back), V(abort), or V(none) (nothing to do, O(action=status), O(action=plan), check mode of analyze).
  returned: always
  type: str
  sample: advance
reason:
  description: The decision as a sentence, with the numbers behind it.
  returned: always
  type: str
  sample: >-
    step 1/3 (canary 3 at 10%) passed all 7 gates, 1520 canary requests in 61 s (min_requests 100):
    advancing to step 2/3 at 50%.
model:
  description: Model name.
  returned: always
  type: str
  sample: credit-risk
phase:
  description:
    - V(progressing), V(promoting), V(promoted), V(rolling_back), V(rolled_back), V(aborted); V(none) when there is no
      rollout of the model.
  returned: when there is a rollout, or nothing to do
  type: str
  sample: progressing
weight:
  description: Canary traffic weight (percent) to set on every host now (0 on rollback, 100 on promotion).
  returned: when there is a rollout
  type: float
  sample: 50
stable_weight:
  description: The stable version's weight that goes with it.
  returned: when there is a rollout
  type: float
  sample: 50
step:
  description: Current step, 1-based.
  returned: when there is a rollout
  type: int
  sample: 2
steps:
  description: The canary weights of the plan, step by step.
  returned: when the versions are known
  type: list
  elements: float
  sample: [10, 50, 100]
stable_version:
  description: The stable version.
  returned: when the versions are known
  type: str
  sample: "2"
canary_version:
  description: The canary version.
  returned: when the versions are known
  type: str
  sample: "3"
failures:
  description: Failed analyses so far in this rollout.
  returned: when there is a rollout
  type: int
  sample: 0
inconclusive:
  description: Consecutive inconclusive analyses.
  returned: when there is a rollout
  type: int
  sample: 0
verdict:
  description: Overall verdict of the analysis, V(pass), V(fail) or V(inconclusive).
  returned: after an analysis
  type: str
  sample: pass
gates:
  description: Every gate of the analysis.
  returned: after an analysis
  type: list
  elements: dict
  contains:
    name:
      description: Gate name (C(canary_up), C(canary_restarts), C(requests), C(error_rate), C(p99_latency_ms), ...).
      type: str
    verdict:
      description: V(pass), V(fail), V(inconclusive) or V(not_applicable).
      type: str
    value:
      description:
        - The measured point value (null when there was none), for the record; the verdict comes from confidence
          bounds, not from it (error ratio; the upper edge of the bucket holding the sample p99, in ms; for
          C(latency_vs_stable) the ratio of the canary's and the stable's such edges; max PSI).
      type: float
    threshold:
      description: The threshold.
      type: float
    evidence:
      description:
        - The test behind a traffic or drift gate's verdict, with its figures
          (sample sizes, errors, confidence bounds, margins, the error level of each bound).
      type: dict
    comparison:
      description: How value and threshold compare for a pass (C(<=) or C(>=)).
      type: str
    query:
      description: The PromQL that gives the value.
      type: str
    detail:
      description: A sentence with the numbers.
      type: str
  sample:
    - name: error_rate
      verdict: pass
      value: 0.0021
      threshold: 0.01
      comparison: "<="
      query: >-
        label_replace(sum(increase(nv_inference_request_failure_total{job="modelfleet-serve",model="credit-risk",
        version="3",reason!="invalid_request"}[61s])) or vector(0), "count", "errors", "", "") or
        label_replace(sum(increase({__name__=~"nv_inference_request_(success|failure)_total",job="modelfleet-serve",
        model="credit-risk",version="3"}[61s])), "count", "requests", "", "")
      detail: canary errors 3/1432 = 0.21%, at most 0.55% with 95% confidence <= limit 1%
      evidence: {test: Clopper-Pearson bounds, errors: 3, requests: 1432, lower: 0.0, upper: 0.0055,
                 lower_error: 6.9e-05, upper_error: 0.05, limit: 0.01}
window_seconds:
  description: Length of the analysed window.
  returned: after an analysis
  type: int
  sample: 61
waited_seconds:
  description: How long this call waited before deciding.
  returned: after an analysis
  type: float
  sample: 60.4
would_wait_seconds:
  description: How long O(action=analyze) would wait (check mode).
  returned: check mode of analyze
  type: float
  sample: 42.0
queries:
  description: Gates with their threshold and PromQL (for a window of one interval).
  returned: O(action=plan), check mode of start and analyze
  type: list
  elements: dict
plan:
  description:
    - The plan, with steps and weights, interval, limits, gates with PromQL, hosts, and C(judgement), the error
      budget of the statistical gates (alpha, beta, gates, looks per gate, the error level of one look's fail-side
      bound, the absolute margins).
  returned: O(action=plan), O(action=start)
  type: dict
metrics:
  description:
    - Prometheus text exposition of the rollout (C(modelfleet_rollout_*)) for node_exporter's textfile collector.
  returned: when there is a rollout
  type: str
  sample: |
    # HELP modelfleet_rollout_step Current step of the rollout (1-based).
    # TYPE modelfleet_rollout_step gauge
    modelfleet_rollout_step{model="credit-risk"} 2.0
rollout:
  description: The rollout state without its history (plan, phase, counts, timestamps).
  returned: when there is a rollout
  type: dict
history:
  description: Every analysis of the rollout (time, step, weight, window, verdict, decision, reason, gates).
  returned: O(action=status)
  type: list
  elements: dict
adopted:
  description: Whether the newer state kept on the serving hosts (O(fleet_states)) replaced this controller's.
  returned: when O(state_dir) is given
  type: bool
state_file:
  description: The state file.
  returned: when O(state_dir) is given
  type: str
  sample: /var/lib/modelfleet/rollouts/credit-risk.json
"""

import base64
import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.modelfleet.serving.plugins.module_utils.runtime import fail_with, import_runtime

NEEDS_STABLE = ("plan", "start")


def _argument_spec():
    return dict(
        action=dict(type="str", required=True, choices=["plan", "start", "analyze", "finish", "status", "abort"]),
        spec=dict(type="path"),
        rollout=dict(type="dict"),
        model=dict(type="str"),
        canary_version=dict(type="str"),
        stable_version=dict(type="str"),
        state_dir=dict(type="path"),
        hosts=dict(type="list", elements="str", default=[]),
        reachable_hosts=dict(type="list", elements="str", default=[]),
        interval=dict(type="str"),
        max_wait=dict(type="str"),
        weights_set_at=dict(type="float"),
        prometheus_url=dict(type="str"),
        prometheus_headers=dict(type="dict", default={}),
        prometheus_username=dict(type="str"),
        prometheus_password=dict(type="str", no_log=True),
        prometheus_bearer_token=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        timeout=dict(type="float", default=10.0),
        drift_window=dict(type="str"),
        serve_job=dict(type="str", default="modelfleet-serve"),
        force=dict(type="bool", default=False),
        canary_since=dict(type="float"),
        fleet_states=dict(type="list", elements="str", default=[]),
        reason=dict(type="str", default=""),
    )


def build_module():
    return AnsibleModule(
        argument_spec=_argument_spec(),
        required_if=[
            ("action", "start", ("state_dir", "stable_version")),
            ("action", "plan", ("stable_version",)),
            ("action", "analyze", ("state_dir", "prometheus_url")),
            ("action", "finish", ("state_dir",)),
            ("action", "status", ("state_dir",)),
            ("action", "abort", ("state_dir",)),
        ],
        required_one_of=[("spec", "model")],
        required_together=[("prometheus_username", "prometheus_password")],
        mutually_exclusive=[("prometheus_username", "prometheus_bearer_token")],
        supports_check_mode=True,
    )


def _identity(params, spec):
    model = params["model"] or (spec.name if spec is not None else None)
    canary = params["canary_version"] or (spec.version if spec is not None else None)
    if spec is not None and params["model"] and params["model"] != spec.name:
        raise ValueError("model %r differs from the spec's name %r" % (params["model"], spec.name))
    return model, canary


def _plan(rt, params, spec, model, canary):
    plan_module = rt["plan"]
    settings = plan_module.rollout_settings(
        spec.rollout if spec is not None else None, params["rollout"], params["interval"]
    )
    if params["drift_window"]:
        drift_window = params["drift_window"]
    elif spec is not None:
        drift_window = plan_module.shortest_window(spec.drift.windows)
    else:
        drift_window = plan_module.DEFAULT_DRIFT_WINDOW
    return plan_module.build_plan(
        model=model,
        stable=params["stable_version"],
        canary=canary,
        rollout=settings,
        drift_window=drift_window,
        accuracy_applies=spec is None or spec.task.type == "classification",
        serve_job=params["serve_job"],
        hosts=params["hosts"],
    )


def _client(rt, params):
    return rt["prometheus"].PrometheusClient(
        url=params["prometheus_url"],
        timeout=params["timeout"],
        headers=params["prometheus_headers"] or {},
        username=params["prometheus_username"],
        password=params["prometheus_password"],
        bearer_token=params["prometheus_bearer_token"],
        validate_certs=params["validate_certs"],
        ca_path=params["ca_path"],
    )


def run_action(module, rt):
    """Carry out the action; returns the result dict (raises modelfleet errors)."""
    params = module.params
    action = params["action"]
    spec = rt["spec"].load_spec(params["spec"]) if params["spec"] else None
    model, canary = _identity(params, spec)
    if action in ("plan", "start") and not canary:
        raise rt["plan"].RolloutError("canary_version is needed (or a spec with a version)")
    store = rt["state"].StateStore(rt["pathlib"].Path(params["state_dir"])) if params["state_dir"] else None
    engine = rt["engine"].Engine(store, log=module.log) if store is not None else None
    max_wait = rt["plan"].parse_wait(params["max_wait"], 0.0) if params["max_wait"] is not None else None
    extra = {}
    if store is not None:
        adopted, notes = store.adopt(model, _decoded(params["fleet_states"]), check=module.check_mode)
        extra["adopted"] = adopted is not None
        for note in notes:
            module.warn(note)

    if action == "plan":
        plan = _plan(rt, params, spec, model, canary)
        outcome = rt["engine"].plan_outcome(plan)
        extra["plan"] = rt["describe"].describe_plan(plan)
    elif action == "start":
        if params["stable_version"] == canary:
            outcome = engine.already_stable(model, canary)
        else:
            plan = _plan(rt, params, spec, model, canary)
            outcome = engine.start(plan, force=params["force"], check=module.check_mode,
                                   canary_since=params["canary_since"])
            extra["plan"] = rt["describe"].describe_plan(outcome.state.plan if outcome.state is not None else plan)
    elif action == "analyze":
        requested = None
        if params["stable_version"] and canary and (spec is not None or params["rollout"]):
            requested = _plan(rt, params, spec, model, canary)
        source = None if module.check_mode else _client(rt, params)
        outcome = engine.analyze(
            model,
            source,
            check=module.check_mode,
            weights_set_at=params["weights_set_at"],
            max_wait=max_wait,
            requested=requested,
            reachable=params["reachable_hosts"],
        )
    elif action == "finish":
        outcome = engine.finish(model, check=module.check_mode)
    elif action == "abort":
        outcome = engine.abort(model, reason=params["reason"], check=module.check_mode)
    else:
        outcome = engine.status(model)
        if outcome.state is not None:
            extra["history"] = outcome.state.history

    result = outcome.result()
    result.update(extra)
    if store is not None:
        result["state_file"] = str(store.path(model))
    if module._diff:
        after = rt["describe"].summary(outcome.state) if outcome.state is not None else None
        result["diff"] = dict(
            before=_diff_text(outcome.before),
            after=_diff_text(after),
            before_header=result.get("state_file", "rollout"),
            after_header=result.get("state_file", "rollout"),
        )
    for warning in outcome.warnings:
        module.warn(warning)
    return result


def _decoded(copies):
    """The texts of slurped copies (base64); a copy that is not base64 of UTF-8 is passed on as it is."""
    texts = []
    for copy in copies:
        try:
            texts.append(base64.b64decode(copy, validate=True).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            texts.append(copy)
    return texts


def _diff_text(data):
    if data is None:
        return ""
    shown = dict((k, v) for k, v in data.items() if k != "plan")
    return json.dumps(shown, indent=2, sort_keys=True) + "\n"


def run_module():
    module = build_module()
    describe, engine, errors, plan, prometheus, spec, state = import_runtime(
        module, "rollout.describe", "rollout.engine", "errors", "rollout.plan", "rollout.prometheus", "spec",
        "rollout.state"
    )
    import pathlib

    rt = dict(describe=describe, engine=engine, plan=plan, prometheus=prometheus, spec=spec, state=state,
              pathlib=pathlib)
    try:
        result = run_action(module, rt)
    except errors.ModelfleetError as exc:
        fail_with(module, exc, model=module.params["model"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
