"""Settings of ``pulumi/aws``: which path (``eks`` or ``instances``), GPU instance type, sizes, access."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelfleet.spec import DNS_LABEL
from modelfleet.stackconfig import StackSettings

# NVIDIA GPU instance families on x86_64 (g4ad is AMD, g5g is Arm: not for these AMIs).
GPU_INSTANCE = re.compile(r"^(g4dn|g5|g6|g6e|gr6|p3|p3dn|p4d|p4de|p5|p5e|p5en)\.[0-9]*[a-z]+$")
EKS_GPU_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "AL2_x86_64_GPU", "BOTTLEROCKET_x86_64_NVIDIA")
GPU_LABEL, GPU_TAINT = "nvidia.com/gpu.present", "nvidia.com/gpu"
# Debian's AWS account: Debian 12 is what the roles and the local fleet run.
DEBIAN_OWNER, DEBIAN_12_AMI = "136693071363", "debian-12-amd64-*"


class AwsSettings(StackSettings):
    """Every field is one stack configuration key of ``modelfleet-aws``."""

    mode: Literal["eks", "instances"] = Field("instances", description="eks node group or plain instances")
    name_prefix: str = Field("modelfleet", pattern=DNS_LABEL)
    instance_type: str = Field("g5.xlarge", description="an NVIDIA GPU instance type")
    # eks
    cluster_name: str = Field("", description="existing EKS cluster (eks mode)")
    node_role_arn: str = Field("", description="IAM role of the nodes; empty: one is created")
    subnet_ids: list[str] = Field(default_factory=list, description="subnets of the node group (eks mode)")
    desired_size: int = Field(1, ge=0)
    min_size: int = Field(0, ge=0)
    max_size: int = Field(2, ge=1)
    disk_size: int = Field(100, ge=20, description="GiB per node (eks) or root volume (instances)")
    ami_type: Literal["AL2023_x86_64_NVIDIA", "AL2_x86_64_GPU", "BOTTLEROCKET_x86_64_NVIDIA"] = \
        "AL2023_x86_64_NVIDIA"
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    # instances
    instance_count: int = Field(2, ge=1, le=100)
    ami_id: str = Field("", description="AMI of the instances; empty: the newest Debian 12 (amd64)")
    key_name: str = Field("", description="EC2 key pair for SSH (instances mode)")
    subnet_id: str = Field("", description="subnet of the instances; empty: the default VPC's")
    vpc_id: str = Field("", description="VPC of the security group; empty: the default VPC")
    ssh_cidr: str = Field("", description="who may SSH to the instances (instances mode)")
    serving_cidr: str = Field("", description="who may reach the serving and metrics ports; empty: sshCidr")
    ssh_user: str = Field("admin", min_length=1, description="login user of the AMI (Debian: admin)")
    public_ip: bool = Field(True, description="Ansible connects to public addresses (else private)")
    inventory_path: Path = Field(Path("../../inventories/aws/hosts.yml"), description="inventory written here")

    @field_validator("subnet_ids", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        """Pulumi passes arrays as JSON text; a comma-separated string is accepted too."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"not a JSON array: {exc}") from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AwsSettings:
        problems = []
        if not GPU_INSTANCE.match(self.instance_type):
            problems.append(f"instanceType: {self.instance_type!r} is not an NVIDIA GPU instance type "
                            "(g4dn, g5, g6, g6e, gr6, p3, p3dn, p4d, p4de, p5, p5e, p5en)")
        if self.mode == "eks":
            if not self.cluster_name:
                problems.append("clusterName: required in eks mode (the EKS cluster the node group joins)")
            if not self.subnet_ids:
                problems.append("subnetIds: required in eks mode (at least one subnet)")
            if not self.min_size <= self.desired_size <= self.max_size:
                problems.append(f"desiredSize: {self.desired_size} is not within minSize {self.min_size} and "
                                f"maxSize {self.max_size}")
        else:
            if not self.key_name:
                problems.append("keyName: required in instances mode (Ansible connects over SSH)")
            if not self.ssh_cidr:
                problems.append("sshCidr: required in instances mode (e.g. your controller's address/32)")
            for key, value in (("sshCidr", self.ssh_cidr), ("servingCidr", self.serving_cidr)):
                if value:
                    try:
                        ipaddress.ip_network(value)
                    except ValueError as exc:
                        problems.append(f"{key}: {exc}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def serving_source(self) -> str:
        return self.serving_cidr or self.ssh_cidr

    def resolved(self, base: Path) -> AwsSettings:
        path = self.inventory_path
        return self.model_copy(update={"inventory_path": path if path.is_absolute() else (base / path).resolve()})
