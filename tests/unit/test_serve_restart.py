"""serve_restart's method decisions and error paths, with a fake HAProxy runtime client and a fake systemd.

Both fakes are named so: tests/integration/test_model_server_restart.py runs the same code against a real HAProxy
and real server processes under client load.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from harness import collection_root

sys.path.insert(0, str(collection_root()))

from ansible_collections.modelfleet.serving.plugins.module_utils import serve_restart
from ansible_collections.modelfleet.serving.plugins.module_utils.haproxy_runtime import (
    RuntimeApiError,
    ServerInfo,
)

MODEL = "credit-risk"
PORTS = {"blue": 8101, "green": 8102}


class FakeRuntime:
    """A fake of haproxy_runtime.RuntimeApi: servers change only through set_state/set_weight, and come up when
    the fake systemd's process in their slot is ready."""

    def __init__(self, weights: dict[str, int], up: dict[str, bool], grpc: bool = False) -> None:
        self.weights = dict(weights)
        # The router's gRPC backend: its servers track the model backend's (state, health), weights its own.
        self.grpc_weights = dict(weights) if grpc else None
        self.admin = {slot: "ready" for slot in weights}
        self.up = dict(up)
        self.in_flight = {slot: 0 for slot in weights}
        self.commands: list[str] = []

    def servers(self, backend: str) -> dict[str, ServerInfo]:
        weights = self.grpc_weights if backend == f"{MODEL}_grpc" else self.weights if backend == MODEL else None
        if weights is None:
            raise RuntimeApiError(f"unknown backend {backend!r}")
        bits = {"ready": 0, "drain": 0x08, "maint": 0x01}
        return {
            slot: ServerInfo(slot, weights[slot], weights[slot], bits[self.admin[slot]],
                             2 if self.up[slot] else 0, in_flight=self.in_flight[slot], port=PORTS[slot])
            for slot in weights
        }

    def set_state(self, backend: str, slot: str, state: str) -> None:
        self.commands.append(f"state {slot} {state}")
        self.admin[slot] = state

    def set_weight(self, backend: str, slot: str, weight: int) -> None:
        if backend == MODEL:
            self.commands.append(f"weight {slot} {weight}")
            self.weights[slot] = weight
        else:
            assert backend == f"{MODEL}_grpc" and self.grpc_weights is not None, backend
            self.commands.append(f"grpc weight {slot} {weight}")
            self.grpc_weights[slot] = weight

    def wait_up(self, backend: str, names: list[str], timeout: float) -> tuple[dict[str, ServerInfo], float]:
        pending = [name for name in names if not self.up[name]]
        if pending:
            raise RuntimeApiError(f"timed out waiting for {pending}")
        return self.servers(backend), 0.0

    def serving(self) -> list[str]:
        return [s for s in self.weights if self.up[s] and self.admin[s] == "ready" and self.weights[s] > 0]


class FakeSystemd:
    """A fake systemd: units are names; a started unit is ready (or never, for those in ``broken``)."""

    def __init__(self, runtime: FakeRuntime | None, config_dir: Path) -> None:
        self.runtime = runtime
        self.config_dir = config_dir
        self.running: dict[str, float] = {}
        self.broken: set[str] = set()
        self.refused: set[str] = set()
        self.calls: list[str] = []

    def _slot(self, unit: str) -> str:
        name = unit[len("modelfleet-serve@") : -len(".service")]
        return serve_restart.read_env(str(self.config_dir / "serve" / f"{name}.env"))["MODELFLEET_SLOT"]

    def run(self, verb: str, unit: str) -> None:
        self.calls.append(f"{verb} {unit}")
        if unit in self.refused:
            raise serve_restart.RestartError(f"systemctl {verb} {unit} failed (rc 1): Unit not found")
        if self.runtime is not None and verb in ("stop", "restart"):
            assert self.runtime.serving(), f"the router had no serving slot during {verb} {unit}"
        if verb == "stop":
            self.running.pop(unit, None)
        else:
            self.running[unit] = time.time()
        if self.runtime is not None:
            self.runtime.up[self._slot(unit)] = verb != "stop" and unit not in self.broken

    def started_at(self, unit: str) -> float | None:
        return self.running.get(unit)

    def journal(self, unit: str, lines: int) -> str:
        return "model load failed: out of GPU memory"

    def ready(self, host: str, port: int) -> bool:
        unit = next((u for u in self.running if PORTS[self._slot(u)] == port), None)
        return unit is not None and unit not in self.broken


