"""The whole suite in one module: what ``pytest --sbt-conformance INTERFACE=TYPE`` collects."""

from .metering import TestMeteringConformance

__all__ = ["TestMeteringConformance"]
