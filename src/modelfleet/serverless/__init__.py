"""Serverless deployment: one model version as an AWS Lambda function or a Google Cloud Function.

- :mod:`~modelfleet.serverless.handler`: the cold start and each call, on the model server's own code;
- :mod:`~modelfleet.serverless.events`: Lambda (Function URL, API Gateway HTTP API v2 and REST v1)
  events and Cloud Functions (functions-framework) requests in and out;
- :mod:`~modelfleet.serverless.emf`: per-call metrics as CloudWatch Embedded Metric Format lines;
- :mod:`~modelfleet.serverless.records`: sampled request/response records as log lines, and back to a spool;
- :mod:`~modelfleet.serverless.package`: the Lambda container image context and zip package.
"""