def configure(config_dir: Path, version: str, slot: str) -> str:
    (config_dir / "serve").mkdir(parents=True, exist_ok=True)
    name = f"{MODEL}-{version}"
    (config_dir / "serve" / f"{name}.env").write_text(
        f"# {name}\nMODELFLEET_SLOT={slot}\nMODELFLEET_HOST=0.0.0.0\nMODELFLEET_PORT={PORTS[slot]}\n"
        "MODELFLEET_ARTIFACT=/a\nMODELFLEET_SPOOL_DIR=/spool\nMODELFLEET_ARGS=--max-batch 8\n"
    )
    return name


def setup(tmp_path: Path, weights: dict[str, int], up: dict[str, bool],
          versions: dict[str, str] | None = None) -> tuple[FakeRuntime, FakeSystemd, serve_restart.Restarter]:
    runtime = FakeRuntime(weights, up)
    systemd = FakeSystemd(runtime, tmp_path)
    for slot, version in (versions or {"blue": "3"}).items():
        systemd.running[serve_restart.UNIT % configure(tmp_path, version, slot)] = 1.0
    ticks = iter(range(100000))
    restarter = serve_restart.Restarter(systemd, runtime, systemd.ready, ready_timeout=5, drain_timeout=5,
                                        clock=lambda: float(next(ticks)), sleep=lambda _: None)
    return runtime, systemd, restarter


def instance(tmp_path: Path, version: str = "3") -> serve_restart.Instance:
    return serve_restart.load(str(tmp_path), f"{MODEL}-{version}")


@pytest.mark.parametrize(
    ("weights", "up", "method"),
    [
        ({"blue": 100, "green": 0}, {"blue": True, "green": False}, "surge"),
        ({"blue": 50, "green": 50}, {"blue": True, "green": True}, "drain"),
        ({"blue": 0, "green": 100}, {"blue": True, "green": True}, "drain"),
        ({"blue": 100, "green": 0}, {"blue": True, "green": True}, "deferred"),
        ({"blue": 100, "green": 100}, {"blue": True, "green": False}, "surge"),
        ({"blue": 0, "green": 0}, {"blue": True, "green": False}, "idle"),
        ({"blue": 100, "green": 0}, {"blue": False, "green": False}, "idle"),
    ],
)
def test_method_follows_the_router(tmp_path: Path, weights: dict[str, int], up: dict[str, bool], method: str) -> None:
    _, _, restarter = setup(tmp_path, weights, up)
    assert restarter.plan(instance(tmp_path))[0] == method


def test_no_router_is_undrained(tmp_path: Path) -> None:
    configure(tmp_path, "3", "blue")
    assert serve_restart.decide(instance(tmp_path), None)[0] == "undrained"


def test_drain_restores_state_and_never_touches_weights(tmp_path: Path) -> None:
    runtime, systemd, restarter = setup(tmp_path, {"blue": 60, "green": 40}, {"blue": True, "green": True},
                                        {"blue": "2", "green": "3"})
    outcome = restarter.restart(instance(tmp_path, "2"))
    assert outcome["method"] == "drain"
    assert runtime.commands == ["state blue drain", "state blue ready"]
    assert runtime.weights == {"blue": 60, "green": 40}
    assert systemd.calls == [f"restart {serve_restart.UNIT % 'credit-risk-2'}"]


def test_surge_moves_weight_to_a_stand_in_and_back(tmp_path: Path) -> None:
    runtime, systemd, restarter = setup(tmp_path, {"blue": 100, "green": 0}, {"blue": True, "green": False})
    outcome = restarter.restart(instance(tmp_path))
    standin = serve_restart.UNIT % "credit-risk-3-surge"
    assert outcome["method"] == "surge"
    assert systemd.calls == [f"start {standin}", f"restart {serve_restart.UNIT % 'credit-risk-3'}", f"stop {standin}"]
    assert runtime.commands == ["weight green 100", "state blue drain", "state blue ready", "weight green 0"]
    assert runtime.weights == {"blue": 100, "green": 0} and runtime.admin == {"blue": "ready", "green": "ready"}
    assert not (tmp_path / "serve" / "credit-risk-3-surge.env").exists()


def test_surge_moves_the_grpc_weight_too(tmp_path: Path) -> None:
    """With the router's gRPC backend, the stand-in takes the gRPC weight as well (track copies no weight):
    a drained slot would otherwise leave gRPC calls without a server."""
    runtime = FakeRuntime({"blue": 100, "green": 0}, {"blue": True, "green": False}, grpc=True)
    systemd = FakeSystemd(runtime, tmp_path)
    systemd.running[serve_restart.UNIT % configure(tmp_path, "3", "blue")] = 1.0
    ticks = iter(range(100000))
    restarter = serve_restart.Restarter(systemd, runtime, systemd.ready, ready_timeout=5, drain_timeout=5,
                                        clock=lambda: float(next(ticks)), sleep=lambda _: None)
    assert restarter.restart(instance(tmp_path))["method"] == "surge"
    assert runtime.commands == ["weight green 100", "grpc weight green 100", "state blue drain",
                                "state blue ready", "weight green 0", "grpc weight green 0"]
    assert runtime.grpc_weights == {"blue": 100, "green": 0}


