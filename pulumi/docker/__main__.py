"""pulumi/docker: one model on one Docker host (the builder is modelfleet.dockerhost.program)."""

from pathlib import Path

from modelfleet.dockerhost.program import build
from modelfleet.dockerhost.settings import DockerHostSettings
from modelfleet.stackconfig import pulumi_settings

build(pulumi_settings(DockerHostSettings), Path(__file__).resolve().parent)
