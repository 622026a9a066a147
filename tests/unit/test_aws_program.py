"""pulumi/aws under Pulumi MOCKS: no Pulumi CLI, no provider plugin and no AWS account exist here, so the
AWS API is mocked (instances get made-up addresses, the AMI lookup a made-up id) and what is tested is what
the program asks AWS for: the node group's GPU labels and taints, instance types, security group, and the
Ansible inventory it writes (read back by the real ``ansible-inventory``). Bad configuration fails early."""

from __future__ import annotations

import json
import runpy
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from cloud_mocks import Recorder, run_program

from modelfleet.aws.settings import AwsSettings
from modelfleet.stackconfig import StackConfigError, parse_settings

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "pulumi" / "aws"
PROJECT = "modelfleet-aws"
ANSIBLE_INVENTORY = Path(__import__("sys").executable).parent / "ansible-inventory"


class AwsMock(Recorder):
    """The AWS API, mocked: instance N gets public 198.51.100.N and private 10.0.1.N, roles an ARN."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, outputs = super().new_resource(args)
        if args.typ == "aws:ec2/instance:Instance":
            index = int(args.name.rsplit("-", 1)[1])  # modelfleet-gpu-<N>: registration order varies
            outputs |= {"publicIp": f"198.51.100.{index}", "privateIp": f"10.0.1.{index}"}
            resource_id = f"i-{index:017d}"
        if args.typ == "aws:iam/role:Role":
            outputs["arn"] = f"arn:aws:iam::123456789012:role/{args.inputs['name']}"
        return resource_id, outputs


def up(config: dict[str, Any]) -> AwsMock:
    mock = AwsMock(calls={"aws:ec2/getAmi:getAmi": {"id": "ami-0debian12amd64"}})
    run_program(lambda: runpy.run_path(str(PROGRAM / "__main__.py")), PROJECT, config, mock)
    return mock


@pytest.fixture
def instances(tmp_path: Path) -> dict[str, Any]:
    return {"keyName": "ops", "sshCidr": "203.0.113.7/32", "inventoryPath": str(tmp_path / "inv" / "hosts.yml")}


EKS = {"mode": "eks", "clusterName": "ml-prod", "subnetIds": '["subnet-a", "subnet-b"]'}


def test_eks_node_group_is_labelled_and_tainted_for_gpus() -> None:
    mock = up(EKS | {"instanceType": "p4d.24xlarge", "maxSize": "4"})
    (group,) = mock.of_type("aws:eks/nodeGroup:NodeGroup")
    inputs = group.inputs
    assert inputs["clusterName"] == "ml-prod" and inputs["subnetIds"] == ["subnet-a", "subnet-b"]
    assert inputs["instanceTypes"] == ["p4d.24xlarge"] and inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    assert inputs["labels"] == {"nvidia.com/gpu.present": "true", "modelfleet.io/role": "model-server"}
    assert inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert {k: int(v) for k, v in inputs["scalingConfig"].items()} == {"desiredSize": 1, "minSize": 0, "maxSize": 4}
    # No node role given: one is created with the three managed policies EKS nodes need.
    (role,) = mock.of_type("aws:iam/role:Role")
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert inputs["nodeRoleArn"] == "arn:aws:iam::123456789012:role/modelfleet-gpu-nodes"
    policies = {r.inputs["policyArn"].rsplit("/", 1)[1] for r in mock.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert policies == {"AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"}
    assert not mock.of_type("aws:ec2/instance:Instance")


def test_eks_with_a_given_node_role_creates_none() -> None:
    mock = up(EKS | {"nodeRoleArn": "arn:aws:iam::123456789012:role/gpu-nodes", "subnetIds": "subnet-a,subnet-b"})
    (group,) = mock.of_type("aws:eks/nodeGroup:NodeGroup")
    assert group.inputs["nodeRoleArn"] == "arn:aws:iam::123456789012:role/gpu-nodes"
    assert group.inputs["subnetIds"] == ["subnet-a", "subnet-b"]
    assert not mock.of_type("aws:iam/role:Role")


def test_instances_security_group_and_hardening(instances: dict[str, Any]) -> None:
    mock = up(instances | {"instanceType": "g6.xlarge", "instanceCount": "3", "servingCidr": "10.0.0.0/16"})
    hosts = mock.of_type("aws:ec2/instance:Instance")
    assert len(hosts) == 3
    for host in hosts:
        assert host.inputs["instanceType"] == "g6.xlarge" and host.inputs["keyName"] == "ops"
        assert host.inputs["ami"] == "ami-0debian12amd64"
        assert host.inputs["metadataOptions"]["httpTokens"] == "required"
        assert host.inputs["rootBlockDevice"] == {"volumeSize": 100, "volumeType": "gp3", "encrypted": True}
    ((_, args),) = [(t, a) for t, a in mock.invoked if t == "aws:ec2/getAmi:getAmi"]
    assert args["owners"] == ["136693071363"] and args["filters"][0]["values"] == ["debian-12-amd64-*"]
    (group,) = mock.of_type("aws:ec2/securityGroup:SecurityGroup")
    rules = {(int(r["fromPort"]), int(r["toPort"])): r["cidrBlocks"] for r in group.inputs["ingress"]}
    assert rules[(22, 22)] == ["203.0.113.7/32"]
    assert rules[(8000, 8000)] == rules[(9400, 9400)] == rules[(8100, 8199)] == ["10.0.0.0/16"]


def test_given_ami_skips_the_lookup(instances: dict[str, Any]) -> None:
    mock = up(instances | {"amiId": "ami-0123456789abcdef0", "instanceCount": "1"})
    assert [h.inputs["ami"] for h in mock.of_type("aws:ec2/instance:Instance")] == ["ami-0123456789abcdef0"]
    assert not [t for t, _ in mock.invoked if t == "aws:ec2/getAmi:getAmi"]


@pytest.mark.parametrize(("public", "addresses"), [(True, ["198.51.100.1", "198.51.100.2"]),
                                                   (False, ["10.0.1.1", "10.0.1.2"])])
def test_inventory_is_written_for_provision_gpu_hosts(instances: dict[str, Any], tmp_path: Path, public: bool,
                                                      addresses: list[str]) -> None:
    up(instances | {"publicIp": public, "sshUser": "debian"})
    path = Path(instances["inventoryPath"])
    assert "provision_gpu_hosts.yml" in path.read_text()
    inventory = yaml.safe_load(path.read_text())
    assert inventory["all"]["vars"]["ansible_user"] == "debian"
    # The real ansible-inventory reads it: both hosts in `serving` and (through it) in `gpu`.
    listed = json.loads(subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(path), "--list"], check=True,
                                       capture_output=True, text=True, cwd=tmp_path).stdout)
    assert listed["serving"]["hosts"] == ["modelfleet-gpu-1", "modelfleet-gpu-2"]
    assert listed["gpu"]["children"] == ["serving"]
    hostvars = listed["_meta"]["hostvars"]
    assert [hostvars[h]["ansible_host"] for h in listed["serving"]["hosts"]] == addresses
    assert [hostvars[h]["fleet_address"] for h in listed["serving"]["hosts"]] == ["10.0.1.1", "10.0.1.2"]
    assert hostvars["modelfleet-gpu-1"]["ec2_instance_id"] == "i-00000000000000001"


def test_pulumi_yaml_declares_exactly_the_settings_with_the_same_defaults() -> None:
    declared = yaml.safe_load((PROGRAM / "Pulumi.yaml").read_text())["config"]
    fields = {f.alias: f for f in AwsSettings.model_fields.values()}
    assert set(declared) == set(fields)
    for key, entry in declared.items():
        assert entry["description"], key
        field = fields[key]
        default = field.get_default(call_default_factory=True)
        assert entry["default"] == (str(default) if isinstance(default, Path) else default), key


def test_example_stacks_are_valid() -> None:
    for example in sorted(PROGRAM.glob("Pulumi.example-*.yaml")):
        values = {k.removeprefix(f"{PROJECT}:"): v for k, v in yaml.safe_load(example.read_text())["config"].items()
                  if k.startswith(f"{PROJECT}:")}
        parse_settings(AwsSettings, PROJECT, values)


@pytest.mark.parametrize(("values", "message"), [
    ({"instanceType": "m5.large"}, "modelfleet-aws:instanceType: 'm5.large' is not an NVIDIA GPU instance type"),
    ({"instanceType": "g4ad.xlarge"}, "modelfleet-aws:instanceType: 'g4ad.xlarge' is not an NVIDIA GPU"),
    ({"keyName": ""}, "modelfleet-aws:keyName: required in instances mode"),
    ({"sshCidr": ""}, "modelfleet-aws:sshCidr: required in instances mode"),
    ({"sshCidr": "10.0.0.300/8"}, "modelfleet-aws:sshCidr: "),
    ({"servingCidr": "everyone"}, "modelfleet-aws:servingCidr: "),
    ({"instanceCount": "0"}, "modelfleet-aws:instanceCount: Input should be greater than or equal to 1"),
    ({"mode": "ecs"}, "modelfleet-aws:mode: Input should be 'eks' or 'instances'"),
    ({"mode": "eks"}, "modelfleet-aws:clusterName: required in eks mode"),
    ({"mode": "eks", "clusterName": "c"}, "modelfleet-aws:subnetIds: required in eks mode"),
    ({"mode": "eks", "clusterName": "c", "subnetIds": "[subnet-a"}, "modelfleet-aws:subnetIds: not a JSON array"),
    ({"mode": "eks", "clusterName": "c", "subnetIds": "s", "desiredSize": "5"},
     "modelfleet-aws:desiredSize: 5 is not within minSize 0 and maxSize 2"),
    ({"mode": "eks", "clusterName": "c", "subnetIds": "s", "amiType": "AL2_x86_64"}, "modelfleet-aws:amiType: "),
    ({"diskSize": "8"}, "modelfleet-aws:diskSize: Input should be greater than or equal to 20"),
    ({"instanceTyp": "g5.xlarge"}, "modelfleet-aws:instanceTyp: unknown key"),
])
def test_bad_configuration_is_named_by_key(values: dict[str, Any], message: str) -> None:
    merged = {"keyName": "ops", "sshCidr": "203.0.113.7/32"} | values
    with pytest.raises(StackConfigError) as error:
        parse_settings(AwsSettings, PROJECT, merged)
    assert any(p.startswith(message) for p in error.value.problems), error.value.problems


def test_bad_configuration_stops_the_program(instances: dict[str, Any]) -> None:
    with pytest.raises(StackConfigError, match=r"modelfleet-aws:instanceType: 't3.large' is not an NVIDIA GPU"):
        up(instances | {"instanceType": "t3.large"})
    assert not Path(instances["inventoryPath"]).exists()
