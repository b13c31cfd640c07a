"""IBilling hookspecs: customers, users, usage ingestion and push, webhooks.

Mirrors sbt-aws ``src/control-plane/billing/billing-interface.ts`` and ``billing-provider.ts``
(docs/design.md section 2). Event hooks receive the whole envelope, as upstream handlers do;
return values are informational (upstream ignores them) but are recorded in the event log.
"""

from __future__ import annotations

from ..models import (
    APPLICATION_PLANE_SOURCE,
    CONTROL_PLANE_SOURCE,
    Customer,
    DetailType,
    Event,
    PutUsageResult,
    ScheduleRun,
    WebhookRequest,
    WebhookResponse,
)
from ..triggers import Authorizer, EventTrigger, RouteTrigger, parse_schedule
from ._contract import contract
from .route_shape import RouteShape


@contract("billing", "IBilling.createCustomerFunction", required=True,
          trigger=EventTrigger(DetailType.ONBOARDING_REQUEST, CONTROL_PLANE_SOURCE))
def billing_create_customer(event: Event) -> Customer | None:
    """Create the billing customer of a newly onboarded tenant.

    Mirrors IBilling.createCustomerFunction. Default trigger: event ``onboardingRequest``, whose detail
    is the merged tenant and registration data plus ``tenantId`` (e.g. ``{tenantId, tenantName, email,
    prices: [{id, metricName}]}``). Delivery is at least once, so the hook must be idempotent: a
    redelivered event (same ``event.id``) must not create a second customer.

    :param event: the ``onboardingRequest`` envelope.
    :return: the :class:`Customer`, or None.
    :raises BadRequestError: the detail lacks what the provider needs (e.g. ``tenantId``); not retried.
    :raises ProviderError: the billing backend failed; the bus retries.
    """


@contract("billing", "IBilling.deleteCustomerFunction", required=True,
          trigger=EventTrigger(DetailType.OFFBOARDING_REQUEST, CONTROL_PLANE_SOURCE))
def billing_delete_customer(event: Event) -> None:
    """Remove (or close) the billing customer of an offboarded tenant; a missing customer is not an error.

    Mirrors IBilling.deleteCustomerFunction. Default trigger: event ``offboardingRequest`` (detail: the
    tenant row with ``tenantId``).

    :raises ProviderError: the billing backend failed; the bus retries.
    """


@contract("billing", "IBilling.createUserFunction", required=False,
          trigger=EventTrigger(DetailType.TENANT_USER_CREATED, CONTROL_PLANE_SOURCE))
def billing_create_user(event: Event) -> None:
    """Record a new user of a tenant with the billing provider.

    Mirrors IBilling.createUserFunction (optional). Default trigger: event ``tenantUserCreated``
    (detail: ``{tenantId, userId | userName, ...}``, as Moesif reads it).
    """


@contract("billing", "IBilling.deleteUserFunction", required=False,
          trigger=EventTrigger(DetailType.TENANT_USER_DELETED, CONTROL_PLANE_SOURCE))
def billing_delete_user(event: Event) -> None:
    """Forget a deleted user of a tenant.

    Mirrors IBilling.deleteUserFunction (optional). Default trigger: event ``tenantUserDeleted``.
    """


@contract("billing", "IBilling.ingestor", required=False,
          trigger=EventTrigger(DetailType.INGEST_USAGE, APPLICATION_PLANE_SOURCE))
def billing_ingest(event: Event) -> None:
    """Accept one raw usage record and add it to the provider's aggregates (per tenant and metric).

    Mirrors IBilling.ingestor (IDataIngestorAggregator). Default trigger: event ``ingestUsage``.
    sbt-aws's aggregator sums ``metric.value`` per ``tenantId`` and ``metric.name``
    (``{tenantId, metric: {name, unit, value}, timestamp}``); the canonical usage event is accepted too.
    Must be idempotent per ``event.id``.

    :raises BadRequestError: the record lacks a tenant, metric or numeric value; not retried.
    """


@contract("billing", "IBilling.putUsageFunction", required=False, trigger=parse_schedule("rate(24 hours)"))
def billing_put_usage(run: ScheduleRun) -> PutUsageResult | None:
    """Push the aggregated usage to the billing provider.

    Mirrors IBilling.putUsageFunction (IFunctionSchedule). Default trigger: schedule ``rate(24 hours)``;
    ``sbt schedule run billing_put_usage`` fires it now. A repeated or retried run must never bill twice.

    :param run: when the run was due and which expression fired it.
    :return: :class:`PutUsageResult` counts, or None.
    :raises ProviderError: the push failed; what was not pushed stays for the next run.
    """


@contract("billing", "IBilling.webhookFunction", required=False,
          trigger=RouteTrigger(method="POST", path="/billing/{path}", authorizer=Authorizer.NONE),
          route=RouteShape(raw="request", answer="webhook"))
def billing_webhook(request: WebhookRequest) -> WebhookResponse | None:
    """Handle a webhook call from the billing provider; no JWT, the provider verifies the signature.

    Mirrors IBilling.webhookFunction (IFunctionPath). Default trigger: ``POST /billing/{path}``
    (e.g. ``/billing/stripe``), no authorizer. The provider emits control-plane events through its context
    (``billingSuccess``, ``billingFailure``, …).

    :param request: raw body bytes, lower-cased headers, query and the ``{path}`` segment.
    :return: :class:`WebhookResponse` (None = 200 ``{"received": true}``).
    :raises BadRequestError: a bad or missing signature (400; nothing is emitted).
    """
