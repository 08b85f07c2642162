"""Measurements of the service, each a module run from the repository root as
``python -m benchmarks.NAME`` (see ``benchmarks/README.md``)."""
