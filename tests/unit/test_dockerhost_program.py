"""pulumi/docker under Pulumi MOCKS (no Pulumi CLI, provider plugin or Docker engine is used: none can run the
program here): every resource it declares, the router configuration (checked by the real haproxy), the
staged build contexts, and clear errors for bad stack configuration. The image itself is built for real in
tests/integration/test_docker_image.py."""

from __future__ import annotations

import hashlib
import re
import runpy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloud_fixtures import fake_artifact, fake_wheelhouse
from cloud_mocks import Recorder, run_program
from harness import need

from modelfleet.dockerhost.router import render_haproxy
from modelfleet.dockerhost.settings import DockerHostSettings
from modelfleet.errors import ArtifactError
from modelfleet.stackconfig import StackConfigError, parse_settings

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "pulumi" / "docker"
PROJECT = "modelfleet-docker"
CONTAINER = "docker:index/container:Container"


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    artifacts = tmp_path / "artifacts"
    fake_artifact(artifacts, "credit-risk", "1")
    fake_artifact(artifacts, "credit-risk", "2")
    return {"model": "credit-risk", "stableVersion": "1", "artifactsDir": str(artifacts),
            "wheelhouse": str(fake_wheelhouse(tmp_path / "wheels")), "contextDir": str(tmp_path / "contexts")}


def up(config: dict[str, Any]) -> Recorder:
    return run_program(lambda: runpy.run_path(str(PROGRAM / "__main__.py")), PROJECT, config)


def containers(recorder: Recorder) -> dict[str, dict[str, Any]]:
    return {r.name.removeprefix("credit-risk-"): r.inputs for r in recorder.of_type(CONTAINER)}


def router_weights(recorder: Recorder) -> dict[str, int]:
    (upload,) = containers(recorder)["router"]["uploads"]
    assert upload["file"] == "/usr/local/etc/haproxy/haproxy.cfg"
    found = re.findall(r"server (blue|green) 127\.0\.0\.1:810\d weight (\d+)", upload["content"])
    return {slot: int(weight) for slot, weight in found}


def test_stable_only_host(config: dict[str, Any]) -> None:
    recorder = up(config)
    (image,) = recorder.of_type("docker:index/image:Image")
    assert image.inputs["imageName"] == "modelfleet/credit-risk:1" and image.inputs["skipPush"] is True
    assert image.inputs["build"]["args"] == {"BASE_IMAGE": "debian:12-slim", "FLAVOUR": "cpu",
                                             "MODEL_NAME": "credit-risk", "MODEL_VERSION": "1"}
    context = Path(image.inputs["build"]["context"])
    assert (context / "Dockerfile").read_bytes() == (REPO / "docker" / "Dockerfile").read_bytes()
    assert sorted(p.name for p in (context / "artifact").iterdir()) == ["manifest.json", "model.onnx", "profile.json"]
    assert any((context / "wheelhouse").glob("modelfleet-*.whl"))
    assert set(containers(recorder)) == {"net", "blue", "router", "drift"}
    assert router_weights(recorder) == {"blue": 100, "green": 0}
    assert not containers(recorder)["drift"].get("uploads")


