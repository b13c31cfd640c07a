"""The ``stripe`` billing provider: IBilling on Stripe (customers, subscriptions, meter events, webhooks).

Hooks (docs/design.md section 2; ``sbt_core/hookspecs/billing.py``):

- ``billing_create_customer`` (``onboardingRequest``): customer + subscription, idempotent.
- ``billing_delete_customer`` (``offboardingRequest``): final usage push, cancel, delete or keep.
- ``billing_create_user`` / ``billing_delete_user`` (``tenantUserCreated``/``tenantUserDeleted``): the
  tenant's user set, kept locally; its size written to the customer's ``metadata.sbtUserCount``.
- ``billing_ingest`` (``ingestUsage``): sums per tenant, metric and UTC day, idempotent per event.
- ``billing_put_usage`` (schedule): meter events with deterministic identifiers.
- ``billing_webhook`` (``POST /billing/stripe``): signed Stripe events -> billingSuccess /
  billingFailure / deactivateRequest.

Stripe errors become :class:`ProviderError` (502, retried by the bus) with a secret-free message.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import stripe
import typer

from sbt_core import Provider, ProviderContext, hookimpl
from sbt_core._sql import database_url
from sbt_core.errors import BadRequestError, ProviderError, SbtError
from sbt_core.models import (
    BillingUsage,
    Customer,
    DetailType,
    Event,
    PutUsageResult,
    ScheduleRun,
    WebhookRequest,
    WebhookResponse,
)

from ._customers import TENANT_KEY, CustomerBook, item_ids
from ._push import PushReport, describe_stripe_error, push_usage
from ._store import STORE_FILE, Batch, Store
from ._webhooks import Emission, handle_webhook
from .client import make_client
from .settings import StripeBillingSettings

__all__ = ["StripeBilling"]

log = logging.getLogger("sbt.provider.stripe")

P = ParamSpec("P")
R = TypeVar("R")

#: Namespace of the UUIDv5 ids of the ``billingFailure`` events published for overdue usage batches.
_OVERDUE_NAMESPACE = uuid.UUID("5b7a0d1e-3f43-5b1c-9c0a-6f2e8d4b1a70")

#: Keys naming a user in ``tenantUserCreated``/``tenantUserDeleted`` details (as Moesif reads them).
_USER_KEYS = ("userId", "user_id", "userName", "user_name")


def _stripe_errors(hook: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn Stripe SDK errors into ProviderError (502, retryable) without echoing Stripe's message."""
    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except SbtError:
                raise
            except stripe.StripeError as exc:
                raise ProviderError(f"stripe: {hook} failed: {describe_stripe_error(exc)}") from exc
        return inner
    return wrap


