# -*- coding: utf-8 -*-
# Copyright: modelfleet contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Restart model-server instances (``modelfleet-serve@<model>-<version>``) one slot at a time, without a failed request.

The method is decided from the router's view of the model's two slots (HAProxy backend named like the model,
servers ``blue`` and ``green``), read right before each restart:

- ``drain``: the other slot is up and weighted; drain this one, wait until nothing is in flight, restart, wait for
  readiness and for HAProxy to see it up, set it ready again.
- ``surge``: this slot is the only one serving; a stand-in of the same version starts in the free slot, takes this
  slot's weight, this slot is drained and restarted as above, the weight moves back and the stand-in stops.
- ``deferred``: the other slot is up at weight 0 (a canary waiting in a rollout): not restarted, reported.
- ``idle``: this slot serves nothing (weight 0, drained, in maintenance or down): restarted directly.
- ``undrained``: no router on the host: restarted directly.

systemd is reached through a ``Services`` object (the module passes one that runs systemctl), HAProxy through
``haproxy_runtime.RuntimeApi`` (or anything with its ``servers``/``set_state``/``set_weight``/``wait_up``), and
readiness through a ``probe(host, port) -> bool`` callable.
"""

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

import os
import re
import time
import typing as t

from ansible_collections.modelfleet.serving.plugins.module_utils.published_files import PublishError, publish
from ansible_collections.modelfleet.serving.plugins.module_utils.router_weights import grpc_companion

UNIT = "modelfleet-serve@%s.service"
STANDIN_SUFFIX = "-surge"
SLOTS = ("blue", "green")
INSTANCE_RE = re.compile(r"^(?P<model>[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)-(?P<version>[1-9][0-9]{0,8})$")
METHODS = ("drain", "surge", "deferred", "idle", "undrained")


class RestartError(Exception):
    """A restart could not be planned or did not complete; the message says where things stand."""


class Services(t.Protocol):
    """What the restart needs from systemd."""

    def run(self, verb: str, unit: str) -> None:
        """``systemctl <verb> <unit>`` (start, stop, restart); raises RestartError when it fails."""

    def started_at(self, unit: str) -> t.Optional[float]:
        """Wall-clock time (epoch seconds) the unit's main process started; None when it is not running."""

    def journal(self, unit: str, lines: int) -> str:
        """The unit's last journal lines."""


class Instance:
    """One configured version: its environment file says its slot, port and artifact."""

    def __init__(self, name: str, env_path: str, env: dict[str, str]) -> None:
        match = INSTANCE_RE.match(name)
        if not match:
            raise RestartError("%r is not an instance name (<model>-<version>)" % name)
        self.name = name
        self.model = match.group("model")
        self.version = match.group("version")
        self.env_path = env_path
        self.env = env
        self.slot = env.get("MODELFLEET_SLOT", "")
        if self.slot not in SLOTS:
            raise RestartError("%s: MODELFLEET_SLOT is %r, not blue or green" % (env_path, self.slot))
        try:
            self.port = int(env.get("MODELFLEET_PORT", ""))
        except ValueError:
            port = env.get("MODELFLEET_PORT")
            raise RestartError("%s: MODELFLEET_PORT is %r, not a port" % (env_path, port)) from None
        self.host = probe_host(env.get("MODELFLEET_HOST", ""))

    @property
    def unit(self) -> str:
        return UNIT % self.name

    @property
    def other_slot(self) -> str:
        return "green" if self.slot == "blue" else "blue"

    @property
    def standin(self) -> str:
        return self.name + STANDIN_SUFFIX


def probe_host(listen: str) -> str:
    """Where to reach a server that listens on ``listen`` from the same host."""
    if listen in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    if listen == "::":
        return "::1"
    return listen


def standin_env(env: dict[str, str], slot: str, port: int) -> dict[str, str]:
    """The environment of a surge stand-in of the instance configured by ``env``, in ``slot`` on HTTP ``port``."""
    standin = dict(env, MODELFLEET_SLOT=slot, MODELFLEET_PORT=str(port))
    standin.update(standin_grpc_env(env, port))
    # No payload spool (an empty --spool-dir turns it off): two writers of one version in <spool>/<model>/<version>/
    # would number their segments alike, and the drift exporter would read the version's traffic twice. (The
    # server refuses a sample rate of 0: its spool is on or off.)
    standin["MODELFLEET_SPOOL_DIR"] = ""
    return standin


