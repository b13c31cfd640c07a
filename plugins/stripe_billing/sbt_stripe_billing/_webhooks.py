"""``billing_webhook``: verify a Stripe webhook and turn it into SBT control-plane events.

| Stripe event | SBT event | detail |
|---|---|---|
| ``invoice.paid``, ``invoice.payment_succeeded`` | ``billingSuccess`` | ``{tenantId, invoiceId, customerId, amount, currency, stripeEventId, stripeEventType}`` |
| ``invoice.payment_failed`` | ``billingFailure`` | same; ``attemptCount`` too |
| ``customer.subscription.deleted`` | ``deactivateRequest`` | ``{tenantId, subscriptionId, customerId, reason, stripeEventId}`` |

``amount`` is in the currency's smallest unit, as Stripe gives it (``amount_paid`` for a success,
``amount_due`` for a failure); ``currency`` is Stripe's lower-case ISO code. ``tenantId`` comes from the
customer's ``metadata.tenantId`` (the local map first, then the customer itself).

Stripe sends both ``invoice.paid`` and ``invoice.payment_succeeded`` for a paid invoice (localstripe sends
only the latter), so ``billingSuccess`` is keyed by the *invoice*: one per invoice. A payment can fail
several times, so ``billingFailure`` is keyed by the Stripe event. The published event id is a UUIDv5
of that key, so a redelivered webhook (same Stripe event id) is also dropped by the bus's dedup, and the
store remembers each key so it is published once even beyond the bus's dedup window.

A subscription this provider cancelled itself (offboarding) does not produce ``deactivateRequest``:
the tenant is already leaving; nor does one whose customer still has another live subscription (the
tenant is still billed, e.g. a plan change done as cancel + new subscription).
"""  # noqa: E501 - the table's rows stay one line each

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import stripe

from sbt_core import input_policy
from sbt_core.errors import BadRequestError, NotFoundError
from sbt_core.models import DetailType, WebhookRequest, WebhookResponse

from ._store import Store
from .settings import StripeBillingSettings

__all__ = ["Emission", "WEBHOOK_NAMESPACE", "handle_webhook"]

log = logging.getLogger("sbt.provider.stripe.webhook")

#: Namespace of the UUIDv5 ids of events published for Stripe webhooks.
WEBHOOK_NAMESPACE = uuid.UUID("6f1c3c0e-5b7a-4f43-9a55-2f1f0d6c7b21")

_SUCCESS = ("invoice.paid", "invoice.payment_succeeded")
_FAILURE = ("invoice.payment_failed",)
_DEACTIVATE = ("customer.subscription.deleted",)


@attrs.frozen
class Emission:
    """An event to publish for a webhook: detail type, detail, and the dedup key of its cause."""

    detail_type: str
    detail: dict[str, Any]
    key: str

    @property
    def event_id(self) -> str:
        return str(uuid.uuid5(WEBHOOK_NAMESPACE, self.key))


#: How far in the future a ``Stripe-Signature`` timestamp may be, in seconds: the clocks of Stripe and of
#: this host differ a little. Stripe's SDK checks only the past (``webhook_tolerance_seconds``), so a
#: signature dated later than this is refused: it was not made by Stripe now.
MAX_FUTURE_SKEW_SECONDS = 60


def _signature_time(header: str) -> int:
    """The ``t=`` timestamp of a ``Stripe-Signature`` header (``t=<unix>,v1=<hex>[,...]``).

    :raises BadRequestError: none, several, or one that is not an integer.
    """
    stamps = [part[2:] for part in header.split(",") if part.strip().startswith("t=")]
    if len(stamps) != 1 or not stamps[0].strip().isdigit():
        raise BadRequestError("invalid Stripe-Signature: expected one t=<unix time>")
    return int(stamps[0])


def verify(request: WebhookRequest, settings: StripeBillingSettings, *, now: float | None = None) -> dict[str, Any]:
    """The verified Stripe event as a plain dict.

    :raises BadRequestError: no signing secret configured, no ``Stripe-Signature`` header, a signature
        that does not match the raw body (or is older than the tolerance, or dated more than
        :data:`MAX_FUTURE_SKEW_SECONDS` ahead), or a body that is not a Stripe event (an object with
        string ``id`` and ``type`` and a ``data.object`` object) under sbt's input policy.
    """
    if settings.webhook_secret is None:
        raise BadRequestError("webhook signing secret is not configured ([providers.billing] webhook_secret)")
    signature = request.header("stripe-signature")
    if not signature:
        raise BadRequestError("missing Stripe-Signature header")
    if _signature_time(signature) > (time.time() if now is None else now) + MAX_FUTURE_SKEW_SECONDS:
        raise BadRequestError(f"invalid Stripe-Signature: dated more than {MAX_FUTURE_SKEW_SECONDS} s in the future")
    try:
        # The signature alone (the SDK's construct_event also builds a StripeObject, which fails on
        # bodies that are not objects): the shape is checked below.
        stripe.WebhookSignature.verify_header(request.body, signature,
                                              settings.webhook_secret.get_secret_value(),
                                              tolerance=settings.webhook_tolerance_seconds)
    except (stripe.SignatureVerificationError, ValueError):  # ValueError: a body that is not UTF-8
        raise BadRequestError("invalid Stripe-Signature") from None
    event = input_policy.loads(request.body)
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str) \
            or event.get("object", "event") != "event" or not isinstance(data, dict) \
            or not isinstance(data.get("object"), dict):
        raise BadRequestError("webhook body is not a Stripe event ({id, type, data: {object: {...}}})")
    for key in ("metadata", "cancellation_details"):
        if data["object"].get(key) is not None and not isinstance(data["object"][key], dict):
            raise BadRequestError(f"webhook body is not a Stripe event: data.object.{key} must be an object")
    return event


