"""Records of IBilling: the customer a tenant becomes, webhook requests and answers, usage pushes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from ..errors import BadRequestError
from ._convert import parse_timestamp
from .common import utcnow
from .events import Event
from .metering import UsageEvent


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


@attrs.frozen
class BillingUsage:
    """One usage record as a billing provider's ``billing_ingest`` reads it: who used how much of what, when.

    The counterpart for billing of :meth:`UsageEvent.from_event` (which serves metering): the same
    ``ingestUsage`` detail arrives in either form, so every billing provider parses it here.

    - ``tenant_id``: whose usage; ``metric``: the metric / event name (Stripe's meter ``event_name``);
    - ``value``: the quantity, an int or a float (a negative value is a correction); ``unit``: sbt-aws's
      ``metric.unit`` when given (``Count``, ``Seconds`` …), else None;
    - ``timestamp``: aware UTC, when the usage happened; ``identifier``: the dedup key of the record
      (its ``identifier``, else the envelope id), so a redelivered event is counted once.
    """

    tenant_id: str
    metric: str
    value: int | float
    timestamp: datetime
    identifier: str
    unit: str | None = None

    @classmethod
    def from_event(cls, event: Event, *, value_key: str = "value",
                   default_value: int | float | None = None) -> BillingUsage:
        """The usage an ``ingestUsage`` envelope carries, in either form:

        - sbt-aws's ``{tenantId, metric: {name, unit?, value}, timestamp?, identifier?}`` (what its
          application plane puts and its Firehose aggregator sums per ``tenantId`` and ``metric.name``);
        - the canonical usage event ``{tenantId, eventName, identifier?, timestamp?, properties}`` (and the
          other forms :meth:`UsageEvent.from_detail` reads), the quantity being ``properties[value_key]``,
          or ``default_value`` when that key is absent (e.g. 1 to count events).

        A numeric string counts as its number (``"5"``, as sbt-aws's aggregator does ``int(value)``);
        ``timestamp`` defaults to the envelope's time.

        :raises BadRequestError: no tenant, no metric name, or a value that is missing or not a finite number.
        """
        detail = event.detail
        metric = detail.get("metric")
        if not isinstance(metric, dict):
            usage = UsageEvent.from_event(event)
            if value_key in usage.properties:
                value = _quantity(usage.properties[value_key], f"properties.{value_key}")
            elif default_value is not None:
                value = default_value
            else:
                raise BadRequestError(f"properties.{value_key} is required (the usage quantity)")
            return cls(usage.tenant_id, usage.event_name, value, usage.timestamp, usage.identifier)
        tenant_id, name, unit = detail.get("tenantId"), metric.get("name"), metric.get("unit")
        if not isinstance(tenant_id, str) or not tenant_id.strip():
            raise BadRequestError("tenantId is required (a non-empty string)")
        if not isinstance(name, str) or not name.strip():
            raise BadRequestError("metric.name is required (a non-empty string)")
        if "value" not in metric:
            raise BadRequestError("metric.value is required (the usage quantity)")
        try:
            ts = parse_timestamp(detail["timestamp"]) if detail.get("timestamp") is not None else event.time
        except ValueError as exc:
            raise BadRequestError(f"timestamp: {exc}") from None
        identifier = detail.get("identifier")
        return cls(tenant_id, name, _quantity(metric["value"], "metric.value"), ts,
                   identifier if isinstance(identifier, str) and identifier else event.id,
                   unit if isinstance(unit, str) and unit else None)


def _quantity(value: Any, where: str) -> int | float:
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise BadRequestError(f"{where} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequestError(f"{where} must be a number, got {value!r}")
    return value
