"""Run a Pulumi program under ``pulumi.runtime.set_mocks`` and collect every resource it declares.

A MOCK of the Pulumi engine and its provider plugins: neither the Pulumi CLI nor the plugins exist here
(no registry serves them), so nothing is created; what is tested is what the program asks for. Each run gets
its own event loop (created before ``set_mocks``, closed after), so runs do not leak into each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi


@dataclass
class Resource:
    typ: str
    name: str
    inputs: dict[str, Any]


@dataclass
class Recorder(pulumi.runtime.Mocks):
    """Records each resource; outputs echo the inputs (with an id) plus ``outputs[type]`` (computed by
    the cloud, e.g. addresses: ``{name}`` in a value is the resource's name), calls answer from ``calls``."""

    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    invoked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(Resource(args.typ, args.name, dict(args.inputs)))
        computed = {k: v.format(name=args.name) if isinstance(v, str) else v
                    for k, v in self.outputs.get(args.typ, {}).items()}
        return f"{args.name}-id", dict(args.inputs) | computed

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.invoked.append((args.token, dict(args.args)))
        return self.calls.get(args.token, {})

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> Resource:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, (name, [r.name for r in self.resources])
        return found[0]


def run_program(program: Callable[[], Any], project: str, config: dict[str, Any],
                recorder: Recorder | None = None) -> Recorder:
    """Run ``program`` with ``config`` (keys without the project prefix; values as `pulumi config set` text)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    recorder = recorder or Recorder()
    try:
        pulumi.runtime.set_mocks(recorder, project=project, stack="test", preview=False)
        pulumi.runtime.set_all_config({f"{project}:{k}": v if isinstance(v, str) else str(v).lower()
                                       if isinstance(v, bool) else str(v) for k, v in config.items()})
        pulumi.runtime.test(program)()
        return recorder
    finally:
        pulumi.runtime.set_all_config({})
        loop.close()
        asyncio.set_event_loop(None)
