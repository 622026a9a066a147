"""The resources of ``pulumi/aws``.

- ``eks``: a managed node group of NVIDIA GPU instances in an existing EKS cluster, labelled
  ``nvidia.com/gpu.present=true`` and tainted ``nvidia.com/gpu=true:NoSchedule``, so only pods that tolerate
  ``nvidia.com/gpu`` (the model servers of modelfleet.k8s) land there; the node IAM role is created unless
  ``nodeRoleArn`` names one.
- ``instances``: GPU instances (IMDSv2, encrypted gp3 root volume) in a security group that admits SSH
  from ``sshCidr`` and the serving and metrics ports from ``servingCidr``; the Ansible inventory for
  ``provision_gpu_hosts.yml`` is written when their addresses are known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from modelfleet.aws.inventory import Host, write_inventory
from modelfleet.aws.settings import DEBIAN_12_AMI, DEBIAN_OWNER, GPU_LABEL, GPU_TAINT, AwsSettings

NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
# Router, router metrics, slot range, drift exporter, node exporter, DCGM exporter (DESIGN.md's ports).
SERVING_PORTS = ((8000, 8000), (8404, 8404), (8100, 8199), (9108, 9108), (9100, 9100), (9400, 9400))


def _tags(name: str) -> dict[str, str]:
    return {"Name": name, "modelfleet.io/managed-by": "pulumi", "modelfleet.io/role": "gpu-serving"}


def _node_role(settings: AwsSettings, child: pulumi.ResourceOptions) -> pulumi.Input[str]:
    if settings.node_role_arn:
        return settings.node_role_arn
    name = f"{settings.name_prefix}-gpu-nodes"
    role = aws.iam.Role(name, name=name, assume_role_policy=pulumi.Output.json_dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                       "Action": "sts:AssumeRole"}]}), tags=_tags(name), opts=child)
    for policy in NODE_POLICIES:
        aws.iam.RolePolicyAttachment(f"{name}-{policy}", role=role.name,
                                     policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=child)
    return role.arn


class GpuNodeGroup(pulumi.ComponentResource):
    """The Kubernetes path: GPU nodes only GPU workloads schedule onto."""

    def __init__(self, name: str, settings: AwsSettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelfleet:aws:GpuNodeGroup", name, None, opts)
        s = settings
        child = pulumi.ResourceOptions(parent=self)
        self.node_group = aws.eks.NodeGroup(
            name, cluster_name=s.cluster_name, node_group_name=name, node_role_arn=_node_role(s, child),
            subnet_ids=s.subnet_ids, instance_types=[s.instance_type], ami_type=s.ami_type,
            capacity_type=s.capacity_type, disk_size=s.disk_size,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(desired_size=s.desired_size, min_size=s.min_size,
                                                              max_size=s.max_size),
            labels={GPU_LABEL: "true", "modelfleet.io/role": "model-server"},
            taints=[aws.eks.NodeGroupTaintArgs(key=GPU_TAINT, value="true", effect="NO_SCHEDULE")],
            tags=_tags(name),
            # The cluster autoscaler owns the size once running; a stack update must not reset it.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]))
        self.register_outputs({"node_group": self.node_group.node_group_name})


class GpuInstances(pulumi.ComponentResource):
    """The Ansible path: GPU instances and the inventory that provisions them."""

    def __init__(self, name: str, settings: AwsSettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelfleet:aws:GpuInstances", name, None, opts)
        s = settings
        child = pulumi.ResourceOptions(parent=self)
        ingress = [aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=22, to_port=22,
                                                    cidr_blocks=[s.ssh_cidr], description="SSH (Ansible)")]
        ingress += [aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=low, to_port=high,
                                                     cidr_blocks=[s.serving_source], description="modelfleet")
                    for low, high in SERVING_PORTS]
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", description="modelfleet GPU serving hosts", vpc_id=s.vpc_id or None, ingress=ingress,
            egress=[aws.ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, cidr_blocks=["0.0.0.0/0"])],
            tags=_tags(f"{name}-sg"), opts=child)
        ami: pulumi.Input[str] = s.ami_id or aws.ec2.get_ami_output(
            owners=[DEBIAN_OWNER], most_recent=True,
            filters=[aws.ec2.GetAmiFilterArgs(name="name", values=[DEBIAN_12_AMI]),
                     aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"])]).id
        self.instances = [aws.ec2.Instance(
            f"{name}-{index}", ami=ami, instance_type=s.instance_type, key_name=s.key_name,
            subnet_id=s.subnet_id or None, vpc_security_group_ids=[self.security_group.id],
            associate_public_ip_address=s.public_ip,
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(volume_size=s.disk_size, volume_type="gp3",
                                                                  encrypted=True),
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="required", http_endpoint="enabled"),
            tags=_tags(f"{name}-{index}"), opts=child) for index in range(1, s.instance_count + 1)]
        host_outputs = [pulumi.Output.all(f"{name}-{i}", inst.id, inst.instance_type, inst.public_ip, inst.private_ip)
                        for i, inst in enumerate(self.instances, start=1)]
        path = s.inventory_path
        self.inventory = pulumi.Output.all(*host_outputs).apply(
            lambda rows: write_inventory(path, [Host(*(str(v or "") for v in row)) for row in rows],
                                         ssh_user=s.ssh_user, use_public_ip=s.public_ip))
        self.register_outputs({"inventory": self.inventory})


def build(settings: AwsSettings, program_dir: Path) -> Any:
    """What ``pulumi/aws/__main__.py`` calls."""
    s = settings.resolved(program_dir)
    name = f"{s.name_prefix}-gpu"
    if s.mode == "eks":
        group = GpuNodeGroup(name, s)
        pulumi.export("nodeGroup", group.node_group.node_group_name)
        pulumi.export("nodeLabels", group.node_group.labels)
        return group
    fleet = GpuInstances(name, s)
    pulumi.export("inventoryPath", str(s.inventory_path))
    pulumi.export("inventory", fleet.inventory)
    pulumi.export("publicIps", [i.public_ip for i in fleet.instances])
    return fleet
