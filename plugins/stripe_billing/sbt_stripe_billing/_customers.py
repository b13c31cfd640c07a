"""Stripe customers and subscriptions of tenants (``billing_create_customer``/``billing_delete_customer``).

Mirrors Moesif's Stripe flow in sbt-aws partners (customer with the tenant in its metadata, then a
subscription to the tenant's prices; offboarding cancels every subscription) on the current Stripe API.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import stripe

from sbt_core.errors import BadRequestError

from ._store import Store
from .settings import StripeBillingSettings

__all__ = ["TENANT_KEY", "CustomerBook", "item_ids"]

log = logging.getLogger("sbt.provider.stripe.customers")

#: The customer (and subscription) metadata key holding the tenant id, as the issue and Moesif use it.
TENANT_KEY = "tenantId"


def item_ids(detail: dict[str, Any], key: str) -> list[str]:
    """The price/plan ids named by the onboarding detail under ``key``: sbt-aws's ``[{id, metricName}]``,
    a list of id strings, or one id string; order kept, duplicates dropped.

    :raises BadRequestError: the value has another shape.
    """
    value = detail.get(key)
    if value is None or value == []:
        return []
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list):
        raise BadRequestError(f"{key} must be a list of {{id, metricName}} or of ids")
    ids: list[str] = []
    for i, entry in enumerate(entries):
        ident = entry.get("id") if isinstance(entry, dict) else entry
        if not isinstance(ident, str) or not ident:
            raise BadRequestError(f"{key}[{i}] must be an id string or an object with an id")
        if ident not in ids:
            ids.append(ident)
    return ids


class CustomerBook:
    """Finds, creates and closes the Stripe customer of each tenant, with the local map as the first
    lookup and Stripe (search or list by ``metadata.tenantId``) as the fallback."""

    def __init__(self, client: stripe.StripeClient, store: Store, settings: StripeBillingSettings) -> None:
        self._client = client
        self._store = store
        self._settings = settings
        # One find-or-create at a time per tenant: concurrent deliveries of one onboardingRequest in this
        # process would each miss the customer and create one (localstripe ignores idempotency keys, and
        # Stripe answers a key in use by a concurrent request with an error rather than the customer).
        self._tenant_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    # --- lookups ----------------------------------------------------------------------------------------

    def find(self, tenant_id: str) -> str | None:
        """The live customer id of ``tenant_id``: the local map (checked against Stripe), else a Stripe
        lookup by ``metadata.tenantId`` (recorded in the map when found); None when there is none."""
        known = self._store.customer_of(tenant_id)
        if known is not None:
            if self._exists(known):
                return known
            log.info("customer %s of tenant %s is gone from Stripe; looking it up again", known, tenant_id)
        found = self._lookup(tenant_id)
        if found is not None:
            self._store.set_customer(tenant_id, found)
        return found

    def known(self, tenant_id: str) -> str | None:
        """The local map only (no Stripe call): what the usage push uses per batch."""
        return self._store.customer_of(tenant_id)

    def tenant_of(self, customer_id: str) -> str | None:
        """The tenant of a customer: the local map, else the customer's ``metadata.tenantId``."""
        tenant = self._store.tenant_of(customer_id)
        if tenant is not None:
            return tenant
        try:
            customer = self._client.v1.customers.retrieve(customer_id)
        except stripe.InvalidRequestError:
            return None
        if getattr(customer, "deleted", False):
            return None
        return (customer.metadata.to_dict() if customer.metadata else {}).get(TENANT_KEY)

    def _exists(self, customer_id: str) -> bool:
        try:
            customer = self._client.v1.customers.retrieve(customer_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:  # localstripe answers 404 for a deleted customer
                return False
            raise
        return not getattr(customer, "deleted", False)

    def _lookup(self, tenant_id: str) -> str | None:
        if self._settings.customer_lookup == "search":
            # Search is eventually consistent (about a minute); the local map and the idempotency key
            # cover a redelivery inside that minute.
            escaped = tenant_id.replace("\\", "\\\\").replace("'", "\\'")
            result = self._client.v1.customers.search(params={"query": f"metadata['{TENANT_KEY}']:'{escaped}'",
                                                              "limit": 10})
            matches = [c.id for c in result.data]
        else:
            matches = [c.id for c in self._all_customers()
                       if (c.metadata.to_dict() if c.metadata else {}).get(TENANT_KEY) == tenant_id]
        if len(matches) > 1:
            log.warning("tenant %s has %d Stripe customers; using the oldest", tenant_id, len(matches))
        return matches[-1] if matches else None  # Stripe lists newest first

    def _all_customers(self) -> Iterator[Any]:
        page = self._client.v1.customers.list(params={"limit": 100})
        yield from page.auto_paging_iter()

    # --- create -----------------------------------------------------------------------------------------

    def ensure_customer(self, tenant_id: str, detail: dict[str, Any], event_id: str) -> tuple[str, bool]:
        """The tenant's customer, created when it has none; returns ``(customer_id, created)``.

        The idempotency key ``sbt-onboarding-<event id>-customer`` makes Stripe answer a retried create
        with the first customer; the lookup before creating covers what the key cannot (keys expire after
        24 h; localstripe ignores them).
        """
        with self._locks_guard:
            lock = self._tenant_locks[tenant_id]
        with lock:
            return self._ensure_customer(tenant_id, detail, event_id)

    def _ensure_customer(self, tenant_id: str, detail: dict[str, Any], event_id: str) -> tuple[str, bool]:
        self._store.set_offboarded(tenant_id, False)
        existing = self.find(tenant_id)
        if existing is not None:
            return existing, False
        params: dict[str, Any] = {"metadata": {TENANT_KEY: tenant_id}}
        if isinstance(detail.get("tenantRegistrationId"), str):
            params["metadata"]["tenantRegistrationId"] = detail["tenantRegistrationId"]
        if isinstance(detail.get("email"), str) and detail["email"]:
            params["email"] = detail["email"]
        name = detail.get("tenantName") or detail.get("name")
        if isinstance(name, str) and name:
            params["name"] = name
        customer = self._client.v1.customers.create(params=params,  # type: ignore[arg-type]
                                                    options={"idempotency_key": f"sbt-onboarding-{event_id}-customer"})
        self._store.set_customer(tenant_id, customer.id)
        return customer.id, True

    def ensure_subscription(self, tenant_id: str, customer_id: str, ids: list[str], event_id: str) -> str | None:
        """A live subscription of the customer to exactly ``ids`` (prices or plans per ``item_kind``):
        an existing one is reused, else one is created (idempotency key from the event). None if no ids."""
        if not ids:
            return None
        kind = self._settings.item_kind
        for sub in self._live_subscriptions(customer_id):
            have = sorted(_item_id(item, kind) for item in sub["items"].data)
            if have == sorted(ids):
                return str(sub.id)
        sub = self._client.v1.subscriptions.create(
            # The item's key is "price" or "plan" (settings), which the SDK's TypedDict cannot see.
            params={"customer": customer_id, "items": [{kind: i} for i in ids],  # type: ignore[arg-type]
                    "metadata": {TENANT_KEY: tenant_id}, **self._settings.subscription_params()},
            options={"idempotency_key": f"sbt-onboarding-{event_id}-subscription"})
        return str(sub.id)

    def _live_subscriptions(self, customer_id: str) -> list[Any]:
        # The default list leaves out canceled subscriptions, which is what "live" means here.
        page = self._client.v1.subscriptions.list(params={"customer": customer_id, "limit": 100})
        return [s for s in page.auto_paging_iter() if s.status not in ("canceled", "incomplete_expired")]

    def has_other_live_subscription(self, customer_id: str, subscription_id: str) -> bool:
        """Whether the customer still has a live subscription besides ``subscription_id`` (a deleted
        customer has none)."""
        try:
            live = self._live_subscriptions(customer_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return False
            raise
        return any(str(s.id) != subscription_id for s in live)

    # --- close ------------------------------------------------------------------------------------------

    def close(self, tenant_id: str) -> tuple[str | None, list[str]]:
        """Cancel every live subscription of the tenant's customer, then delete the customer or mark it
        offboarded, per ``delete_customer_on_offboarding``. Returns ``(customer_id, cancelled ids)``;
        ``(None, [])`` when the tenant has no customer (not an error)."""
        customer_id = self.find(tenant_id)
        self._store.set_offboarded(tenant_id, True)
        if customer_id is None:
            return None, []
        cancelled = []
        for sub in self._live_subscriptions(customer_id):
            # Remember first: Stripe's customer.subscription.deleted webhook may arrive before cancel returns.
            self._store.mark("cancelled_subscription", str(sub.id))
            params = {"invoice_now": True} if self._settings.invoice_now_on_cancel else {}
            self._client.v1.subscriptions.cancel(sub.id, params=params)  # type: ignore[arg-type]
            cancelled.append(str(sub.id))
        if self._settings.delete_customer_on_offboarding:
            try:
                self._client.v1.customers.delete(customer_id)
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 404:
                    raise
            self._store.set_customer(tenant_id, customer_id, deleted=True)
        else:
            self._client.v1.customers.update(customer_id, params={"metadata": {"sbtOffboarded": "true"}})
        return customer_id, cancelled

    def set_user_count(self, customer_id: str, count: int) -> None:
        """Write ``metadata.sbtUserCount`` on the customer."""
        self._client.v1.customers.update(customer_id, params={"metadata": {"sbtUserCount": str(count)}})


def _item_id(item: Any, kind: str) -> str:
    # SDK 16 objects are not mappings: read the expanded price/plan through its plain dict form.
    ref = item.to_dict().get(kind)
    if ref is None:
        return ""
    return ref if isinstance(ref, str) else str(ref.get("id"))
