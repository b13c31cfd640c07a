"""The event envelope (EventBridge's JSON shape) and SBT's event names.

sbt-aws < 0.9 used bare detail types (``onboardingRequest``); 0.9 prefixed them (``sbt_aws_onboardingRequest``).
Input accepts both; :func:`canonical_detail_type` folds them to the bare name used inside sbt.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import attrs

from ._convert import WIRE_KEY, camel
from .common import utcnow

CONTROL_PLANE_SOURCE = "sbt.control.plane"
APPLICATION_PLANE_SOURCE = "sbt.application.plane"
SBT_AWS_PREFIX = "sbt_aws_"


class DetailType(StrEnum):
    """SBT's standard detail types (sbt-aws ``src/utils/event-manager.ts``), bare form."""

    ONBOARDING_REQUEST = "onboardingRequest"
    OFFBOARDING_REQUEST = "offboardingRequest"
    ACTIVATE_REQUEST = "activateRequest"
    DEACTIVATE_REQUEST = "deactivateRequest"
    BILLING_SUCCESS = "billingSuccess"
    BILLING_FAILURE = "billingFailure"
    TENANT_USER_CREATED = "tenantUserCreated"
    TENANT_USER_DELETED = "tenantUserDeleted"
    INGEST_USAGE = "ingestUsage"
    PROVISION_SUCCESS = "provisionSuccess"
    PROVISION_FAILURE = "provisionFailure"
    DEPROVISION_SUCCESS = "deprovisionSuccess"
    DEPROVISION_FAILURE = "deprovisionFailure"
    ONBOARDING_SUCCESS = "onboardingSuccess"
    ONBOARDING_FAILURE = "onboardingFailure"
    OFFBOARDING_SUCCESS = "offboardingSuccess"
    OFFBOARDING_FAILURE = "offboardingFailure"
    ACTIVATE_SUCCESS = "activateSuccess"
    ACTIVATE_FAILURE = "activateFailure"
    DEACTIVATE_SUCCESS = "deactivateSuccess"
    DEACTIVATE_FAILURE = "deactivateFailure"


#: The source each standard event is emitted from (sbt-aws ``src/utils/event-manager.ts``).
DEFAULT_SOURCES: dict[str, str] = {
    **{dt.value: CONTROL_PLANE_SOURCE for dt in DetailType},
    **{
        dt.value: APPLICATION_PLANE_SOURCE
        for dt in DetailType
        if dt.value.endswith(("Success", "Failure")) and not dt.value.startswith("billing")
    },
    DetailType.INGEST_USAGE.value: APPLICATION_PLANE_SOURCE,
}


def canonical_detail_type(detail_type: str) -> str:
    """``sbt_aws_onboardingRequest`` -> ``onboardingRequest``; custom names are returned unchanged."""
    if detail_type.startswith(SBT_AWS_PREFIX):
        bare = detail_type[len(SBT_AWS_PREFIX):]
        if bare in DEFAULT_SOURCES:
            return bare
    return detail_type


def output_detail_type(detail_type: str, naming: str) -> str:
    """The detail type as emitted: ``naming`` is ``"sbt"`` (bare) or ``"sbt_aws"`` (0.9 prefix, standard
    events only)."""
    bare = canonical_detail_type(detail_type)
    if naming == "sbt_aws" and bare in DEFAULT_SOURCES:
        return SBT_AWS_PREFIX + bare
    return bare


def _non_empty(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value or not value.strip():
        raise ValueError(f"{camel(attribute.name)} must not be empty")


@attrs.frozen
class Event:
    """An EventBridge-shaped event: ``{version, id, detail-type, source, time, detail, account?, region?, resources?}``.

    ``detail_type`` is stored as given; compare with :func:`canonical_detail_type`. ``time`` is aware UTC.
    """

    detail_type: str = attrs.field(validator=_non_empty, metadata={WIRE_KEY: "detail-type"})
    source: str = attrs.field(validator=_non_empty)
    detail: dict[str, Any] = attrs.field(factory=dict)
    id: str = attrs.field(factory=lambda: str(uuid.uuid4()), validator=_non_empty)
    time: datetime = attrs.field(factory=utcnow)
    version: str = "0"
    account: str | None = attrs.field(default=None, metadata={"omit_if_default": True})
    region: str | None = attrs.field(default=None, metadata={"omit_if_default": True})
    resources: list[str] = attrs.field(factory=list, metadata={"omit_if_default": True})

    @property
    def name(self) -> str:
        """The bare SBT detail type (``sbt_aws_`` prefix removed)."""
        return canonical_detail_type(self.detail_type)

    @classmethod
    def create(cls, detail_type: str, detail: dict[str, Any] | None = None, *, source: str | None = None) -> Event:
        """A new event with a fresh id and the standard source for ``detail_type`` unless one is given."""
        bare = canonical_detail_type(detail_type)
        return cls(detail_type=detail_type, source=source or DEFAULT_SOURCES.get(bare, CONTROL_PLANE_SOURCE),
                   detail=dict(detail or {}))


