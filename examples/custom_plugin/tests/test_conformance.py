"""csv-ledger against sbt's conformance suite: one import and one fixture (see its README for what it skips)."""

import pytest
from sbt_csv_ledger import CsvLedgerBilling

from sbt_core.testing.conformance import ConformanceTarget, TestBillingConformance  # noqa: F401 - the suite


@pytest.fixture
def sbt_conformance_billing() -> ConformanceTarget:
    return ConformanceTarget("billing", "csv-ledger", CsvLedgerBilling, {"unit_prices": {"conformance_calls": "0.5"}})
