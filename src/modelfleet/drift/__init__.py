"""The drift exporter: one daemon per serving host that tails the payload spool of every model version
there, keeps sliding-window drift and quality statistics, and exports them to Prometheus.

Modules: :mod:`~modelfleet.drift.discovery` (which versions), :mod:`~modelfleet.drift.pipeline`
(spool → windows), :mod:`~modelfleet.drift.joiner` and :mod:`~modelfleet.drift.labels` (labels that
arrive later), :mod:`~modelfleet.drift.checkpoint`, :mod:`~modelfleet.drift.exporter` (the loop),
:mod:`~modelfleet.drift.metrics`, :mod:`~modelfleet.drift.app` (HTTP), :mod:`~modelfleet.drift.webconfig`
(TLS and basic auth), :mod:`~modelfleet.drift.report` (the HTML report). See docs/drift.md.
"""
