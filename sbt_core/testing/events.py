"""Builders of SBT events for tests: EventBridge envelopes with SBT's detail types, sources and detail
shapes (sbt-aws ``src/utils/event-manager.ts``, ``src/core-app-plane/script-job.ts``). Each takes
``event_id`` (to test dedup) and ``naming`` (``"sbt_aws"`` builds the ``sbt_aws_``-prefixed detail type of
sbt-aws >= 0.9); extra keyword arguments are merged into the detail.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import attrs

from ..models import DetailType, Event, format_timestamp, output_detail_type

__all__ = [
    "deprovision_failure", "deprovision_success", "ingest_usage", "offboarding_request", "onboarding_request",
    "provision_failure", "provision_success", "sbt_event", "tenant_user_created", "tenant_user_deleted",
]


def sbt_event(detail_type: str, detail: dict[str, Any] | None = None, *, source: str | None = None,
              event_id: str | None = None, naming: str = "sbt", time: datetime | None = None) -> Event:
    """Any event: the standard source for a standard ``detail_type`` unless ``source`` is given."""
    event = Event.create(output_detail_type(detail_type, naming), detail or {}, source=source)
    changes: dict[str, Any] = {}
    if event_id is not None:
        changes["id"] = event_id
    if time is not None:
        changes["time"] = time
    return attrs.evolve(event, **changes) if changes else event


def onboarding_request(tenant_id: str | None = None, *, tenant_name: str = "acme", email: str = "admin@acme.test",
                       tenant_registration_id: str | None = None, prices: list[dict[str, str]] | None = None,
                       event_id: str | None = None, naming: str = "sbt", **detail: Any) -> Event:
    """``onboardingRequest`` (control plane): ``{tenantId, tenantRegistrationId, tenantName, email,
    prices?, ...}`` as the tenant registry emits it; ids default to fresh uuids."""
    body: dict[str, Any] = {"tenantId": tenant_id or str(uuid.uuid4()),
                            "tenantRegistrationId": tenant_registration_id or str(uuid.uuid4()),
                            "tenantName": tenant_name, "email": email}
    if prices is not None:
        body["prices"] = prices
    return sbt_event(DetailType.ONBOARDING_REQUEST, body | detail, event_id=event_id, naming=naming)


def offboarding_request(tenant_id: str, *, tenant_registration_id: str | None = None, event_id: str | None = None,
                        naming: str = "sbt", **detail: Any) -> Event:
    """``offboardingRequest`` (control plane): the tenant row, ``{tenantId, tenantRegistrationId,
    sbtaws_active: false, ...}``."""
    body = {"tenantId": tenant_id, "tenantRegistrationId": tenant_registration_id or str(uuid.uuid4()),
            "sbtaws_active": False}
    return sbt_event(DetailType.OFFBOARDING_REQUEST, body | detail, event_id=event_id, naming=naming)


def ingest_usage(tenant_id: str, event_name: str, value: float | None = 1, *, properties: dict[str, Any] | None = None,
                 identifier: str | None = None, timestamp: datetime | None = None, event_id: str | None = None,
                 naming: str = "sbt") -> Event:
    """``ingestUsage`` (application plane), canonical usage-event detail: ``{tenantId, eventName,
    properties: {value, ...dimensions}, identifier?, timestamp?}`` (``value`` None leaves it out, for
    COUNT meters)."""
    props = dict(properties or {})
    if value is not None:
        props.setdefault("value", value)
    body: dict[str, Any] = {"tenantId": tenant_id, "eventName": event_name, "properties": props}
    if identifier is not None:
        body["identifier"] = identifier
    if timestamp is not None:
        body["timestamp"] = format_timestamp(timestamp)
    return sbt_event(DetailType.INGEST_USAGE, body, event_id=event_id, naming=naming)


def tenant_user_created(tenant_id: str, user_id: str = "user-1", *, event_id: str | None = None, naming: str = "sbt",
                        **detail: Any) -> Event:
    """``tenantUserCreated`` (control-plane source, as sbt-aws defines it): ``{tenantId, userId, ...}``."""
    return sbt_event(DetailType.TENANT_USER_CREATED, {"tenantId": tenant_id, "userId": user_id} | detail,
                     event_id=event_id, naming=naming)


def tenant_user_deleted(tenant_id: str, user_id: str = "user-1", *, event_id: str | None = None, naming: str = "sbt",
                        **detail: Any) -> Event:
    """``tenantUserDeleted`` (control-plane source): ``{tenantId, userId, ...}``."""
    return sbt_event(DetailType.TENANT_USER_DELETED, {"tenantId": tenant_id, "userId": user_id} | detail,
                     event_id=event_id, naming=naming)


def _job(detail_type: str, tenant_registration_id: str, job_output: dict[str, Any], event_id: str | None,
         naming: str) -> Event:
    return sbt_event(detail_type, {"tenantRegistrationId": tenant_registration_id, "jobOutput": job_output},
                     event_id=event_id, naming=naming)


def provision_success(tenant_registration_id: str, *, tenant_data: dict[str, Any] | None = None,
                      tenant_registration_data: dict[str, Any] | None = None, event_id: str | None = None,
                      naming: str = "sbt") -> Event:
    """``provisionSuccess`` (application plane): ``{tenantRegistrationId, jobOutput: {tenantData,
    tenantRegistrationData}}``."""
    return _job(DetailType.PROVISION_SUCCESS, tenant_registration_id,
                {"tenantData": tenant_data or {}, "tenantRegistrationData": tenant_registration_data or {}},
                event_id, naming)


def provision_failure(tenant_registration_id: str, *, event_id: str | None = None, naming: str = "sbt") -> Event:
    """``provisionFailure``: ``{tenantRegistrationId, jobOutput: {tenantStatus: "Failed to provision tenant."}}``."""
    return _job(DetailType.PROVISION_FAILURE, tenant_registration_id, {"tenantStatus": "Failed to provision tenant."},
                event_id, naming)


def deprovision_success(tenant_registration_id: str, *, tenant_data: dict[str, Any] | None = None,
                        tenant_registration_data: dict[str, Any] | None = None, event_id: str | None = None,
                        naming: str = "sbt") -> Event:
    """``deprovisionSuccess`` (application plane), shaped as :func:`provision_success`."""
    return _job(DetailType.DEPROVISION_SUCCESS, tenant_registration_id,
                {"tenantData": tenant_data or {}, "tenantRegistrationData": tenant_registration_data or {}},
                event_id, naming)


def deprovision_failure(tenant_registration_id: str, *, event_id: str | None = None, naming: str = "sbt") -> Event:
    """``deprovisionFailure``:
    ``{tenantRegistrationId, jobOutput: {tenantStatus: "Failed to deprovision tenant."}}``."""
    return _job(DetailType.DEPROVISION_FAILURE, tenant_registration_id,
                {"tenantStatus": "Failed to deprovision tenant."}, event_id, naming)