def map_event(event: dict[str, Any], tenant_of_customer: Callable[[str], str | None],
              cancelled_by_us: Callable[[str], bool],
              other_live_subscription: Callable[[str, str], bool]) -> Emission | str:
    """The emission for a verified Stripe event, or the reason it is ignored."""
    etype, obj = event["type"], (event.get("data") or {}).get("object") or {}
    if etype not in (*_SUCCESS, *_FAILURE, *_DEACTIVATE):
        return f"{etype}: not mapped"
    customer = obj.get("customer")
    customer_id = customer.get("id") if isinstance(customer, dict) else customer if isinstance(customer, str) else None
    # A subscription carries the tenant in its own metadata (set at onboarding); an invoice does not.
    tenant_id = (obj.get("metadata") or {}).get("tenantId") if etype in _DEACTIVATE else None
    tenant_id = tenant_id or (tenant_of_customer(customer_id) if customer_id else None)
    if not tenant_id:
        return f"{etype}: customer {customer_id} is not a tenant's customer"
    common = {"tenantId": tenant_id, "customerId": customer_id, "stripeEventId": event["id"], "stripeEventType": etype}
    if etype in _SUCCESS or etype in _FAILURE:
        success = etype in _SUCCESS
        detail = {**common, "invoiceId": obj.get("id"),
                  "amount": obj.get("amount_paid" if success else "amount_due"),
                  "currency": obj.get("currency")}
        if success:
            return Emission(DetailType.BILLING_SUCCESS.value, detail, f"billingSuccess:{obj.get('id')}")
        detail["attemptCount"] = obj.get("attempt_count")
        return Emission(DetailType.BILLING_FAILURE.value, detail, f"billingFailure:{event['id']}")
    if cancelled_by_us(str(obj.get("id"))):
        return f"{etype}: subscription {obj.get('id')} was cancelled by offboarding"
    if customer_id and other_live_subscription(customer_id, str(obj.get("id"))):
        # e.g. a plan change done as cancel + new subscription: the tenant is still billed.
        return f"{etype}: customer {customer_id} still has a live subscription"
    detail = {**common, "subscriptionId": obj.get("id"), "reason": "stripe subscription deleted",
              "cancellationReason": (obj.get("cancellation_details") or {}).get("reason")}
    return Emission(DetailType.DEACTIVATE_REQUEST.value, detail, f"deactivateRequest:{event['id']}")


def handle_webhook(request: WebhookRequest, settings: StripeBillingSettings, store: Store,
                   tenant_of_customer: Callable[[str], str | None],
                   other_live_subscription: Callable[[str, str], bool],
                   publish: Callable[[Emission], None]) -> WebhookResponse:
    """Verify, map, publish once; see the module docstring.

    :raises NotFoundError: ``{path}`` is not this provider's ``webhook_path``.
    :raises BadRequestError: see :func:`verify`; nothing is published.

    The answer is ``{"received": true}`` plus ``"emitted": <detail type>`` only when this call published
    an event, ``"duplicate": true`` for a redelivered Stripe event, or ``"ignored": <why>``.
    """
    if request.path.strip("/") != settings.webhook_path:
        raise NotFoundError(f"no billing webhook at /billing/{request.path}")
    event = verify(request, settings)
    if store.seen("webhook", event["id"]):
        return WebhookResponse(body={"received": True, "duplicate": True})
    outcome = map_event(event, tenant_of_customer, lambda sub_id: store.seen("cancelled_subscription", sub_id),
                        other_live_subscription)
    if isinstance(outcome, str):
        log.info("stripe webhook %s ignored: %s", event["id"], outcome)
        store.mark("webhook", event["id"])
        return WebhookResponse(body={"received": True, "ignored": outcome})
    if store.seen("emitted", outcome.key):
        # E.g. invoice.paid after invoice.payment_succeeded for the same invoice: published once already.
        store.mark("webhook", event["id"])
        return WebhookResponse(body={"received": True, "ignored": f"{event['type']}: {outcome.detail_type} "
                                                                  f"was already emitted for {outcome.key}"})
    # Publish before marking: if marking fails Stripe redelivers, and the deterministic event id lets
    # the bus drop the second copy.
    publish(outcome)
    store.mark("emitted", outcome.key)
    store.mark("webhook", event["id"])
    return WebhookResponse(body={"received": True, "emitted": outcome.detail_type})
