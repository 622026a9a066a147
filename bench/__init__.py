"""Benchmarks against peer systems (not part of ``make test``); shared helpers in :mod:`bench.common`."""
