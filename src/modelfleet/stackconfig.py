"""Pulumi stack configuration read into a pydantic model, with clear, key-qualified errors.

The Pulumi programs (``pulumi/docker``, ``pulumi/aws``) hold no logic: they pass their configuration here.
Values arrive as strings (``pulumi config set`` stores text); pydantic coerces them to the declared types.
Every problem names the configuration key as the user types it (``modelfleet-docker:canaryWeight``).
Keys of the project that no field declares are errors too: a typo never falls back to a default silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from modelfleet.errors import ModelfleetError

M = TypeVar("M", bound=BaseModel)


class StackConfigError(ModelfleetError):
    """The stack configuration cannot be used; ``problems`` lists each key-qualified complaint."""

    def __init__(self, project: str, problems: list[str]) -> None:
        self.project = project
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid stack configuration of {project}:\n{listed}")


class StackSettings(BaseModel):
    """Base of the programs' settings: camelCase keys (as in Pulumi.yaml), no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


def _problem(project: str, error: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "required; set it with `pulumi config set`"
    elif error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against Pulumi.yaml)"
    if not loc:  # a cross-field check: one "key: problem" line each
        return "\n".join(f"{project}:{line}" for line in message.splitlines())
    key = loc[0] if ":" in loc[0] else f"{project}:{loc[0]}"
    suffix = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    got = error.get("input")
    shown = f" (got {got!r})" if error["type"] not in ("missing", "extra_forbidden") and isinstance(
        got, str | int | float | bool) else ""
    return f"{key}{suffix}: {message}{shown}"


def parse_settings(model: type[M], project: str, values: dict[str, Any]) -> M:
    """Validate ``values`` (keys without the project prefix) into ``model`` or raise StackConfigError."""
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        problems = list(dict.fromkeys(
            line for e in exc.errors() for line in _problem(project, dict(e)).splitlines()))
        raise StackConfigError(project, problems) from None


def read_settings(model: type[M], project: str, get: Callable[[str], Any], keys: Iterable[str] = ()) -> M:
    """Read every declared key of ``model`` through ``get(key)`` (None: unset), plus the project's ``keys``
    (all keys the stack sets, ``<project>:<key>``) so that an undeclared one is reported."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        alias = field.alias or name
        value = get(alias)
        if value is not None:
            values[alias] = value
    for key in keys:
        prefix, _sep, name = key.partition(":")
        if prefix == project and name not in values:
            values[name] = get(name)
    return parse_settings(model, project, values)


def pulumi_settings(model: type[M], project: str | None = None) -> M:
    """``read_settings`` from the running Pulumi program's configuration (under ``pulumi up`` or mocks)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    project = project or pulumi.get_project()
    config = pulumi.Config(project)
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    return read_settings(model, project, config.get, keys)
