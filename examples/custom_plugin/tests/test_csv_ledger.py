"""The csv-ledger provider, tested the way a plugin author would: with sbt's shipped pytest helpers
(the ``sbt_control_plane`` and ``sbt_events`` fixtures of the ``pytest11`` plugin ``sbt``)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sbt_csv_ledger import CsvLedgerBilling

from sbt_core.testing import Harness

CONFIG = {"providers": {"billing": {"type": "csv-ledger", "unit_prices": {"api_calls": "0.5"}, "currency": "eur"}}}


def _plane(sbt_control_plane: Callable[..., Harness]) -> Harness:
    return sbt_control_plane(plugins={"csv-ledger": CsvLedgerBilling}, config=CONFIG)


def _ledger(harness: Harness) -> list[dict[str, str]]:
    with harness.provider("billing").ledger_file.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_onboarding_creates_one_customer_even_when_redelivered(sbt_control_plane: Callable[..., Harness],
                                                              sbt_events: ModuleType) -> None:
    harness = _plane(sbt_control_plane)
    onboarding = sbt_events.onboarding_request("t-1", tenant_name="Acme")
    harness.put(onboarding)
    harness.settle()
    harness.provider("billing").billing_create_customer(onboarding)  # a redelivery reaching the hook again
    customers = harness.provider("billing").customers()
    assert list(customers) == ["t-1"] and customers["t-1"].name == "Acme"
    assert harness.events.states(onboarding)["billing_create_customer"] == "delivered"


def test_usage_becomes_invoice_lines_and_billing_success(sbt_control_plane: Callable[..., Harness],
                                                        sbt_events: ModuleType) -> None:
    harness = _plane(sbt_control_plane)
    harness.put(sbt_events.onboarding_request("t-1"))
    usage = [sbt_events.ingest_usage("t-1", "api_calls", 3), sbt_events.ingest_usage("t-1", "api_calls", 4)]
    harness.put(*usage, usage[0])  # the same event id twice is counted once
    harness.settle()
    client = harness.client()
    assert client.post("/schedules/billing_put_usage/run").status_code < 300
    harness.settle()
    assert [(r["tenantId"], r["metric"], r["quantity"], r["amount"], r["currency"]) for r in _ledger(harness)] == [
        ("t-1", "api_calls", "7", "3.5", "eur")]
    (success,) = harness.events.of_type("billingSuccess")
    assert success.detail == {"tenantId": "t-1", "amount": "3.5", "currency": "eur"}


def test_offboarding_bills_what_is_left_and_forgets_the_customer(sbt_control_plane: Callable[..., Harness],
                                                                sbt_events: ModuleType) -> None:
    harness = _plane(sbt_control_plane)
    harness.put(sbt_events.onboarding_request("t-1"), sbt_events.ingest_usage("t-1", "api_calls", 2))
    harness.settle()
    harness.put(sbt_events.offboarding_request("t-1"))
    harness.settle()
    assert harness.provider("billing").customers() == {}
    assert [r["quantity"] for r in _ledger(harness)] == ["2"]


def test_usage_without_a_number_is_dead_lettered_not_retried(sbt_control_plane: Callable[..., Harness],
                                                             sbt_events: ModuleType) -> None:
    harness = _plane(sbt_control_plane)
    bad = sbt_events.ingest_usage("t-1", "api_calls", None, properties={"value": {"not": "a number"}})
    harness.put(bad)
    harness.settle()
    delivery: Any = harness.events.deliveries(bad)["billing_ingest"]
    assert (delivery.state, delivery.attempts) == ("dead_lettered", 1)
    assert "value must be a number" in delivery.last_error
