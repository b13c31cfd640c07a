"""The events the registry emits (onboarding, offboarding) and the ones it listens to (job results).

sbt-aws (``src/core-app-plane/script-job.ts``,
``src/control-plane/tenant-registration/tenant-registration.service.ts``):

- ``onboardingRequest`` detail = ``tenantRegistrationData | tenantData | {tenantId, tenantRegistrationId}``.
- ``offboardingRequest`` detail = the tenant item ``|`` the registration item.
- The application plane answers with ``provisionSuccess`` / ``deprovisionSuccess``
  (``{tenantRegistrationId, jobOutput: {tenantData, tenantRegistrationData}}``, merged into the rows)
  or ``provisionFailure`` / ``deprovisionFailure`` (``{tenantRegistrationId, jobOutput: {tenantStatus}}``).
  Upstream PATCHes the failure body, which has neither key, so a failure changes nothing; here it sets
  ``registrationStatus`` to ``failed``.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..errors import BadRequestError
from ..models import APPLICATION_PLANE_SOURCE, DetailType, Event, output_detail_type
from ..triggers import EventTrigger
from ._records import REGISTRATION_ID_KEY, TENANT_ID_KEY, RegistrationStatus, Tenant, TenantRegistration

__all__ = ["JOB_RESULT_STATUS", "JobResult", "job_result_triggers", "offboarding_event", "onboarding_event",
           "parse_job_result"]

#: Application-plane job results and the ``registrationStatus`` each one sets.
JOB_RESULT_STATUS: dict[str, str] = {
    DetailType.PROVISION_SUCCESS.value: RegistrationStatus.CREATED,
    DetailType.DEPROVISION_SUCCESS.value: RegistrationStatus.DELETED,
    DetailType.PROVISION_FAILURE.value: RegistrationStatus.FAILED,
    DetailType.DEPROVISION_FAILURE.value: RegistrationStatus.FAILED,
}


def job_result_triggers() -> list[tuple[str, EventTrigger]]:
    """``(subscriber name, trigger)`` for each job result, from the application-plane source."""
    return [(f"tenants.{name}", EventTrigger(name, APPLICATION_PLANE_SOURCE)) for name in JOB_RESULT_STATUS]


def onboarding_event(reg: TenantRegistration, tenant: Tenant, naming: str = "sbt") -> Event:
    """``onboardingRequest`` for a new registration: registration data, then tenant data, then the ids."""
    detail = dict(reg.data) | dict(tenant.data) | {TENANT_ID_KEY: tenant.tenant_id,
                                                   REGISTRATION_ID_KEY: reg.tenant_registration_id}
    return Event.create(output_detail_type(DetailType.ONBOARDING_REQUEST, naming), detail)


def offboarding_event(reg: TenantRegistration, tenant: Tenant | None, naming: str = "sbt") -> Event:
    """``offboardingRequest`` for a deleted registration: the tenant item merged with the registration item
    (both already marked ``sbtaws_active: false``; upstream sent the registration as it was before)."""
    detail = (tenant.to_json() if tenant is not None else {}) | reg.to_json()
    return Event.create(output_detail_type(DetailType.OFFBOARDING_REQUEST, naming), detail)


@attrs.frozen
class JobResult:
    """A parsed job-result event: which registration, the status it moves to, and the data to merge."""

    tenant_registration_id: str
    status: str
    is_provision: bool
    tenant_data: dict[str, Any] = attrs.field(factory=dict)
    tenant_registration_data: dict[str, Any] = attrs.field(factory=dict)


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequestError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def parse_job_result(event: Event) -> JobResult:
    """Read a provision/deprovision Success/Failure event.

    :raises BadRequestError: not a job result, or the detail lacks ``tenantRegistrationId`` (not retried:
        the bus dead-letters it, where an operator can see it).
    """
    status = JOB_RESULT_STATUS.get(event.name)
    if status is None:
        raise BadRequestError(f"{event.detail_type} is not a provisioning job result")
    registration_id = event.detail.get(REGISTRATION_ID_KEY)
    if not isinstance(registration_id, str) or not registration_id:
        raise BadRequestError(f"{event.name} detail needs tenantRegistrationId")
    output = _object(event.detail.get("jobOutput"), "detail.jobOutput")
    return JobResult(
        tenant_registration_id=registration_id, status=status, is_provision=event.name.startswith("provision"),
        tenant_data=dict(_object(output.get("tenantData"), "detail.jobOutput.tenantData")),
        tenant_registration_data=dict(_object(output.get("tenantRegistrationData"),
                                              "detail.jobOutput.tenantRegistrationData")))
