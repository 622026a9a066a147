"""Kubernetes objects of a model, from its spec: the builder behind ``modelfleet k8s render`` and ``pulumi/k8s``."""

from modelfleet.k8s.render import build, problems, to_yaml
from modelfleet.k8s.settings import K8sSettings, load_settings, parse_settings

__all__ = ["K8sSettings", "build", "load_settings", "parse_settings", "problems", "to_yaml"]
