"""IMetering hookspecs: meters, usage ingestion and queries, cancellation, customers.

Mirrors sbt-aws ``src/control-plane/metering/metering-interface.ts``;
payload shapes are docs/design.md section 4's (SBT defines none).
"""

from __future__ import annotations

from .. import input_policy
from ..metering import MAX_WINDOWS
from ..models import (
    APPLICATION_PLANE_SOURCE,
    CONTROL_PLANE_SOURCE,
    MAX_PAGE_LIMIT,
    CancelResult,
    CancelUsageRequest,
    DetailType,
    Event,
    Meter,
    MeterCreate,
    MeterUpdate,
    Page,
    UsageEvent,
    UsageQuery,
    UsageRow,
    WindowSize,
)
from ..models.metering import GROUP_BY_QUERY_PATTERN, time_zones
from ..models.scopes import METER_READ, METER_WRITE, USAGE_READ, USAGE_WRITE
from ..triggers import EventTrigger, RouteTrigger
from ._contract import batch_of, contract, usage_event_kwargs
from .route_shape import QueryParam, RouteShape, page_query

#: The query of ``GET /usage/{meterId}`` as OpenAPI lists it: the :class:`UsageQuery` the route structures.
USAGE_QUERY = (
    QueryParam("from", "string", "start of the range, inclusive (RFC 3339), before to", bounds={"format": "date-time"},
               required=True),
    QueryParam("to", "string", "end of the range, exclusive (RFC 3339)", bounds={"format": "date-time"},
               required=True),
    QueryParam("windowSize", "string", f"absent: one row per group; at most {MAX_WINDOWS} windows in the range",
               bounds={"enum": [w.value for w in WindowSize]}),
    QueryParam("windowTimeZone", "string", "IANA time zone of the windows (default UTC)", bounds={"enum": time_zones}),
    QueryParam("tenantId", "string", "only this tenant's usage",
               bounds={"minLength": 1, "pattern": input_policy.NAME_PATTERN}),
    QueryParam("groupBy", "string", "meter dimensions to group by (repeat or comma-separate)", True,
               bounds={"pattern": GROUP_BY_QUERY_PATTERN}),
    *page_query(default=100))


@contract("metering", "IMetering.createMeterFunction", required=True,
          trigger=RouteTrigger(method="POST", path="/meters", scope=METER_WRITE),
          route=RouteShape(body="meter", status=201))
def metering_create_meter(meter: MeterCreate) -> Meter:
    """Create a meter.

    Mirrors IMetering.createMeterFunction. Default trigger: ``POST /meters`` (scope ``meter/meter_write``),
    answering 201 ``{"data": Meter}``.

    :param meter: ``{name, eventName, aggregation, valueProperty?, groupBy?, description?}``.
    :return: the new :class:`Meter` with its ``meterId``.
    :raises ConflictError: another meter uses ``eventName`` (Stripe: one meter per event name).
    """


@contract("metering", "IMetering.fetchMeterFunction", required=True,
          trigger=RouteTrigger(method="GET", path="/meters/{meterId}", scope=METER_READ), route=RouteShape())
def metering_fetch_meter(meter_id: str) -> Meter:
    """One meter.

    Mirrors IMetering.fetchMeterFunction. Default trigger: ``GET /meters/{meterId}`` (scope ``meter/meter_read``).

    :raises NotFoundError: no such meter.
    """


@contract("metering", "IMetering.fetchAllMetersFunction", required=True,
          trigger=RouteTrigger(method="GET", path="/meters", scope=METER_READ),
          route=RouteShape(page=MAX_PAGE_LIMIT, answer="page"))
def metering_fetch_all_meters(limit: int, next_token: str | None) -> Page[Meter]:
    """One page of meters, oldest first.

    Mirrors IMetering.fetchAllMetersFunction ("should support pagination"). Default trigger:
    ``GET /meters?limit=&next_token=`` (scope ``meter/meter_read``).

    :raises BadRequestError: a malformed ``next_token``.
    """


@contract("metering", "IMetering.updateMeterFunction", required=False,
          trigger=RouteTrigger(method="PUT", path="/meters/{meterId}", scope=METER_WRITE),
          route=RouteShape(body="update"))
def metering_update_meter(meter_id: str, update: MeterUpdate) -> Meter:
    """Change a meter's name, description or status (``inactive`` refuses new events, as Stripe's deactivate).

    Mirrors IMetering.updateMeterFunction (optional). Default trigger: ``PUT /meters/{meterId}``
    (scope ``meter/meter_write``). Fields that would rewrite history are refused by :class:`MeterUpdate`.

    :raises NotFoundError: no such meter.
    """


@contract("metering", "IMetering.deleteMeterFunction", required=False,
          trigger=RouteTrigger(method="DELETE", path="/meters/{meterId}", scope=METER_WRITE), route=RouteShape())
