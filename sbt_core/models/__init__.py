"""The attrs records the hooks exchange, and their camelCase JSON form (:func:`from_json`, :func:`to_json`)."""

from . import scopes
from ._convert import converter, format_timestamp, from_json, parse_timestamp, to_json
from .auth import AdminUser, AuthSettings, CreateUserRequest, UpdateUserRequest, User
from .billing import BillingUsage, Customer, PutUsageResult, ScheduleRun, WebhookRequest, WebhookResponse
from .common import MAX_PAGE_LIMIT, Page, PageRequest, Secret, utcnow
from .events import (
    APPLICATION_PLANE_SOURCE,
    CONTROL_PLANE_SOURCE,
    DEFAULT_SOURCES,
    DetailType,
    Event,
    canonical_detail_type,
    output_detail_type,
)
from .metering import (
    MUTABLE_METER_FIELDS,
    Aggregation,
    CancelResult,
    CancelUsageRequest,
    Meter,
    MeterCreate,
    MeterStatus,
    MeterUpdate,
    UsageEvent,
    UsageQuery,
    UsageRow,
    WindowSize,
)

__all__ = [
    "APPLICATION_PLANE_SOURCE", "CONTROL_PLANE_SOURCE", "DEFAULT_SOURCES", "MAX_PAGE_LIMIT", "MUTABLE_METER_FIELDS",
    "AdminUser", "Aggregation", "AuthSettings", "BillingUsage", "CancelResult", "CancelUsageRequest",
    "CreateUserRequest",
    "Customer", "DetailType", "Event", "Meter", "MeterCreate", "MeterStatus", "MeterUpdate", "Page", "PageRequest",
    "PutUsageResult", "ScheduleRun", "Secret", "UpdateUserRequest", "UsageEvent", "UsageQuery", "UsageRow", "User",
    "WebhookRequest", "WebhookResponse", "WindowSize", "canonical_detail_type", "converter", "format_timestamp",
    "from_json", "output_detail_type", "parse_timestamp", "scopes", "to_json", "utcnow",
]
