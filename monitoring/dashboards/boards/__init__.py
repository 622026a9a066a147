"""modelfleet's Grafana dashboards as code: the panel vocabulary (panels) and one module per dashboard."""
