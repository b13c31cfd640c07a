"""The tenant registry: tenant registrations and tenants, the source of onboarding and offboarding.

Mirrors sbt-aws's tenant-registration and tenant-management Lambdas (sbt-aws
``resources/functions/tenant-registrations/index.py``, ``resources/functions/tenant-management/``).
Storage is SQLite under the state directory by default, or PostgreSQL (``[tenants] database_url``) when
several ``sbt serve`` processes share one registry.
"""

from ._events import JOB_RESULT_STATUS, job_result_triggers, offboarding_event, onboarding_event, parse_job_result
from ._records import (
    Registered,
    RegistrationCreate,
    RegistrationStatus,
    RegistrationUpdate,
    Tenant,
    TenantRegistration,
)
from ._settings import TenantsSettings, load_settings
from ._store import TenantStore
from .service import TenantService

__all__ = [
    "JOB_RESULT_STATUS", "Registered", "RegistrationCreate", "RegistrationStatus", "RegistrationUpdate", "Tenant",
    "TenantRegistration", "TenantService", "TenantStore", "TenantsSettings", "job_result_triggers", "load_settings",
    "offboarding_event", "onboarding_event", "parse_job_result",
]

from .component import TenantRegistry, open_registry  # noqa: E402  (needs the modules above)

__all__ += ["TenantRegistry", "open_registry"]
