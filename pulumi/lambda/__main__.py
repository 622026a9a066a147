"""pulumi/lambda: configuration in, resources from modelfleet.serverless.cloud (no logic here)."""

import pulumi

from modelfleet.serverless.cloud import build, load_settings

KEYS = ("functionName", "imageUri", "imageContext", "memoryMb", "timeoutSeconds", "reservedConcurrency", "endpoint",
        "authorization", "recordSampleRate", "logRetentionDays", "architecture")

config = pulumi.Config()
values = {key: value for key in KEYS if (value := config.get(key)) is not None}
for name, output in build(load_settings(pulumi.get_project(), values)).items():
    pulumi.export(name, output)
