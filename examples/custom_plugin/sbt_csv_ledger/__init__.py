"""An example IBilling provider: customers and invoice lines in CSV files.

It keeps one customer per tenant in ``customers.csv`` and, each time ``billing_put_usage`` runs, turns the
usage aggregated since the last run into invoice lines (``quantity x unit_price``) appended to
``ledger.csv``. Small on purpose: it shows settings, the hooks, events published back to the control
plane, and idempotency under at-least-once delivery. See ``docs/writing-a-provider.md``.
"""

from __future__ import annotations

import csv
import threading
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import attrs

from sbt_core import BadRequestError, Provider, ProviderContext, hookimpl
from sbt_core.models import BillingUsage, Customer, DetailType, Event, PutUsageResult, ScheduleRun

__all__ = ["CsvLedgerBilling", "CsvLedgerSettings"]


def _decimal(value: str | float | int) -> Decimal:
    return Decimal(str(value))


@attrs.frozen
class CsvLedgerSettings:
    """``[providers.billing]`` table of ``type = "csv-ledger"``.

    ``directory``: where the CSV files live (default: the provider's folder in the state directory).
    ``unit_prices``: price per unit of each metric, e.g. ``{ api_calls = "0.002" }``; unknown metrics cost 0.
    ``currency``: ISO code written on every line.
    """

    directory: Path | None = None
    unit_prices: dict[str, str] = attrs.field(factory=dict)
    currency: str = "usd"


class CsvLedgerBilling(Provider):
    """IBilling provider ``csv-ledger``: createCustomer, deleteCustomer, ingestor and putUsage."""

    settings_class = CsvLedgerSettings
    #: What sbt's conformance suite should not expect of it (names: sbt_core.testing.conformance.DIFFERENCES).
    conformance_differences = {
        "billing.single_process": "usage waiting to be pushed is kept in this process's memory and its ledger "
                                  "in one folder: two processes of a deployment would each push their own part",
    }

    def __init__(self, settings: CsvLedgerSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.directory = settings.directory or context.data_dir
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Usage since the last push, per (tenant, metric); kept in memory: a restart loses unpushed usage,
        # which is fine for an example and said in its docs.
        self._usage: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        self._seen_usage: set[str] = set()

    @property
    def customers_file(self) -> Path:
        return self.directory / "customers.csv"

    @property
    def ledger_file(self) -> Path:
        return self.directory / "ledger.csv"

    def customers(self) -> dict[str, Customer]:
        """Customers by tenant id, as stored."""
        if not self.customers_file.exists():
            return {}
        with self.customers_file.open(newline="") as fh:
            return {row["tenantId"]: Customer(tenant_id=row["tenantId"], customer_id=row["customerId"],
                                              email=row["email"] or None, name=row["name"] or None)
                    for row in csv.DictReader(fh) if row["active"] == "true"}

    def _write_customers(self, customers: dict[str, Customer]) -> None:
        with self.customers_file.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["tenantId", "customerId", "email", "name", "active"])
            writer.writeheader()
            for c in customers.values():
                writer.writerow({"tenantId": c.tenant_id, "customerId": c.customer_id, "email": c.email or "",
                                 "name": c.name or "", "active": "true"})

    @hookimpl
    def billing_create_customer(self, event: Event) -> Customer:
        """IBilling.createCustomerFunction: one customer per tenant; a redelivered event changes nothing."""
        tenant_id = event.detail.get("tenantId")
        if not isinstance(tenant_id, str) or not tenant_id:
            raise BadRequestError("onboardingRequest detail has no tenantId")
        with self._lock:
            customers = self.customers()
            if tenant_id not in customers:
                customers[tenant_id] = Customer(tenant_id=tenant_id, customer_id=f"csv-{tenant_id}",
                                                email=event.detail.get("email"),
                                                name=event.detail.get("tenantName"))
                self._write_customers(customers)
            return customers[tenant_id]

    @hookimpl
    def billing_delete_customer(self, event: Event) -> None:
        """IBilling.deleteCustomerFunction: bill what is left, then forget the customer (missing: no error)."""
        tenant_id = event.detail.get("tenantId")
        self._push(only_tenant=tenant_id)
        with self._lock:
            customers = self.customers()
            if customers.pop(str(tenant_id), None) is not None:
                self._write_customers(customers)

    @hookimpl
    def billing_ingest(self, event: Event) -> None:
        """IBilling.ingestor: add one usage event to the tenant's running total of that metric (sbt-aws's
        ``{tenantId, metric: {name, value}}`` or the canonical ``{tenantId, eventName, properties: {value}}``;
        an event without a value counts 1)."""
        usage = BillingUsage.from_event(event, default_value=1)
        with self._lock:
            if usage.identifier in self._seen_usage:
                return  # at-least-once delivery: the same event twice is counted once
            self._seen_usage.add(usage.identifier)
            self._usage[(usage.tenant_id, usage.metric)] += _decimal(usage.value)

    @hookimpl
    def billing_put_usage(self, run: ScheduleRun) -> PutUsageResult:
        """IBilling.putUsageFunction: write an invoice line per tenant and metric, then emit billingSuccess."""
        return self._push(when=run.scheduled_time.isoformat())

    def _push(self, *, only_tenant: str | None = None, when: str | None = None) -> PutUsageResult:
        with self._lock:
            due = {k: v for k, v in self._usage.items() if only_tenant is None or k[0] == only_tenant}
            if not due:
                return PutUsageResult()
            new_file = not self.ledger_file.exists()
            totals: dict[str, Decimal] = defaultdict(Decimal)
            with self.ledger_file.open("a", newline="") as fh:
                writer = csv.writer(fh)
                if new_file:
                    writer.writerow(["time", "tenantId", "metric", "quantity", "unitPrice", "amount", "currency"])
                for (tenant, metric), quantity in sorted(due.items()):
                    price = _decimal(self.settings.unit_prices.get(metric, "0"))
                    writer.writerow([when or "", tenant, metric, quantity, price, quantity * price,
                                     self.settings.currency])
                    totals[tenant] += quantity * price
                    del self._usage[(tenant, metric)]
        for tenant, amount in totals.items():
            self.context.publish(DetailType.BILLING_SUCCESS, {"tenantId": tenant, "amount": str(amount),
                                                              "currency": self.settings.currency})
        return PutUsageResult(pushed=len(due))
