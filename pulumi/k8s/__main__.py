"""pulumi/k8s: one model on Kubernetes from the stack configuration (all logic in modelfleet.k8s)."""

from modelfleet.k8s.pulumi_component import from_config

from_config()
