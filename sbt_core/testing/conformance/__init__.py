"""The provider conformance kit: the contract of IMetering, IBilling and IAuth as a pytest suite.

As SQLAlchemy's dialect compliance suite does for dialects, it lets any provider prove it keeps sbt's
contract (DESIGN.md sections 2, 4 and 12), two ways:

- against an installed provider by type name: ``pytest --sbt-conformance metering=memory`` (also
  ``billing=``, ``auth=``; several at once), built with default settings;
- from a plugin's own tests, with the author's settings (a key, a local server)::

      from sbt_core.testing.conformance import ConformanceTarget, TestMeteringConformance  # noqa: F401

      @pytest.fixture
      def sbt_conformance_metering() -> ConformanceTarget:
          return ConformanceTarget("metering", "memory", MemoryMetering, {"horizon_past_days": 35})

Each test checks one promise (its docstring, quoted when it fails) through the provider's hooks and, for
default routes and events, through a control plane (HTTP, bus). Optional hooks the provider lacks skip,
naming the hook. A provider declares the documented differences it has once, as a class attribute
``conformance_differences = {"billing.unsigned_webhooks": "why"}`` (names: :data:`DIFFERENCES`); the
checks they cover skip with that reason, and the terminal summary lists them with passed/skipped per hook.
"""

from ._kit import DIFFERENCES, ConformanceTarget, declared_differences
from .auth import TestAuthConformance
from .billing import TestBillingConformance
from .metering import TestMeteringConformance
from .oracle import UsageOracle, window_label

__all__ = ["DIFFERENCES", "ConformanceTarget", "TestAuthConformance", "TestBillingConformance",
           "TestMeteringConformance", "UsageOracle", "declared_differences", "window_label"]
