"""The router role's HAProxy configuration, rendered for the Docker host.

One template for bare metal and containers: ``roles/router/templates/haproxy.cfg.j2`` with the role's
defaults, changed only where a container differs (no chroot or user switch: the HAProxy image runs
unprivileged already; runtime socket and state file under /var/lib/haproxy, writable by that user).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml

ROLE = Path(__file__).resolve().parents[3] / "roles" / "router"
MANAGED = "Rendered by modelfleet.dockerhost from roles/router/templates/haproxy.cfg.j2; do not edit."
CONFIG_PATH = "/usr/local/etc/haproxy/haproxy.cfg"


def role_defaults(role: Path = ROLE) -> dict[str, Any]:
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text(encoding="utf-8"))
    return dict(defaults or {})


def render_haproxy(model: str, blue_port: int, green_port: int, canary_weight: int, *,
                   port: int, metrics_port: int, role: Path = ROLE, **overrides: Any) -> str:
    """haproxy.cfg for one model with slots blue (stable, 100 - canary_weight) and green (canary)."""
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"canary weight must be 0-100, not {canary_weight}")
    variables = role_defaults(role) | {
        "ansible_managed": MANAGED,
        "router_models": [{"name": model, "blue_port": blue_port, "green_port": green_port}],
        "router_slot_weights": {"blue": 100 - canary_weight, "green": canary_weight},
        "router_port": port, "router_metrics_port": metrics_port,
        "router_chroot": "", "router_haproxy_user": "", "router_haproxy_group": "",
        "router_stats_socket": "/var/lib/haproxy/admin.sock",
        "router_state_file": "/var/lib/haproxy/server-state",
        # The Docker host's model servers publish no gRPC port: its router carries HTTP only.
        "router_grpc": False,
    } | overrides
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(role / "templates"),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                     trim_blocks=True, autoescape=False)  # not HTML
    return environment.get_template("haproxy.cfg.j2").render(variables)
