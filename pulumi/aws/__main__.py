"""pulumi/aws: GPU capacity on AWS (the builder is modelfleet.aws.program)."""

from pathlib import Path

from modelfleet.aws.program import build
from modelfleet.aws.settings import AwsSettings
from modelfleet.stackconfig import pulumi_settings

build(pulumi_settings(AwsSettings), Path(__file__).resolve().parent)