@pytest.mark.parametrize(("env", "expected"), [
    ({"MODELFLEET_PORT": "8101", "MODELFLEET_GRPC_PORT": "8201"},
     {"MODELFLEET_GRPC_PORT": "8202", "MODELFLEET_GRPC_ARGS": "--grpc-port 8202"}),
    ({"MODELFLEET_PORT": "8101", "MODELFLEET_GRPC_PORT": ""}, {}),
    ({"MODELFLEET_PORT": "8101"}, {}),
])
def test_stand_in_grpc_port_keeps_the_offset(env: dict[str, str], expected: dict[str, str]) -> None:
    assert serve_restart.standin_grpc_env(env, 8102) == expected


def test_stand_in_grpc_port_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(serve_restart.RestartError, match="is not a port"):
        serve_restart.standin_grpc_env({"MODELFLEET_PORT": "8101", "MODELFLEET_GRPC_PORT": "x"}, 8102)


def test_stand_in_env_is_the_same_version_in_the_free_slot(tmp_path: Path) -> None:
    _, systemd, restarter = setup(tmp_path, {"blue": 100, "green": 0}, {"blue": True, "green": False})
    seen: dict[str, str] = {}
    original_run = systemd.run

    def run(verb: str, unit: str) -> None:
        if verb == "start":
            seen.update(serve_restart.read_env(str(tmp_path / "serve" / "credit-risk-3-surge.env")))
        original_run(verb, unit)

    systemd.run = run  # type: ignore[method-assign]
    restarter.restart(instance(tmp_path))
    assert seen["MODELFLEET_SLOT"] == "green" and seen["MODELFLEET_PORT"] == "8102"
    assert seen["MODELFLEET_ARTIFACT"] == "/a"
    assert seen["MODELFLEET_SPOOL_DIR"] == ""  # no payload spool: the unit's --spool-dir "" turns it off
    assert seen["MODELFLEET_ARGS"] == "--max-batch 8"


def test_deferred_changes_nothing_and_warns(tmp_path: Path) -> None:
    runtime, systemd, restarter = setup(tmp_path, {"blue": 100, "green": 0}, {"blue": True, "green": True},
                                        {"blue": "2", "green": "3"})
    outcome = restarter.restart(instance(tmp_path, "2"))
    assert outcome["method"] == "deferred"
    assert systemd.calls == [] and runtime.commands == []
    assert "untested version" in restarter.warnings[0]


def test_drained_restart_that_never_gets_ready_stays_drained_with_the_journal(tmp_path: Path) -> None:
    runtime, systemd, restarter = setup(tmp_path, {"blue": 50, "green": 50}, {"blue": True, "green": True},
                                        {"blue": "2", "green": "3"})
    systemd.broken.add(serve_restart.UNIT % "credit-risk-3")
    with pytest.raises(serve_restart.RestartError) as failed:
        restarter.restart(instance(tmp_path, "3"))
    message = str(failed.value)
    assert "did not become ready" in message and "left drained" in message and "out of GPU memory" in message
    assert runtime.admin["green"] == "drain" and runtime.serving() == ["blue"]


def test_surge_restart_that_never_gets_ready_keeps_the_stand_in_serving(tmp_path: Path) -> None:
    runtime, systemd, restarter = setup(tmp_path, {"blue": 100, "green": 0}, {"blue": True, "green": False})
    systemd.broken.add(serve_restart.UNIT % "credit-risk-3")
    with pytest.raises(serve_restart.RestartError) as failed:
        restarter.restart(instance(tmp_path))
    assert "stand-in" in str(failed.value) and "systemctl stop" in str(failed.value)
    assert runtime.serving() == ["green"]
    assert (tmp_path / "serve" / "credit-risk-3-surge.env").exists()


