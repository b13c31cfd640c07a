"""The whole suite in one module: what ``pytest --sbt-conformance INTERFACE=TYPE`` collects."""

from .auth import TestAuthConformance
from .billing import TestBillingConformance
from .metering import TestMeteringConformance

__all__ = ["TestAuthConformance", "TestBillingConformance", "TestMeteringConformance"]
