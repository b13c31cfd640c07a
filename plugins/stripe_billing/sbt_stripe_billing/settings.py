"""Settings of the ``stripe`` billing provider: the ``[providers.billing]`` table of ``sbt.toml``.

Example::

    [providers.billing]
    type = "stripe"
    api_key = { env = "STRIPE_API_KEY" }
    webhook_secret = { env = "STRIPE_WEBHOOK_SECRET" }
    meter_event_names = { productsSold = "products_sold" }

    [[bindings]]                      # the push schedule belongs to the binding, not to these settings
    hook = "billing_put_usage"
    schedule = "rate(1 hour)"
"""

from __future__ import annotations

from typing import Any

import attrs

from sbt_core.models import Secret

__all__ = ["COLLECTION_METHODS", "ITEM_KINDS", "LOOKUPS", "PAYMENT_BEHAVIORS", "StripeBillingSettings"]

#: What the onboarding detail's ids name: Stripe Prices (current API) or legacy Plans (localstripe has no Prices).
ITEM_KINDS = ("price", "plan")
#: How a tenant's customer is found when the local map does not know it: Customer Search
#: (``metadata['tenantId']:'…'``, eventually consistent) or listing every customer and filtering
#: (works on localstripe, which has no search; O(customers)).
LOOKUPS = ("search", "list")
#: Stripe's ``payment_behavior`` and ``collection_method`` of a new subscription.
PAYMENT_BEHAVIORS = ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete")
COLLECTION_METHODS = ("charge_automatically", "send_invoice")


def _str_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("expected a table of strings, e.g. { productsSold = \"products_sold\" }")
    return dict(value)


@attrs.frozen
class StripeBillingSettings:
    """Validated ``[providers.billing]`` settings (``type = "stripe"``).

    - ``api_key``: Stripe secret key (``sk_…``/``rk_…``); a secret reference, never printed.
    - ``webhook_secret``: the endpoint's signing secret (``whsec_…``). Without it every webhook call is
      refused with 400, since nothing could be verified.
    - ``api_base``: base URL of a Stripe-compatible server (``http://127.0.0.1:8420`` for localstripe);
      None = ``https://api.stripe.com``.
    - ``prices_key``: the onboarding-detail key holding the tenant's ids: sbt-aws's
      ``prices: [{id, metricName}]``, or plain id strings, or one id string.
    - ``item_kind``: ``price`` (subscription items ``{price: id}``) or ``plan`` (``{plan: id}``, legacy).
    - ``meter_event_names``: our metric / usage event name -> Stripe meter ``event_name``; a metric not
      listed is sent under its own name.
    - ``customer_id_key``: the meter's ``customer_mapping.event_payload_key`` (Stripe's default
      ``stripe_customer_id``).
    - ``value_key``: the meter's ``value_settings.event_payload_key`` (Stripe's default ``value``).
    - ``delete_customer_on_offboarding``: delete the Stripe customer (true) or keep it, marked
      ``metadata.sbtOffboarded``, for invoices and history (false).
    - ``invoice_now_on_cancel``: cancel subscriptions with ``invoice_now`` so un-invoiced metered usage
      is billed on a final invoice.
    - ``payment_behavior``, ``collection_method``, ``days_until_due``: passed to subscription creation
      when set (Stripe's defaults otherwise). A licensed price above 0 needs a payment method up front
      unless ``payment_behavior = "default_incomplete"`` or ``collection_method = "send_invoice"`` (with
      ``days_until_due``); metered prices bill 0 up front and need neither.
    - ``customer_lookup``: ``search`` or ``list`` (see :data:`LOOKUPS`).
    - ``timestamp_horizon_days``: Stripe accepts meter events up to 35 days in the past; older
      aggregates are reported, never sent.
    - ``max_retries``, ``retry_base_seconds``, ``retry_max_seconds``: retries of a throttled (429) or
      unreachable call, with exponential backoff and jitter from ``retry_base_seconds`` up to
      ``retry_max_seconds``.
    - ``webhook_path``: the ``{path}`` of ``POST /billing/{path}`` this provider answers (``stripe``).
    - ``webhook_tolerance_seconds``: maximum age of a signed webhook (Stripe's default 300 s).
    - ``stripe_version``: pin an API version; None = the SDK's pinned version.
    - ``timeout_seconds``: HTTP timeout of one Stripe call.
    - ``database_url``: where the provider keeps its state (customers, processed ids, usage sums and
      batches): a SQLAlchemy URL, PostgreSQL (``postgresql+psycopg://…``) for several processes, usually a
      secret reference; None = SQLite in the provider's folder of the state directory (one process).
    - ``push_lease_seconds``: how long a process holds a batch it is sending before another may send it
      (re-sent under the same identifier, so never billed twice); longer than one send with its retries.
    - ``overdue_hours``: a batch still waiting after this long (no customer for the tenant, Stripe
      refusing it) is reported once as a ``billingFailure`` event and the run fails, so it is dead-lettered
      for an operator to see and replay.
    """

    api_key: Secret
    webhook_secret: Secret | None = None
    api_base: str | None = None
    prices_key: str = "prices"
    item_kind: str = attrs.field(default="price", validator=attrs.validators.in_(ITEM_KINDS))
    meter_event_names: dict[str, str] = attrs.field(factory=dict, converter=_str_map)
    customer_id_key: str = "stripe_customer_id"
    value_key: str = "value"
    delete_customer_on_offboarding: bool = True
    invoice_now_on_cancel: bool = True
    payment_behavior: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.in_(PAYMENT_BEHAVIORS)))
    collection_method: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.in_(COLLECTION_METHODS)))
    days_until_due: int | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.ge(0)))
    customer_lookup: str = attrs.field(default="search", validator=attrs.validators.in_(LOOKUPS))
    timestamp_horizon_days: int = attrs.field(default=35, validator=[attrs.validators.ge(1),
                                                                     attrs.validators.le(35)])
    max_retries: int = attrs.field(default=4, validator=attrs.validators.ge(0))
    retry_base_seconds: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    retry_max_seconds: float = attrs.field(default=20.0, validator=attrs.validators.ge(0))
    webhook_path: str = "stripe"
    webhook_tolerance_seconds: int = attrs.field(default=300, validator=attrs.validators.ge(1))
    stripe_version: str | None = None
    timeout_seconds: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    database_url: Secret | None = None
    push_lease_seconds: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    overdue_hours: float = attrs.field(default=24.0, validator=attrs.validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if self.collection_method == "send_invoice" and self.days_until_due is None:
            raise ValueError("collection_method = \"send_invoice\" needs days_until_due")

    def subscription_params(self) -> dict[str, Any]:
        """The optional subscription-creation parameters that are set."""
        names = ("payment_behavior", "collection_method", "days_until_due")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def meter_event_name(self, metric: str) -> str:
        """The Stripe meter ``event_name`` for our metric name."""
        return self.meter_event_names.get(metric, metric)