class StripeBilling(Provider):
    """IBilling provider ``stripe``. Constructed as ``StripeBilling(settings, context)``.

    State lives in ``database_url`` (PostgreSQL, shared by every process) or ``context.data_dir /
    "billing.sqlite3"`` (see :mod:`._store`).
    ``clock`` (a callable returning an aware datetime) is the time used for the usage push; tests may
    replace it.
    """

    settings_class = StripeBillingSettings

    def __init__(self, settings: StripeBillingSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.settings: StripeBillingSettings = settings
        self.client = make_client(settings)
        self.store = Store(database_url(settings.database_url, context.data_dir / STORE_FILE))
        self.customers = CustomerBook(self.client, self.store, settings)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # One push at a time: the scheduled run and an offboarding's final push must not send the same
        # batch concurrently (Stripe also allows one concurrent call per customer per meter).
        self._push_lock = threading.Lock()
        if settings.webhook_secret is None:
            log.warning("[providers.billing] has no webhook_secret: POST /billing/%s will refuse every call",
                        settings.webhook_path)

    @staticmethod
    @hookimpl
    def sbt_register_commands(cli: typer.Typer) -> None:
        """Add ``sbt stripe meters`` and ``sbt stripe usage`` (see :mod:`sbt_stripe_billing.cli`)."""
        from .cli import register

        register(cli)

    @hookimpl
    def sbt_shutdown(self) -> None:
        """Close the SQLite store (after the bus has drained)."""
        self.store.close()

    # --- customers --------------------------------------------------------------------------------------

    @hookimpl
    @_stripe_errors("billing_create_customer")
    def billing_create_customer(self, event: Event) -> Customer:
        """Create (or find) the tenant's Stripe customer and subscribe it to the detail's prices/plans.

        Detail: ``{tenantId, email?, tenantName? | name?, tenantRegistrationId?, <prices_key>?}``.
        Customer: ``email``, ``name``, ``metadata.tenantId`` (+ ``tenantRegistrationId``). A redelivered
        event finds the customer (local map, Stripe lookup, idempotency key) and creates nothing.

        :raises BadRequestError: no ``tenantId``, or a malformed price list.
        :raises ProviderError: Stripe failed.
        """
        detail = event.detail
        tenant_id = _tenant_id(detail)
        ids = item_ids(detail, self.settings.prices_key)
        customer_id, created = self.customers.ensure_customer(tenant_id, detail, event.id)
        subscription_id = self.customers.ensure_subscription(tenant_id, customer_id, ids, event.id)
        if created and self.store.user_count(tenant_id):  # users recorded before the customer existed
            self.customers.set_user_count(customer_id, self.store.user_count(tenant_id))
        log.info("tenant %s: customer %s %s%s", tenant_id, customer_id, "created" if created else "already existed",
                 f", subscription {subscription_id}" if subscription_id else "")
        metadata = {TENANT_KEY: tenant_id}
        if subscription_id:
            metadata["subscriptionId"] = subscription_id
        name = detail.get("tenantName") or detail.get("name")
        return Customer(tenant_id=tenant_id, customer_id=customer_id,
                        email=detail.get("email") if isinstance(detail.get("email"), str) else None,
                        name=name if isinstance(name, str) else None, metadata=metadata)

    @hookimpl
    @_stripe_errors("billing_delete_customer")
    def billing_delete_customer(self, event: Event) -> None:
        """Push the tenant's remaining usage, cancel its subscriptions (``invoice_now`` per settings), then
        delete the customer or mark it ``metadata.sbtOffboarded`` (``delete_customer_on_offboarding``).
        A tenant without a customer is fine.

        :raises BadRequestError: no ``tenantId``.
        :raises ProviderError: the final push or Stripe failed; nothing is cancelled before the usage is
            pushed, so the bus's retry starts over safely.
        """
        tenant_id = _tenant_id(event.detail)
        if self.customers.find(tenant_id) is not None:
            result = self._push(tenants=[tenant_id]).result
            if result.remaining:
                raise ProviderError(f"stripe: final usage push of tenant {tenant_id} left {result.remaining} "
                                    f"batch(es) unsent: {'; '.join(result.errors)}")
        customer_id, cancelled = self.customers.close(tenant_id)
        if customer_id is None:
            log.info("tenant %s has no Stripe customer; nothing to close", tenant_id)
            return
        log.info("tenant %s: cancelled %d subscription(s) of %s; customer %s", tenant_id, len(cancelled), customer_id,
                 "deleted" if self.settings.delete_customer_on_offboarding else "kept")

    # --- users ------------------------------------------------------------------------------------------

    @hookimpl
    @_stripe_errors("billing_create_user")
    def billing_create_user(self, event: Event) -> None:
        """Add the user (``userId``/``user_id``/``userName``/``user_name``) to the tenant's user set and
        write its size to the customer's ``metadata.sbtUserCount`` (no-op for a tenant without customer).

        :raises BadRequestError: no ``tenantId`` or no user id.
        """
        tenant_id, user_id = _tenant_id(event.detail), _user_id(event.detail)
        self.store.add_user(tenant_id, user_id)
        self._write_user_count(tenant_id)

    @hookimpl
    @_stripe_errors("billing_delete_user")
    def billing_delete_user(self, event: Event) -> None:
        """Remove the user from the tenant's user set and update ``metadata.sbtUserCount``.

        :raises BadRequestError: no ``tenantId`` or no user id.
        """
        tenant_id, user_id = _tenant_id(event.detail), _user_id(event.detail)
        self.store.remove_user(tenant_id, user_id)
        self._write_user_count(tenant_id)

    def _write_user_count(self, tenant_id: str) -> None:
        customer_id = self.customers.find(tenant_id)
        if customer_id is not None:
            self.customers.set_user_count(customer_id, self.store.user_count(tenant_id))

    # --- usage ------------------------------------------------------------------------------------------

    @hookimpl
    def billing_ingest(self, event: Event) -> None:
        """Add one usage record to the tenant's running sum for its metric (UTC day of its timestamp).

        Shapes: sbt-aws's ``{tenantId, metric: {name, unit?, value}, timestamp?}`` (sums ``metric.value``
        per ``tenantId`` and ``metric.name``, as its Firehose aggregator does), the canonical usage event
        ``{tenantId, eventName, identifier?, timestamp?, properties: {value}}`` and Amberflo's flat form.
        ``value`` must be a whole number (Stripe meters take whole numbers; negative = correction).
        ``timestamp`` defaults to the envelope's time. Idempotent per usage ``identifier`` (default: the
        envelope id).

        :raises BadRequestError: no tenant, metric or whole-number value.
        """
        tenant_id, metric, value, ts, key = _usage(event, self.settings.value_key)
        added = self.store.add_usage(key, tenant_id, metric, value, int(ts.timestamp()))
        if not added:
            log.debug("usage event %s already ingested", key)

    @hookimpl
    def billing_put_usage(self, run: ScheduleRun) -> PutUsageResult:
        """Seal the sums since the last push and send them as meter events (see :mod:`._push`).

        :return: ``pushed`` events accepted, ``remaining`` batches kept for the next run, ``errors``
            (batches expired, orphaned, or waiting for their tenant's customer).
        :raises ProviderError: Stripe refused or could not be reached for some batch; those stay pending
            and the bus retries the run soon, so a re-send stays inside Stripe's identifier dedup period
            (at least 24 h). What was accepted is not sent again.
        """
        report = self._push(tenants=None)
        result = report.result
        if result.remaining:
            log.warning("billing_put_usage (%s): pushed %d, %d batch(es) still waiting, failed %d: %s",
                        run.expression, result.pushed, result.remaining, report.failed, "; ".join(result.errors[:3]))
        else:
            log.info("billing_put_usage (%s): pushed %d", run.expression, result.pushed)
        for batch in report.overdue:
            self._report_overdue(batch)
        if report.failed or report.overdue:
            what = [f"{report.failed} batch(es) failed"] if report.failed else []
            what += [f"{len(report.overdue)} batch(es) waiting over {self.settings.overdue_hours:g} h "
                     "(billingFailure published)"] if report.overdue else []
            raise ProviderError(f"stripe: usage push: {' and '.join(what)} and are kept for the next run "
                                f"({result.pushed} pushed): {'; '.join(result.errors[:5])}")
        return result

    def _report_overdue(self, batch: Batch) -> None:
        """``billingFailure`` for usage that could not reach Stripe in time (once per batch: the store marked
        it ``overdue`` for this run only). Its id is derived from the batch, so a re-publish is one event."""
        detail = {"tenantId": batch.tenant_id, "reason": "usageNotPushed", "metric": batch.metric,
                  "value": batch.value, "day": datetime.fromtimestamp(batch.bucket, UTC).date().isoformat(),
                  "identifier": batch.identifier, "attempts": batch.attempts, "lastError": batch.last_error}
        self.context.publish(DetailType.BILLING_FAILURE.value, detail,
                             event_id=str(uuid.uuid5(_OVERDUE_NAMESPACE, batch.identifier)))

    def _push(self, tenants: list[str] | None) -> PushReport:
        with self._push_lock:
            return push_usage(self.client, self.store, self.settings, self.customers.known, now=self.clock(),
                              tenants=tenants)

    # --- webhooks ---------------------------------------------------------------------------------------

    @hookimpl
    @_stripe_errors("billing_webhook")
    def billing_webhook(self, request: WebhookRequest) -> WebhookResponse:
        """Verify ``Stripe-Signature`` and publish the mapped event once (see :mod:`._webhooks`).

        :raises BadRequestError: bad or missing signature (400); nothing is published.
        :raises NotFoundError: the path is not ``webhook_path``.
        """
        def publish(emission: Emission) -> None:
            self.context.publish(emission.detail_type, emission.detail, event_id=emission.event_id)

        return handle_webhook(request, self.settings, self.store, self.customers.tenant_of,
                              self.customers.has_other_live_subscription, publish)


# --- detail parsing ---------------------------------------------------------------------------------------

def _tenant_id(detail: dict[str, Any]) -> str:
    tenant_id = detail.get("tenantId")
    if not isinstance(tenant_id, str) or not tenant_id.strip():
        raise BadRequestError("event detail needs a tenantId (string)")
    return tenant_id


def _user_id(detail: dict[str, Any]) -> str:
    for key in _USER_KEYS:
        if isinstance(detail.get(key), str) and detail[key]:
            return str(detail[key])
    raise BadRequestError(f"event detail needs a user id ({', '.join(_USER_KEYS)})")


def _whole(value: int | float, where: str) -> int:
    if value != int(value):
        raise BadRequestError(f"{where} must be a whole number (Stripe meters take whole numbers), got {value!r}")
    return int(value)


def _usage(event: Event, value_key: str) -> tuple[str, str, int, datetime, str]:
    """``(tenant_id, metric, value, timestamp, dedup key)`` of an ``ingestUsage`` envelope, in either form
    :meth:`BillingUsage.from_event` reads, the value a whole number."""
    usage = BillingUsage.from_event(event, value_key=value_key)
    where = "metric.value" if isinstance(event.detail.get("metric"), dict) else f"properties.{value_key}"
    return usage.tenant_id, usage.metric, _whole(usage.value, where), usage.timestamp, usage.identifier
