"""``billing_put_usage``: aggregated usage -> Stripe meter events (``POST /v1/billing/meter_events``).

Each push first *seals* the open sums into batches (see :mod:`._store`), then sends every pending batch
as one meter event::

    event_name=<meter event name>&payload[stripe_customer_id]=cus_…&payload[value]=42
    &identifier=sbt_<sha256(tenant, metric, day, start, value)>&timestamp=<epoch s>

Why it never bills twice: a batch keeps its identifier (also sent as the ``Idempotency-Key``) until Stripe
accepts it, and Stripe drops a second event with the same identifier (uniqueness "within a rolling period of
at least 24 hours"), so a push retried after a lost response, a crash or a 5xx re-sends the same identifier;
new usage arriving meanwhile goes into a *new* batch with a new identifier. A batch older than Stripe's
35-day timestamp horizon is marked ``expired`` and reported, never sent (Stripe would reject it
asynchronously with ``timestamp_too_far_in_past``); usage of an offboarded tenant is marked ``orphaned`` and
reported once.

Throttling (429, ``RateLimitError``) and connection errors are retried with exponential backoff and
jitter (tenacity); other errors (4xx, 5xx) leave the batch pending for the next run. Sends are
sequential: Stripe allows one concurrent meter-event call per customer per meter.

Several processes on one store (``database_url``): each batch is sealed by one of them (see
``Store.seal``) and sent by the one holding its lease (``Store.claim``, ``push_lease_seconds``); a process
that dies mid-send leaves the lease to expire and the next run re-sends under the same identifier.

Nothing waiting is reported as done: a batch left pending (no customer yet, Stripe refused or could not be
reached) is counted in ``remaining`` and named in ``errors``; once it has waited ``overdue_hours`` it is
reported once as ``overdue`` (the provider publishes ``billingFailure`` for it and fails the run, so the
run is retried and then dead-lettered, where an operator sees it and replays it once the cause is fixed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import attrs
import stripe
import tenacity

from sbt_core.models import PutUsageResult

from ._store import DAY, Batch, Store
from .settings import StripeBillingSettings

__all__ = ["PushReport", "describe_stripe_error", "is_retryable", "push_usage"]

log = logging.getLogger("sbt.provider.stripe.push")

#: Margin kept inside the horizon: an event sealed at the edge could cross it while in flight.
_HORIZON_MARGIN_SECONDS = 600


@attrs.frozen
class PushReport:
    """What a push did: the hook's :class:`PutUsageResult`, how many batches Stripe refused or could not be
    reached for (``failed``; they stay pending, and the hook fails so the bus retries soon), and the
    pending batches that have now waited longer than ``overdue_hours`` and were not reported before
    (``overdue``, each reported by one run of one process)."""

    result: PutUsageResult
    failed: int = 0
    overdue: tuple[Batch, ...] = ()


def is_retryable(exc: BaseException) -> bool:
    """Throttled (429) or the request may not have arrived: retrying with the same identifier is safe."""
    return isinstance(exc, (stripe.RateLimitError, stripe.APIConnectionError)) or (
        isinstance(exc, stripe.StripeError) and exc.http_status == 429)


def describe_stripe_error(exc: BaseException) -> str:
    """A one-line, secret-free description of a Stripe SDK error (never the raw message, which may echo
    a masked key)."""
    if isinstance(exc, stripe.StripeError):
        parts = [type(exc).__name__]
        if exc.http_status:
            parts.append(f"HTTP {exc.http_status}")
        if exc.code:
            parts.append(str(exc.code))
        return " ".join(parts)
    return type(exc).__name__


def _retrying(settings: StripeBillingSettings) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retryable),
        wait=tenacity.wait_exponential_jitter(multiplier=settings.retry_base_seconds, max=settings.retry_max_seconds,
                                              jitter=settings.retry_base_seconds),
        stop=tenacity.stop_after_attempt(settings.max_retries + 1),
        reraise=True,
    )


def push_usage(client: stripe.StripeClient, store: Store, settings: StripeBillingSettings,
               customer_of: Callable[[str], str | None], *, now: datetime,
               tenants: Iterable[str] | None = None) -> PushReport:
    """Seal and send usage (all tenants, or only ``tenants``); see the module docstring.

    :param customer_of: tenant id -> live Stripe customer id, or None (not onboarded / deleted).
    :param now: the current time (aware); fixes the horizon and caps event timestamps.
    :return: ``result.pushed`` = meter events Stripe accepted in this run, ``result.remaining`` = batches
        still pending (for the next run), ``result.errors`` = one line per batch not sent (failed, expired,
        orphaned, no customer); ``failed`` = batches whose send failed.
    """
    now_s = int(now.astimezone(UTC).timestamp())
    cutoff = now_s - settings.timestamp_horizon_days * DAY + _HORIZON_MARGIN_SECONDS
    selected = None if tenants is None else sorted(set(tenants))
    for tid in selected if selected is not None else [None]:
        store.seal(now_s, tid)
    pending: list[Batch] = []
    for tid in selected if selected is not None else [None]:
        pending += store.batches("pending", tid)

    pushed, failed, in_flight, errors = 0, 0, 0, []
    retrying = _retrying(settings)
    for batch in pending:
        label = f"tenant {batch.tenant_id} metric {batch.metric} day {_day(batch.bucket)} ({batch.identifier})"
        if not store.claim(batch.identifier, settings.push_lease_seconds):
            in_flight += 1  # sent meanwhile, or another process is sending it now
            continue
        if batch.timestamp < cutoff:
            store.set_batch_status(batch.identifier, "expired", "older than the meter-event horizon")
            errors.append(f"{label}: value {batch.value} is older than Stripe's {settings.timestamp_horizon_days}-day "
                          "meter-event horizon; not sent")
            continue
        if store.is_offboarded(batch.tenant_id):
            # Its subscriptions are cancelled (and the customer maybe deleted): nothing would bill it.
            store.set_batch_status(batch.identifier, "orphaned", "the tenant was offboarded")
            errors.append(f"{label}: the tenant was offboarded; value {batch.value} not sent")
            continue
        customer_id = customer_of(batch.tenant_id)
        if customer_id is None:
            store.set_batch_status(batch.identifier, "pending", "no Stripe customer for the tenant")
            errors.append(f"{label}: no Stripe customer for the tenant yet; kept for the next run")
            continue
        params = {
            "event_name": settings.meter_event_name(batch.metric),
            "payload": {settings.customer_id_key: customer_id, settings.value_key: str(batch.value)},
            "identifier": batch.identifier,
            "timestamp": batch.timestamp,
        }
        try:
            # The SDK's own retries are off here so that the policy above is the only one. The identifier
            # doubles as the Idempotency-Key, as Stripe's usage guide advises: for 24 h a re-send gets the
            # first answer replayed.
            retrying(client.v1.billing.meter_events.create, params=params,
                     options={"max_network_retries": 0, "idempotency_key": batch.identifier})
        except stripe.StripeError as exc:
            reason = describe_stripe_error(exc)
            store.set_batch_status(batch.identifier, "pending", reason)
            errors.append(f"{label}: {reason}; kept for the next run")
            failed += 1
            log.warning("meter event %s not accepted: %s", batch.identifier, reason)
            continue
        store.set_batch_status(batch.identifier, "sent")
        pushed += 1

    still = [b for tid in (selected if selected is not None else [None]) for b in store.batches("pending", tid)]
    if in_flight and still:
        errors.append(f"{in_flight} batch(es) were being sent by another process; counted as remaining until sent")
    limit = time.time() - settings.overdue_hours * 3600
    overdue = tuple(b for b in still if b.sealed_at < limit and store.mark("overdue", b.identifier))
    store.prune_batches(cutoff - cutoff % DAY - DAY, time.time() - settings.timestamp_horizon_days * DAY)
    store.forget_processed("ingest", now_s - settings.timestamp_horizon_days * DAY - DAY)
    return PushReport(PutUsageResult(pushed=pushed, remaining=len(still), errors=errors), failed, overdue)


def _day(bucket: int) -> str:
    return datetime.fromtimestamp(bucket, tz=UTC).strftime("%Y-%m-%d")
