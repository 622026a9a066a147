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
    """Records each resource; outputs echo the inputs (with an id), calls answer from ``calls``."""

    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(Resource(args.typ, args.name, dict(args.inputs)))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return self.calls.get(args.token, {}), None

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> Resource:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, (name, [r.name for r in self.resources])
        return found[0]


def run_program(program: Callable[[], Any], project: str, config: dict[str, Any],
                calls: dict[str, dict[str, Any]] | None = None) -> Recorder:
    """Run ``program`` with ``config`` (keys without the project prefix; values as `pulumi config set` text)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    recorder = Recorder(calls or {})
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