def metering_delete_meter(meter_id: str) -> Meter | None:
    """Delete a meter and its usage.

    Mirrors IMetering.deleteMeterFunction (optional). Default trigger: ``DELETE /meters/{meterId}``
    (scope ``meter/meter_write``).

    :return: the deleted :class:`Meter`, or None.
    :raises NotFoundError: no such meter.
    """


@contract("metering", "IMetering.ingestUsageEventFunction", required=True,
          trigger=EventTrigger(DetailType.INGEST_USAGE, APPLICATION_PLANE_SOURCE), event_kwargs=usage_event_kwargs)
def metering_ingest_usage_event(usage_event: UsageEvent) -> None:
    """Record one usage event; a repeated ``identifier`` within the dedup window is ignored.

    Mirrors IMetering.ingestUsageEventFunction. Default trigger: event ``ingestUsage``; the bus parses
    the detail with :meth:`UsageEvent.from_event` (identifier defaults to the envelope id, timestamp to
    the envelope's time: when it was put, whenever it is delivered).

    :raises BadRequestError: unknown event name or tenant (per the provider's policy), inactive meter,
        a value that is missing, not numeric, NaN or infinite, or a timestamp outside the horizon.
    """


@batch_of("metering_ingest_usage_event", "usage_events")
def metering_ingest_usage_events(usage_events: list[UsageEvent]) -> list[str | None]:
    """Record many usage events in one call: the batch form of ``metering_ingest_usage_event``.

    Mirrors IMetering.ingestUsageEventFunction for a burst of events. Not bound on its own: when the
    selected provider implements it, the bus delivers the ``ingestUsage`` events queued for
    ``metering_ingest_usage_event`` through it, many at a time, with the same per-event outcome in the
    event log (bulk loads call it too).

    :param usage_events: the events, in delivery order.
    :return: one entry per event, in order: None when it was recorded (or ignored as a duplicate or by
        policy), else the message of why it was refused (as ``BadRequestError`` would say; the bus
        dead-letters that event without retrying it).
    :raises ProviderError: the whole batch failed; the bus then delivers each event on its own, with the
        usual retries (providers must dedup by ``identifier``, so nothing already recorded counts twice).
    """


@contract("metering", "IMetering.fetchUsageFunction", required=True,
          trigger=RouteTrigger(method="GET", path="/usage/{meterId}", scope=USAGE_READ),
          route=RouteShape(query="query", query_params=USAGE_QUERY, answer="page"))
def metering_fetch_usage(meter_id: str, query: UsageQuery) -> Page[UsageRow]:
    """Aggregated usage of a meter over ``[from, to)``, windowed and grouped.

    Mirrors IMetering.fetchUsageFunction. Default trigger: ``GET /usage/{meterId}?from=&to=&windowSize=
    &windowTimeZone=&tenantId=&groupBy=&limit=&next_token=`` (scope ``usage/usage_read``).

    :return: :class:`Page` of :class:`UsageRow` ordered by tenant, window start, then groups;
        values are the meter's aggregation over events not cancelled.
    :raises NotFoundError: no such meter.
    :raises BadRequestError: a groupBy name the meter does not declare, a bad range or token.
    """


@contract("metering", "IMetering.cancelUsageEventsFunction", required=False,
          trigger=RouteTrigger(method="DELETE", path="/usage", scope=USAGE_WRITE),
          route=RouteShape(body="request"))
def metering_cancel_usage_events(request: CancelUsageRequest) -> CancelResult:
    """Exclude events from usage: by identifiers, or by meter + (tenant) + event-time range.

    Mirrors IMetering.cancelUsageEventsFunction (optional). Default trigger: ``DELETE /usage``
    (scope ``usage/usage_write``), answering ``{"data": {"cancelled": N}}``. Cancelling twice cancels once.

    :raises NotFoundError: the meter of a range cancel does not exist.
    """


@contract("metering", "IMetering.createCustomerFunction", required=False,
          trigger=EventTrigger(DetailType.ONBOARDING_REQUEST, CONTROL_PLANE_SOURCE))
def metering_create_customer(event: Event) -> None:
    """Register a tenant as a metering customer.

    Mirrors IMetering.createCustomerFunction (optional). Default trigger: event ``onboardingRequest``
    (detail holds ``tenantId``). Idempotent.

    :raises BadRequestError: the detail has no ``tenantId``.
    """


@contract("metering", "IMetering.deleteCustomerFunction", required=False,
          trigger=EventTrigger(DetailType.OFFBOARDING_REQUEST, CONTROL_PLANE_SOURCE))
def metering_delete_customer(event: Event) -> None:
    """Mark a tenant as no longer a metering customer; its usage stays queryable for billing.

    Mirrors IMetering.deleteCustomerFunction (optional). Default trigger: event ``offboardingRequest``.
    """