def test_canary_gets_its_own_image_slot_weight_and_drift_artifact(config: dict[str, Any]) -> None:
    recorder = up(config | {"canaryVersion": "2", "canaryWeight": 10})
    images = {r.inputs["imageName"] for r in recorder.of_type("docker:index/image:Image")}
    assert images == {"modelfleet/credit-risk:1", "modelfleet/credit-risk:2"}
    found = containers(recorder)
    assert found["blue"]["image"] == "modelfleet/credit-risk:1"
    assert found["green"]["image"] == "modelfleet/credit-risk:2"
    assert found["green"]["command"][:4] == ["--host", "0.0.0.0", "--port", "8102"]
    assert found["green"]["envs"] == ["MODELFLEET_HEALTH_URL=http://127.0.0.1:8102/v2/health/ready"]
    assert router_weights(recorder) == {"blue": 90, "green": 10}
    # The exporter runs from the stable image and gets the canary's artifact, checksummed.
    canary = Path(config["artifactsDir"]) / "credit-risk" / "2"
    uploads = {u["file"]: u for u in found["drift"]["uploads"]}
    assert set(uploads) == {f"/var/lib/modelfleet/models/credit-risk/2/{n}"
                            for n in ("manifest.json", "model.onnx", "profile.json")}
    for upload in uploads.values():
        source = Path(upload["source"])
        assert source.parent == canary
        assert upload["sourceHash"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_one_network_namespace_ports_and_shared_spool(config: dict[str, Any]) -> None:
    found = containers(up(config | {"canaryVersion": "2", "bindAddress": "127.0.0.1", "routerPort": 18000}))
    net = found.pop("net")
    assert net["entrypoints"] == ["sleep", "infinity"] and net["init"] is True
    ports = {(int(p["internal"]), int(p["external"]), p["ip"]) for p in net["ports"]}
    assert ports == {(8000, 18000, "127.0.0.1"), (8404, 8404, "127.0.0.1"), (9108, 9108, "127.0.0.1"),
                     (8101, 8101, "127.0.0.1"), (8102, 8102, "127.0.0.1")}
    for name, inputs in found.items():
        assert inputs["networkMode"] == "container:credit-risk-net-id", name
        assert not inputs.get("ports"), name
    spool = {name: [v["volumeName"] for v in inputs.get("volumes", [])
                    if v["containerPath"] == "/var/lib/modelfleet/spool"] for name, inputs in found.items()}
    assert spool == {"blue": ["modelfleet-credit-risk-spool"], "green": ["modelfleet-credit-risk-spool"],
                     "drift": ["modelfleet-credit-risk-spool"], "router": []}
    assert found["drift"]["entrypoints"] == ["modelfleet", "drift-exporter"]


def test_gpus_go_to_the_model_servers_only(config: dict[str, Any]) -> None:
    recorder = up(config | {"canaryVersion": "2", "flavour": "cuda", "gpus": "device=0,1",
                            "baseImage": "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"})
    found = containers(recorder)
    assert {name: inputs.get("gpus") for name, inputs in found.items()} == {
        "net": None, "blue": "device=0,1", "green": "device=0,1", "router": None, "drift": None}
    for image in recorder.of_type("docker:index/image:Image"):
        assert image.inputs["build"]["args"]["FLAVOUR"] == "cuda"
        assert image.inputs["build"]["args"]["BASE_IMAGE"] == "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"


@pytest.mark.parametrize("weight", [0, 35, 100])
def test_router_configuration_is_valid_for_haproxy(tmp_path: Path, weight: int) -> None:
    haproxy = need("haproxy", "haproxy")
    path = tmp_path / "haproxy.cfg"
    path.write_text(render_haproxy("credit-risk", 8101, 8102, weight, port=8000, metrics_port=8404))
    result = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"server green 127.0.0.1:8102 weight {weight}" in path.read_text()
    assert "modelfleet_grpc" not in path.read_text()  # its servers publish no gRPC port


def test_pulumi_yaml_declares_exactly_the_settings_with_the_same_defaults() -> None:
    declared = yaml.safe_load((PROGRAM / "Pulumi.yaml").read_text())["config"]
    fields = {f.alias: f for f in DockerHostSettings.model_fields.values()}
    assert set(declared) == set(fields)
    for key, entry in declared.items():
        assert entry["description"], key
        if "default" in entry:
            default = fields[key].default
            expected = "" if default is None else str(default) if hasattr(default, "parts") else default
            assert entry["default"] == expected, key
        else:
            assert fields[key].is_required(), key


BASE = {"model": "credit-risk", "stableVersion": "1"}


@pytest.mark.parametrize(("values", "message"), [
    ({"canaryWeight": "150", "canaryVersion": "2"},
     "modelfleet-docker:canaryWeight: Input should be less than or equal to 100 (got '150')"),
    ({"canaryWeight": "-5", "canaryVersion": "2"}, "modelfleet-docker:canaryWeight: Input should be greater than"),
    ({"canaryWeight": "ten"}, "modelfleet-docker:canaryWeight: Input should be a valid integer"),
    ({"canaryVersion": "1"}, "modelfleet-docker:canaryVersion: equals stableVersion (1)"),
    ({"canaryWeight": "20"}, "modelfleet-docker:canaryWeight: 20 with no canaryVersion"),
    ({"gpus": "all"}, "modelfleet-docker:gpus: GPUs requested for the cpu flavour"),
    ({"flavour": "cuda"}, "modelfleet-docker:flavour: cuda needs GPUs"),
    ({"flavour": "rocm"}, "modelfleet-docker:flavour: Input should be 'cpu' or 'cuda'"),
    ({"flavour": "cuda", "gpus": "two"}, "modelfleet-docker:gpus: 'two' is not 'all' or 'device=<id>[,<id>...]'"),
    ({"routerMetricsPort": "8000"}, "modelfleet-docker:routerMetricsPort: port 8000 is also routerPort"),
    ({"routerPort": "70000"}, "modelfleet-docker:routerPort: Input should be less than or equal to 65535"),
    ({"model": "Credit_Risk"}, "modelfleet-docker:model: String should match pattern"),
    ({"stableVersion": None}, "modelfleet-docker:stableVersion: required; set it with `pulumi config set`"),
    ({"canaryWieght": "5"}, "modelfleet-docker:canaryWieght: unknown key (check the spelling against Pulumi.yaml)"),
])
def test_bad_configuration_is_named_by_key(values: dict[str, Any], message: str) -> None:
    merged = {k: v for k, v in (BASE | values).items() if v is not None}
    with pytest.raises(StackConfigError) as error:
        parse_settings(DockerHostSettings, PROJECT, merged)
    assert any(p.startswith(message) for p in error.value.problems), error.value.problems


def test_bad_configuration_stops_the_program(config: dict[str, Any]) -> None:
    with pytest.raises(StackConfigError, match=r"modelfleet-docker:canaryVersion: equals stableVersion"):
        up(config | {"canaryVersion": "1"})


def test_unknown_key_in_the_stack_stops_the_program(config: dict[str, Any]) -> None:
    with pytest.raises(StackConfigError, match=r"modelfleet-docker:canaryWieght: unknown key"):
        up(config | {"canaryWieght": "5"})


def test_missing_artifact_is_named(config: dict[str, Any]) -> None:
    with pytest.raises(ArtifactError, match=r"credit-risk/3: no manifest\.json; not a modelfleet artifact"):
        up(config | {"canaryVersion": "3"})


def test_example_stack_is_valid() -> None:
    values = {k.removeprefix(f"{PROJECT}:"): v for k, v in
              yaml.safe_load((PROGRAM / "Pulumi.example.yaml").read_text())["config"].items()}
    settings = parse_settings(DockerHostSettings, PROJECT, values)
    assert (settings.canary_version, settings.canary_weight) == ("2", 10)
