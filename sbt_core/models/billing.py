"""Records of IBilling: the customer a tenant becomes, webhook requests and answers, usage pushes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from .common import utcnow


@attrs.frozen
class Customer:
    """A billing customer: one per tenant. ``customer_id`` is the provider's id (Stripe ``cus_...``)."""

    tenant_id: str
    customer_id: str
    email: str | None = None
    name: str | None = None
    metadata: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class WebhookRequest:
    """A request to ``POST /billing/{path}``, handed to the provider unparsed so it can check the signature.

    ``body`` is the raw bytes exactly as received; ``headers`` are lower-cased names.
    """

    path: str
    body: bytes
    headers: Mapping[str, str] = attrs.field(factory=dict)
    query: Mapping[str, str] = attrs.field(factory=dict)

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        return self.headers.get(name.lower())


@attrs.frozen
class WebhookResponse:
    """What the webhook route answers: ``status`` (200 unless the provider says otherwise) and a JSON body."""

    status: int = 200
    body: dict[str, Any] = attrs.field(factory=lambda: {"received": True})


@attrs.frozen
class ScheduleRun:
    """Handed to a schedule-triggered hook: when this run was due and the expression that fired it."""

    hook: str
    expression: str
    scheduled_time: datetime = attrs.field(factory=utcnow)
    manual: bool = False


@attrs.frozen
class PutUsageResult:
    """What one ``billing_put_usage`` run pushed: counts of records pushed and left for the next run."""

    pushed: int = 0
    remaining: int = 0
    errors: list[str] = attrs.field(factory=list)
