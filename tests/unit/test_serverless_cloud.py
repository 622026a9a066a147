"""pulumi/lambda's builder under Pulumi's mocks (the Pulumi CLI and AWS cannot exist here: mocked, named so)."""

from __future__ import annotations

import asyncio
from typing import Any

import pulumi
import pytest

from modelfleet.serverless.cloud import HANDLER, LambdaConfigError, build, load_settings


class MockedAws(pulumi.runtime.Mocks):
    """Stands in for the AWS provider: records every resource, answers the ECR token call."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "aws:ecr/repository:Repository":
            outputs.update(repositoryUrl=f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{args.inputs['name']}",
                           registryId="123456789012")
        if args.typ == "aws:lambda/function:Function":
            outputs["arn"] = f"arn:aws:lambda:eu-west-1:123456789012:function:{args.inputs['name']}"
        if args.typ == "aws:lambda/functionUrl:FunctionUrl":
            outputs["functionUrl"] = "https://abc.lambda-url.eu-west-1.on.aws/"
        if args.typ == "aws:apigatewayv2/api:Api":
            outputs.update(apiEndpoint="https://abc.execute-api.eu-west-1.amazonaws.com",
                           executionArn="arn:aws:execute-api:eu-west-1:123456789012:abc")
        if args.typ == "aws:iam/role:Role":
            outputs["arn"] = f"arn:aws:iam::123456789012:role/{args.name}"
        if args.typ == "docker:index/image:Image":
            outputs["repoDigest"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/m@sha256:" + "0" * 64
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"userName": "AWS", "password": "token", "authorizationToken": "x", "proxyEndpoint": "https://x",
                    "expiresAt": "2030-01-01T00:00:00Z", "id": "eu-west-1"}
        return {}


def _run(values: dict[str, Any]) -> tuple[MockedAws, dict[str, Any]]:
    loop = asyncio.new_event_loop()  # each test its own loop, set before set_mocks
    asyncio.set_event_loop(loop)
    mocks = MockedAws()
    pulumi.runtime.set_mocks(mocks, project="modelfleet-lambda", stack="test", preview=False)
    outputs = build(load_settings("modelfleet-lambda", values))
    resolved = {k: loop.run_until_complete(v.future()) for k, v in outputs.items()}
    for _ in range(20):  # let registrations nothing awaits (permissions, attachments) finish
        loop.run_until_complete(asyncio.sleep(0.01))
    return mocks, resolved


def _one(mocks: MockedAws, typ: str) -> dict[str, Any]:
    found = [r.inputs for r in mocks.resources if r.typ == typ]
    assert len(found) == 1, [r.typ for r in mocks.resources]
    return found[0]


def test_image_function_url_from_config() -> None:
    mocks, outputs = _run({"functionName": "credit-risk-v1", "memoryMb": "3008", "timeoutSeconds": "20",
                           "reservedConcurrency": "25", "recordSampleRate": "0.25"})
    function = _one(mocks, "aws:lambda/function:Function")
    assert (function["memorySize"], function["timeout"], function["reservedConcurrentExecutions"]) == (3008, 20, 25)
    assert function["packageType"] == "Image" and function["imageUri"].endswith("@sha256:" + "0" * 64)
    assert function["imageConfig"]["commands"] == [HANDLER]
    assert function["environment"]["variables"] == {"MODELFLEET_RECORD_SAMPLE_RATE": "0.25"}
    assert _one(mocks, "aws:ecr/repository:Repository")["imageTagMutability"] == "IMMUTABLE"
    image = _one(mocks, "docker:index/image:Image")
    assert image["build"]["context"] == ".cache/lambda/image" and image["build"]["platform"] == "linux/amd64"
    assert _one(mocks, "aws:lambda/functionUrl:FunctionUrl")["authorizationType"] == "AWS_IAM"
    assert _one(mocks, "aws:cloudwatch/logGroup:LogGroup")["name"] == "/aws/lambda/credit-risk-v1"
    policy = _one(mocks, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")["policyArn"]
    assert policy.endswith("AWSLambdaBasicExecutionRole")
    assert outputs["url"] == "https://abc.lambda-url.eu-west-1.on.aws/"
    assert not [r for r in mocks.resources if r.typ.startswith("aws:apigatewayv2")]


def test_prebuilt_image_behind_an_http_api() -> None:
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlp@sha256:" + "1" * 64
    mocks, outputs = _run({"functionName": "mlp-v1", "imageUri": uri, "endpoint": "http-api"})
    assert _one(mocks, "aws:lambda/function:Function")["imageUri"] == uri
    assert _one(mocks, "aws:lambda/function:Function")["reservedConcurrentExecutions"] == -1  # unreserved
    assert not [r for r in mocks.resources if r.typ in ("aws:ecr/repository:Repository", "docker:index/image:Image")]
    api = _one(mocks, "aws:apigatewayv2/api:Api")
    assert api["protocolType"] == "HTTP" and api["target"].endswith(":function:mlp-v1")
    permission = _one(mocks, "aws:lambda/permission:Permission")
    assert permission["principal"] == "apigateway.amazonaws.com" and permission["sourceArn"].endswith("/*/*")
    assert outputs["url"] == "https://abc.execute-api.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(("values", "message"), [
    ({}, "modelfleet-lambda:functionName: Field required"),
    ({"functionName": "bad name"}, "modelfleet-lambda:functionName: String should match pattern"),
    ({"functionName": "f", "memoryMb": "64"}, "memoryMb: Input should be greater than or equal to 128"),
    ({"functionName": "f", "timeoutSeconds": "901"}, "timeoutSeconds: Input should be less than or equal to 900"),
    ({"functionName": "f", "endpoint": "alb"}, "modelfleet-lambda:endpoint: Input should be 'url' or 'http-api'"),
    ({"functionName": "f", "memorySize": "1024"}, "modelfleet-lambda:memorySize: Extra inputs are not permitted"),
])
def test_bad_configuration_names_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(LambdaConfigError) as raised:
        load_settings("modelfleet-lambda", values)
    assert message in str(raised.value)
