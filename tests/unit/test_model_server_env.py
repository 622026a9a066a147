"""roles/model_server/templates/instance.env.j2 with the spec deploy_model.yml passes it.

deploy_model.yml used to read model.yml with ``from_yaml`` and pass its ``serving`` block as written; it now
passes the block of the spec onnx_convert returns (validated by modelfleet.spec, every default filled in).
For the example specs the environment file is the same except that ``MODELFLEET_ARGS`` names every setting,
and ``modelfleet serve`` reads both argument lists as the same settings.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from modelfleet.cli import build_parser
from modelfleet.spec import Serving, load_spec

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "roles" / "model_server" / "templates" / "instance.env.j2"
EXAMPLES = sorted(REPO.glob("examples/*/model.yml"))


DEFAULTS = yaml.safe_load((REPO / "roles" / "model_server" / "defaults" / "main.yml").read_text())


def render(serving: dict[str, Any], **changes: Any) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    variables = dict(
        ansible_managed="Ansible managed", model_server_instance="m-1", model_server_name="m", model_server_version="1",
        model_server_slot="blue", model_server_version_dir="/var/lib/modelfleet/models/m/1",
        model_server_listen_address="0.0.0.0", model_server_ports={"blue": 8101, "green": 8102},
        model_server_data_dir="/var/lib/modelfleet", model_server_serving=serving, model_server_extra_args=[],
        model_server_grpc=DEFAULTS["model_server_grpc"],
        model_server_grpc_port_offset=DEFAULTS["model_server_grpc_port_offset"],
    )
    return env.from_string(TEMPLATE.read_text()).render(**(variables | changes))


def env_value(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(name + "=")).removeprefix(name + "=")


def test_each_slot_serves_grpc_on_its_port_plus_the_offset() -> None:
    """The unit passes $MODELFLEET_GRPC_ARGS to `modelfleet serve`; the router expects the port + offset."""
    for slot, port in (("blue", 8201), ("green", 8202)):
        text = render({}, model_server_slot=slot)
        assert env_value(text, "MODELFLEET_PORT") == str(port - 100)
        assert env_value(text, "MODELFLEET_GRPC_PORT") == str(port)
        parsed = build_parser().parse_args(["serve", "/a", *shlex.split(env_value(text, "MODELFLEET_GRPC_ARGS"))])
        assert parsed.grpc_port == port
    text = render({}, model_server_grpc_port_offset=1000)
    assert env_value(text, "MODELFLEET_GRPC_PORT") == "9101"
    text = render({}, model_server_grpc=False)
    assert env_value(text, "MODELFLEET_GRPC_ARGS") == "" and "MODELFLEET_GRPC_PORT" not in text
    assert build_parser().parse_args(["serve", "/a"]).grpc_port is None  # HTTP only
    unit = (TEMPLATE.parent / "modelfleet-serve@.service.j2").read_text()
    assert "--port ${MODELFLEET_PORT} $MODELFLEET_GRPC_ARGS" in unit  # unbraced: split into words, none if empty


def arguments(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("MODELFLEET_ARGS="))
    return shlex.split(line.removeprefix("MODELFLEET_ARGS="))


def settings(args: list[str]) -> tuple[list[str], int, int, int]:
    """What `modelfleet serve` (cli._serve) takes from these arguments, with no --spec."""
    parsed = build_parser().parse_args(["serve", "/artifact", *args])
    defaults = Serving()
    return (parsed.providers.split(",") if parsed.providers else list(defaults.providers),
            parsed.max_batch or defaults.batching.max_batch,
            parsed.max_queue_delay_us if parsed.max_queue_delay_us is not None
            else defaults.batching.max_queue_delay_us,
            parsed.max_queue_size or defaults.batching.max_queue_size)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_the_validated_spec_gives_the_server_the_same_settings(path: Path) -> None:
    written = yaml.safe_load(path.read_text()).get("serving", {})
    validated = load_spec(path).model_dump(mode="json")["serving"]
    before, after = render(written), render(validated)
    assert [line for line in before.splitlines() if not line.startswith("MODELFLEET_ARGS=")] == \
           [line for line in after.splitlines() if not line.startswith("MODELFLEET_ARGS=")]
    assert settings(arguments(before)) == settings(arguments(after))
    # Every setting is spelled out now, and what the spec sets is passed as before.
    flags = arguments(after)[0::2]
    assert flags == ["--providers", "--max-batch", "--max-queue-delay-us", "--max-queue-size"]
    assert " ".join(arguments(before)) in " ".join(arguments(after))


def test_the_example_without_a_queue_size_gets_the_spec_default() -> None:
    path = REPO / "examples" / "credit-risk" / "model.yml"
    validated = load_spec(path).model_dump(mode="json")
    assert arguments(render(validated["serving"])) == [
        "--providers", "cpu", "--max-batch", "64", "--max-queue-delay-us", "2000", "--max-queue-size", "1024"]
    assert Path(validated["source"]["path"]).is_absolute()