def test_stand_in_that_never_gets_ready_is_retired_and_the_original_untouched(tmp_path: Path) -> None:
    runtime, systemd, restarter = setup(tmp_path, {"blue": 100, "green": 0}, {"blue": True, "green": False})
    systemd.broken.add(serve_restart.UNIT % "credit-risk-3-surge")
    with pytest.raises(serve_restart.RestartError, match=r"stand-in .* did not come up .* was not touched"):
        restarter.restart(instance(tmp_path))
    assert runtime.commands == [] and runtime.serving() == ["blue"]
    assert systemd.calls[-1] == f"stop {serve_restart.UNIT % 'credit-risk-3-surge'}"
    assert not (tmp_path / "serve" / "credit-risk-3-surge.env").exists()


def test_drain_wait_is_bounded(tmp_path: Path) -> None:
    runtime, _, restarter = setup(tmp_path, {"blue": 50, "green": 50}, {"blue": True, "green": True},
                                        {"blue": "2", "green": "3"})
    runtime.in_flight["blue"] = 3  # never finishes
    restarter.restart(instance(tmp_path, "2"))
    assert "still had 3 requests in flight" in restarter.warnings[0]


def test_unknown_instance_names_the_configured_ones(tmp_path: Path) -> None:
    configure(tmp_path, "3", "blue")
    with pytest.raises(serve_restart.RestartError, match=r"unknown instance 'credit-risk-9'.*credit-risk-3"):
        serve_restart.load(str(tmp_path), "credit-risk-9")
    with pytest.raises(serve_restart.RestartError, match="stand-in"):
        serve_restart.load(str(tmp_path), "credit-risk-3-surge")
    with pytest.raises(serve_restart.RestartError, match="not an instance name"):
        serve_restart.Instance("Credit_Risk", "x.env", {})


@pytest.mark.parametrize(("env", "error"), [({"MODELFLEET_SLOT": "red"}, "not blue or green"),
                                            ({"MODELFLEET_SLOT": "blue", "MODELFLEET_PORT": "x"}, "not a port")])
def test_bad_environment_file(env: dict[str, str], error: str) -> None:
    with pytest.raises(serve_restart.RestartError, match=error):
        serve_restart.Instance("credit-risk-3", "credit-risk-3.env", env)


def test_router_without_slot_servers(tmp_path: Path) -> None:
    configure(tmp_path, "3", "blue")
    with pytest.raises(serve_restart.RestartError, match="has no server green"):
        serve_restart.decide(instance(tmp_path), {"blue": object()})


def test_stale_compares_process_start_with_env_and_unit(tmp_path: Path) -> None:
    configure(tmp_path, "3", "blue")
    unit_file = tmp_path / "unit"
    unit_file.write_text("")
    one = instance(tmp_path)
    os.utime(one.env_path, (1000, 1000))
    os.utime(unit_file, (1000, 1000))
    assert not serve_restart.is_stale(one, 2000.0, str(unit_file))
    assert serve_restart.is_stale(one, 500.0, str(unit_file))
    os.utime(unit_file, (3000, 3000))
    assert serve_restart.is_stale(one, 2000.0, str(unit_file))
    assert not serve_restart.is_stale(one, None, str(unit_file))


def test_configured_lists_versions_not_stand_ins(tmp_path: Path) -> None:
    for version, slot in (("2", "blue"), ("3", "green")):
        configure(tmp_path, version, slot)
    (tmp_path / "serve" / "credit-risk-3-surge.env").write_text("")
    (tmp_path / "serve" / "other-1.env").write_text("")
    assert serve_restart.configured(str(tmp_path), MODEL) == ["credit-risk-2", "credit-risk-3"]
    assert serve_restart.configured(str(tmp_path / "none")) == []



def test_surge_into_a_free_slot_in_maintenance_checks_it_again_and_restores_it(tmp_path: Path) -> None:
    runtime, _, restarter = setup(tmp_path, {"blue": 100, "green": 0}, {"blue": True, "green": False})
    runtime.admin["green"] = "maint"
    outcome = restarter.restart(instance(tmp_path))
    assert outcome["method"] == "surge"
    assert runtime.commands[0] == "state green ready" and runtime.commands[-1] == "state green maint"
    assert runtime.admin == {"blue": "ready", "green": "maint"} and runtime.weights == {"blue": 100, "green": 0}


def test_systemctl_restart_refused_leaves_the_slot_drained_with_the_journal(tmp_path: Path) -> None:
    runtime, systemd, restarter = setup(tmp_path, {"blue": 50, "green": 50}, {"blue": True, "green": True},
                                        {"blue": "2", "green": "3"})
    systemd.refused.add(serve_restart.UNIT % "credit-risk-3")
    with pytest.raises(serve_restart.RestartError, match=r"could not be restarted .*Unit not found.*left drained"):
        restarter.restart(instance(tmp_path, "3"))
    assert runtime.serving() == ["blue"]
