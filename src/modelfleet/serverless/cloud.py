"""The builder behind ``pulumi/lambda``: a model's Lambda function and its endpoint on AWS.

Resources: an ECR repository and the function's container image (pushed from the image context that
``modelfleet serverless package`` writes, or an ``imageUri`` already pushed), an execution role with
the basic logging policy, the log group (retention bounded), the function (memory, timeout, reserved
concurrency from the stack configuration) and its endpoint: a Function URL or an API Gateway HTTP API.
The program in ``pulumi/lambda`` only reads its configuration and calls :func:`build`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from modelfleet.errors import ModelfleetError
from modelfleet.serverless.handler import ENV_SAMPLE_RATE

HANDLER = "modelfleet.serverless.aws_lambda.handler"


class LambdaConfigError(ModelfleetError):
    """The stack configuration cannot be used; the message names each key as ``pulumi config`` spells it."""


class LambdaSettings(BaseModel):
    """``pulumi/lambda``'s typed configuration (camelCase keys as in Pulumi.yaml; unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)

    function_name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    image_uri: str = ""  # an image already pushed; empty: build imageContext and push it to a new repository
    image_context: str = ".cache/lambda/image"
    memory_mb: int = Field(default=2048, ge=128, le=10240)
    timeout_seconds: int = Field(default=30, ge=1, le=900)
    reserved_concurrency: int = Field(default=-1, ge=-1)  # -1: unreserved
    endpoint: Literal["url", "http-api"] = "url"
    authorization: Literal["AWS_IAM", "NONE"] = "AWS_IAM"
    record_sample_rate: float = Field(default=0.1, ge=0, le=1)
    log_retention_days: int = Field(default=30, ge=1)
    architecture: Literal["x86_64", "arm64"] = "x86_64"


def load_settings(project: str, values: Mapping[str, Any]) -> LambdaSettings:
    """Validate the configuration (``pulumi config`` values, as text or typed)."""
    try:
        return LambdaSettings.model_validate(dict(values))
    except pydantic.ValidationError as exc:
        problems = [f"{project}:{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise LambdaConfigError("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems)) from None


def _image(settings: LambdaSettings, prefix: str) -> tuple[Any, Any]:
    """(image URI output, repository or None)."""
    import pulumi
    import pulumi_aws as aws

    if settings.image_uri:
        return pulumi.Output.from_input(settings.image_uri), None
    import pulumi_docker as docker

    repository = aws.ecr.Repository(f"{prefix}-repo", name=settings.function_name.lower(),
                                    image_tag_mutability="IMMUTABLE", force_delete=False,
                                    image_scanning_configuration={"scan_on_push": True})
    token = aws.ecr.get_authorization_token_output(registry_id=repository.registry_id)
    platform = "linux/amd64" if settings.architecture == "x86_64" else "linux/arm64"
    image = docker.Image(f"{prefix}-image", image_name=repository.repository_url.apply(lambda url: f"{url}:latest"),
                         build=docker.DockerBuildArgs(context=settings.image_context, platform=platform),
                         registry=docker.RegistryArgs(server=repository.repository_url, username=token.user_name,
                                                      password=pulumi.Output.secret(token.password)))
    return image.repo_digest, repository


def build(settings: LambdaSettings) -> dict[str, Any]:
    """Declare the resources; returns the stack outputs (``url``, ``functionName``, ``functionArn``, ...)."""
    import pulumi_aws as aws

    prefix = settings.function_name
    image_uri, repository = _image(settings, prefix)
    role = aws.iam.Role(f"{prefix}-role", assume_role_policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                       "Principal": {"Service": "lambda.amazonaws.com"}}]}))
    aws.iam.RolePolicyAttachment(f"{prefix}-logs", role=role.name,
                                 policy_arn="arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
    logs = aws.cloudwatch.LogGroup(f"{prefix}-logs", name=f"/aws/lambda/{settings.function_name}",
                                   retention_in_days=settings.log_retention_days)
    function = aws.lambda_.Function(
        f"{prefix}-function", name=settings.function_name, package_type="Image", image_uri=image_uri,
        role=role.arn, memory_size=settings.memory_mb, timeout=settings.timeout_seconds,
        reserved_concurrent_executions=settings.reserved_concurrency, architectures=[settings.architecture],
        image_config={"commands": [HANDLER]},
        environment={"variables": {ENV_SAMPLE_RATE: f"{settings.record_sample_rate:g}"}},
        opts=_depends_on(logs))
    outputs: dict[str, Any] = {"functionName": function.name, "functionArn": function.arn, "imageUri": image_uri,
                               "logGroup": logs.name}
    if repository is not None:
        outputs["repositoryUrl"] = repository.repository_url
    if settings.endpoint == "url":
        url = aws.lambda_.FunctionUrl(f"{prefix}-url", function_name=function.name,
                                      authorization_type=settings.authorization)
        outputs["url"] = url.function_url
    else:
        api = aws.apigatewayv2.Api(f"{prefix}-api", protocol_type="HTTP", target=function.arn)
        aws.lambda_.Permission(f"{prefix}-api-invoke", action="lambda:InvokeFunction", function=function.name,
                               principal="apigateway.amazonaws.com",
                               source_arn=api.execution_arn.apply(lambda arn: f"{arn}/*/*"))
        outputs["url"] = api.api_endpoint
    return outputs


def _depends_on(resource: Any) -> Any:
    import pulumi

    return pulumi.ResourceOptions(depends_on=[resource])
