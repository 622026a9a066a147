"""Canary analysis and the rollout decision engine behind the ``model_rollout`` Ansible module.

A rollout moves traffic from a stable model version to a canary step by step; after each step's
interval the canary is judged on Prometheus data and the rollout advances, holds, promotes or rolls
back. Every decision is returned, logged, kept in the persisted state and exported as metrics.

Modules, one job each: :mod:`~modelfleet.rollout.plan` (validated settings and the plan),
:mod:`~modelfleet.rollout.prometheus` (HTTP query client), :mod:`~modelfleet.rollout.gates` (each gate's
PromQL and verdict), :mod:`~modelfleet.rollout.decision` (pure decision logic),
:mod:`~modelfleet.rollout.state` (the state file), :mod:`~modelfleet.rollout.exposition` (metrics text),
:mod:`~modelfleet.rollout.engine` (the actions: plan, start, analyze, finish, abort, status).
See docs/rollout.md.
"""