def standin_grpc_env(env: dict[str, str], port: int) -> dict[str, str]:
    """The gRPC settings of a stand-in on HTTP ``port``: the instance's gRPC offset kept, none without gRPC."""
    grpc_port = env.get("MODELFLEET_GRPC_PORT", "")
    if not grpc_port:
        return {}
    try:
        offset = int(grpc_port) - int(env.get("MODELFLEET_PORT", ""))
    except ValueError:
        raise RestartError("MODELFLEET_GRPC_PORT %r or MODELFLEET_PORT %r is not a port"
                           % (grpc_port, env.get("MODELFLEET_PORT"))) from None
    return {"MODELFLEET_GRPC_PORT": str(port + offset), "MODELFLEET_GRPC_ARGS": "--grpc-port %d" % (port + offset)}


def read_env(path: str) -> dict[str, str]:
    with open(path) as handle:
        return read_env_text(handle.read())


def read_env_text(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a systemd environment file (comments and blank lines left out)."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def env_dir(config_dir: str) -> str:
    return os.path.join(config_dir, "serve")


def configured(config_dir: str, model: t.Optional[str] = None) -> list[str]:
    """Instances with an environment file (stand-ins excluded), optionally of one model, sorted."""
    try:
        names = os.listdir(env_dir(config_dir))
    except OSError:
        return []
    found = [name[: -len(".env")] for name in names if name.endswith(".env")]
    found = [name for name in found if INSTANCE_RE.match(name)]
    if model is not None:
        found = [name for name in found if INSTANCE_RE.match(name).group("model") == model]  # type: ignore[union-attr]
    return sorted(found)


def load(config_dir: str, name: str) -> Instance:
    path = os.path.join(env_dir(config_dir), name + ".env")
    if name.endswith(STANDIN_SUFFIX):
        raise RestartError("%s is a surge stand-in, not a version to restart" % name)
    if not os.path.isfile(path):
        known = configured(config_dir)
        raise RestartError(
            "unknown instance %r: no environment file %s (configured: %s)" % (name, path, ", ".join(known) or "none")
        )
    return Instance(name, path, read_env(path))


def is_stale(instance: Instance, started: t.Optional[float], unit_file: t.Optional[str]) -> bool:
    """Whether a running instance started before its environment file (or the unit file) last changed."""
    if started is None:
        return False
    changed = os.stat(instance.env_path).st_mtime
    if unit_file and os.path.exists(unit_file):
        changed = max(changed, os.stat(unit_file).st_mtime)
    return started < changed


def decide(instance: Instance, servers: t.Optional[dict[str, t.Any]]) -> tuple[str, str]:
    """(method, reason) for restarting ``instance`` given the router's servers (None: no router)."""
    if servers is None:
        return "undrained", "no router on this host: restarted in place"
    missing = [slot for slot in SLOTS if slot not in servers]
    if missing:
        raise RestartError(
            "router backend %s has no server %s (it has: %s)"
            % (instance.model, ", ".join(missing), ", ".join(servers) or "none")
        )
    mine, other = servers[instance.slot], servers[instance.other_slot]
    if other.up and other.admin == "ready" and other.weight > 0:
        return "drain", "slot %s serves the model meanwhile (weight %d)" % (instance.other_slot, other.weight)
    if not (mine.up and mine.admin == "ready" and mine.weight > 0):
        return "idle", "slot %s serves nothing now (weight %d, %s, %s)" % (
            instance.slot,
            mine.weight,
            mine.admin,
            "up" if mine.up else "not up",
        )
    if other.up:
        return "deferred", (
            "slot %s is up at weight 0 (a canary under way): restarting %s would send its traffic to an untested "
            "version; restart it after the rollout" % (instance.other_slot, instance.name)
        )
    return "surge", "the only serving slot: a stand-in of v%s serves from slot %s meanwhile" % (
        instance.version,
        instance.other_slot,
    )


class Restarter:
    """Restarts instances one at a time; every step is appended to ``steps`` and warnings to ``warnings``."""

    def __init__(
        self,
        services: Services,
        api: t.Optional[t.Any],
        probe: t.Callable[[str, int], bool],
        ready_timeout: float = 300.0,
        drain_timeout: float = 30.0,
        interval: float = 0.2,
        journal_lines: int = 20,
        clock: t.Callable[[], float] = time.monotonic,
        sleep: t.Callable[[float], None] = time.sleep,
    ) -> None:
        self.services = services
        self.api = api
        self.probe = probe
        self.ready_timeout = ready_timeout
        self.drain_timeout = drain_timeout
        self.interval = interval
        self.journal_lines = journal_lines
        self.clock = clock
        self.sleep = sleep
        self.steps: list[str] = []
        self.warnings: list[str] = []
        self._grpc_known: dict[str, list[str]] = {}

    def plan(self, instance: Instance) -> tuple[str, str]:
        servers = self.api.servers(instance.model) if self.api is not None else None
        return decide(instance, servers)

    def restart(self, instance: Instance) -> dict[str, t.Any]:
        """Restart one instance by the method the router's state calls for now; the outcome as a dict."""
        method, reason = self.plan(instance)
        started = self.clock()
        if method == "deferred":
            self.warnings.append("%s not restarted: %s" % (instance.name, reason))
        elif method == "drain":
            self._drained_restart(instance)
        elif method == "surge":
            self._surge_restart(instance)
        else:
            self._restart_in_place(instance)
        return dict(
            instance=instance.name,
            slot=instance.slot,
            method=method,
            reason=reason,
            seconds=round(self.clock() - started, 3),
        )

    # --- the methods ---------------------------------------------------------------------------------------

    def _restart_in_place(self, instance: Instance) -> None:
        self._restart_unit(instance.unit, "")
        self._wait_ready(instance.unit, instance.host, instance.port, "")

    def _drained_restart(self, instance: Instance, extra: str = "") -> None:
        backend, slot = instance.model, instance.slot
        self._set_state(backend, slot, "drain")
        self._wait_idle(backend, slot)
        left = "slot %s is left drained (the router serves from slot %s)%s" % (slot, instance.other_slot, extra)
        self._restart_unit(instance.unit, left)
        self._wait_ready(instance.unit, instance.host, instance.port, left)
        self._wait_router(backend, slot, instance.unit, left)
        self._set_state(backend, slot, "ready")

    def _surge_restart(self, instance: Instance) -> None:
        backend, free = instance.model, instance.other_slot
        servers = self._servers(backend)
        weight, free_weight, free_admin = servers[instance.slot].weight, servers[free].weight, servers[free].admin
        port = servers[free].port
        if not port:
            raise RestartError("the router does not say the port of %s/%s: no stand-in started" % (backend, free))
        # A free slot left drained or in maintenance is checked again before the stand-in is waited for (at its
        # weight, 0 for a free slot, it gets nothing meanwhile).
        if free_admin != "ready":
            self._set_state(backend, free, "ready")
        try:
            standin = self._start_standin(instance, free, port)
        except RestartError:
            if free_admin != "ready":
                self._set_state(backend, free, free_admin)
            raise
        self._set_weight(backend, free, weight)
        keeps = " and the stand-in %s keeps serving in slot %s at weight %d: stop it with 'systemctl stop %s'" % (
            standin.unit,
            free,
            weight,
            standin.unit,
        )
        self._drained_restart(instance, extra=keeps + " once slot %s is ready again" % instance.slot)
        self._set_weight(backend, free, free_weight)
        self._wait_idle(backend, free)
        if free_admin != "ready":
            self._set_state(backend, free, free_admin)
        self._retire_standin(standin)

    # --- the stand-in --------------------------------------------------------------------------------------

    def _start_standin(self, instance: Instance, slot: str, port: int) -> Instance:
        env = standin_env(instance.env, slot, port)
        path = os.path.join(os.path.dirname(instance.env_path), instance.standin + ".env")
        with open(instance.env_path) as handle:
            header = [line for line in handle.read().splitlines() if line.startswith("#")]
        lines = [*header, "# surge stand-in for %s, started by model_server_restart" % instance.name]
        lines += ["%s=%s" % item for item in env.items()]
        status = os.stat(instance.env_path)  # the stand-in's file as the version's: mode, owner, group
        try:
            publish(path, "\n".join(lines) + "\n", status.st_mode & 0o777, status.st_uid, status.st_gid, check=False)
        except PublishError as exc:
            raise RestartError(str(exc)) from None
        standin = _StandIn(instance.standin, path, env, instance)
        self.steps.append("wrote %s" % path)
        try:
            self._systemctl("start", standin.unit)
            self._wait_ready(standin.unit, standin.host, standin.port, "")
            self._wait_router(instance.model, slot, standin.unit, "")
        except RestartError as exc:
            self._retire_standin(standin)
            raise RestartError(
                "the surge stand-in of %s did not come up in slot %s; %s was not touched: %s"
                % (instance.name, slot, instance.name, exc)
            ) from None
        return standin

    def _retire_standin(self, standin: Instance) -> None:
        try:
            self._systemctl("stop", standin.unit)
        finally:
            if os.path.exists(standin.env_path):
                os.unlink(standin.env_path)
                self.steps.append("removed %s" % standin.env_path)

    # --- steps ---------------------------------------------------------------------------------------------

    def _servers(self, backend: str) -> dict[str, t.Any]:
        return self.api.servers(backend) if self.api is not None else {}

    def _systemctl(self, verb: str, unit: str) -> None:
        self.services.run(verb, unit)
        self.steps.append("systemctl %s %s" % (verb, unit))

    def _restart_unit(self, unit: str, left: str) -> None:
        try:
            self._systemctl("restart", unit)
        except RestartError as exc:
            self._fail(unit, "could not be restarted (%s)" % exc, left)

    def _set_state(self, backend: str, slot: str, state: str) -> None:
        if self.api is not None:
            self.api.set_state(backend, slot, state)
            self.steps.append("set server %s/%s state %s" % (backend, slot, state))

    def _set_weight(self, backend: str, slot: str, weight: int) -> None:
        """The slot's weight on the model's backend and, where the router has one, on its gRPC backend."""
        if self.api is None:
            return
        for name in [backend, *self._grpc_backends(backend)]:
            self.api.set_weight(name, slot, weight)
            self.steps.append("set server %s/%s weight %d" % (name, slot, weight))

    def _grpc_backends(self, backend: str) -> list[str]:
        """``[<backend>_grpc]`` when the router serves the model over gRPC too, else ``[]`` (asked once).

        That backend's servers track the model backend's (drain and health follow) but keep their own weights.
        """
        if backend not in self._grpc_known:
            companion = grpc_companion(self.api, backend)
            self._grpc_known[backend] = [companion[0]] if companion else []
        return self._grpc_known[backend]

    def _in_flight(self, backend: str, slot: str) -> int:
        """Requests in flight on the slot, over HTTP and (where the router has it) gRPC."""
        return sum(self._servers(name)[slot].in_flight for name in [backend, *self._grpc_backends(backend)])

    def _wait_idle(self, backend: str, slot: str) -> None:
        """Wait (bounded) until nothing is in flight on the slot; past the bound the server's own drain takes over."""
        deadline = self.clock() + self.drain_timeout
        while True:
            in_flight = self._in_flight(backend, slot) if self.api is not None else 0
            if in_flight == 0:
                self.steps.append("%s/%s has nothing in flight" % (backend, slot))
                return
            if self.clock() >= deadline:
                self.warnings.append(
                    "%s/%s still had %d requests in flight after %.0f s: went on (the server finishes them on "
                    "SIGTERM, within its drain timeout)" % (backend, slot, in_flight, self.drain_timeout)
                )
                return
            self.sleep(self.interval)

    def _wait_ready(self, unit: str, host: str, port: int, left: str) -> None:
        deadline = self.clock() + self.ready_timeout
        while not self.probe(host, port):
            if self.clock() >= deadline:
                self._fail(unit, "did not become ready on %s:%d within %.0f s" % (host, port, self.ready_timeout), left)
            self.sleep(self.interval)
        self.steps.append("%s ready on port %d" % (unit, port))

    def _wait_router(self, backend: str, slot: str, unit: str, left: str) -> None:
        if self.api is None:
            return
        try:
            self.api.wait_up(backend, [slot], self.ready_timeout)
        except Exception as exc:  # RuntimeApiError, from the api given
            self._fail(unit, "is ready but the router does not see %s/%s up: %s" % (backend, slot, exc), left)
        self.steps.append("router sees %s/%s up" % (backend, slot))

    def _fail(self, unit: str, what: str, left: str) -> t.NoReturn:
        try:
            journal = self.services.journal(unit, self.journal_lines).rstrip()
        except RestartError as exc:
            journal = "(journal unavailable: %s)" % exc
        raise RestartError(
            "%s %s%s. Last journal lines:\n%s" % (unit, what, "; " + left if left else "", journal or "(none)")
        )


class _StandIn(Instance):
    """A stand-in's name has the stand-in suffix; it is otherwise an instance like the one it stands in for."""

    def __init__(self, name: str, env_path: str, env: dict[str, str], original: Instance) -> None:
        self.name = name
        self.model = original.model
        self.version = original.version
        self.env_path = env_path
        self.env = env
        self.slot = env["MODELFLEET_SLOT"]
        self.port = int(env["MODELFLEET_PORT"])
        self.host = original.host
