"""The Ansible inventory of GPU instances, in the layout of inventories/local/hosts.yml.

Hosts go into ``serving`` (what deploy_model.yml targets) and ``gpu`` (the hosts provision_gpu_hosts.yml
prepares: driver, container toolkit, exporters). ``fleet_address`` is the private address the hosts
reach each other and Prometheus on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

HEADER = ("# Written by `pulumi up` in pulumi/aws (modelfleet.aws.inventory); rewritten on every update.\n"
          "# Next: ansible-playbook -i {path} playbooks/provision_gpu_hosts.yml\n")


@dataclass(frozen=True)
class Host:
    name: str
    instance_id: str
    instance_type: str
    public_ip: str
    private_ip: str


def render_inventory(hosts: Sequence[Host], *, ssh_user: str, use_public_ip: bool) -> dict[str, object]:
    entries = {}
    for host in hosts:
        address = host.public_ip if use_public_ip else host.private_ip
        if not address:
            raise ValueError(f"{host.name} ({host.instance_id}) has no {'public' if use_public_ip else 'private'} "
                             "address; set publicIp to false or give the subnet public addresses")
        entries[host.name] = {"ansible_host": address, "fleet_address": host.private_ip,
                              "ec2_instance_id": host.instance_id, "ec2_instance_type": host.instance_type}
    return {"all": {"vars": {"ansible_user": ssh_user, "ansible_python_interpreter": "/usr/bin/python3",
                             "ansible_become": True},
                    "children": {"serving": {"hosts": entries}, "gpu": {"children": {"serving": {}}}}}}


def write_inventory(path: Path, hosts: Sequence[Host], *, ssh_user: str, use_public_ip: bool) -> str:
    """Write the inventory atomically; return its text."""
    text = "---\n" + HEADER.format(path=path) + yaml.safe_dump(
        render_inventory(hosts, ssh_user=ssh_user, use_public_ip=use_public_ip), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return text
