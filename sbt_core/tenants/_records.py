"""The records of the tenant registry: request bodies, stored rows, and their sbt-aws JSON shapes.

sbt-aws keeps a registration and a tenant as flat DynamoDB items: the ids, ``sbtaws_active`` and
whatever the client sent, side by side (``resources/functions/tenant-registrations/index.py``). Here
the ids and the active flag are columns and the client's keys are ``data``; :meth:`to_json` flattens
them back into the upstream item, so sbt-aws clients read the same JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NewType

import attrs

from ..errors import BadRequestError
from ..models import converter

__all__ = [
    "ACTIVE_KEY", "JsonObject", "REGISTRATION_ID_KEY", "RESERVED_KEYS", "TENANT_ID_KEY", "Registered",
    "RegistrationCreate", "RegistrationStatus", "RegistrationUpdate", "Tenant", "TenantRegistration",
    "check_reserved",
]

TENANT_ID_KEY = "tenantId"
REGISTRATION_ID_KEY = "tenantRegistrationId"
#: sbt-aws's soft-delete flag; its exact (snake_case) spelling is what upstream clients read.
ACTIVE_KEY = "sbtaws_active"
#: Keys the control plane sets; client data may not overwrite them (upstream's ``item | data`` lets a
#: client replace its own id, which breaks every later lookup).
RESERVED_KEYS = frozenset({TENANT_ID_KEY, REGISTRATION_ID_KEY, ACTIVE_KEY})

#: A JSON object with free-form keys (tenant data, registration data).
JsonObject = NewType("JsonObject", dict[str, Any])

_JSON_NAMES = {"str": "a string", "list": "an array", "int": "a number", "float": "a number",
               "bool": "a boolean", "NoneType": "null"}


def _structure_object(value: Any, _: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        got = _JSON_NAMES.get(type(value).__name__, type(value).__name__)
        raise ValueError(f"expected a JSON object, got {got}")
    return value


# The shared converter learns only this module's own type; no other record changes behaviour.
converter.register_structure_hook(JsonObject, _structure_object)


class RegistrationStatus:
    """Values of ``registrationStatus`` the control plane writes on application-plane events
    (sbt-aws's provisioning job exports ``created``/``deleted``; ``failed`` is sbt's fix of upstream,
    where a failure event changed nothing)."""

    CREATED = "created"
    DELETED = "deleted"
    FAILED = "failed"


def check_reserved(data: Mapping[str, Any], where: str, *, allowed: Mapping[str, Any] | None = None) -> None:
    """Refuse client data that sets a key the control plane owns.

    ``allowed`` maps a reserved key to the one value the client may repeat (e.g. the path's
    ``tenantId`` echoed back in a ``PUT /tenants/{tenantId}`` body), or to ``...`` for any value.

    :raises BadRequestError: ``<where>.<key> is set by the control plane``.
    """
    allowed = allowed or {}
    bad = []
    for key in sorted(RESERVED_KEYS & data.keys()):
        if key in allowed and (allowed[key] is ... or allowed[key] == data[key]):
            continue
        bad.append(f"{where}.{key}")
    if bad:
        raise BadRequestError(f"{', '.join(bad)}: set by the control plane, not by the client")


@attrs.frozen
class RegistrationCreate:
    """Body of ``POST /tenant-registrations``: ``{tenantData, tenantRegistrationData?}``; the schema is closed.

    ``tenantData`` is required (sbt-aws defaults it to ``{}``, which creates a tenant nobody can name).
    """

    tenant_data: JsonObject
    tenant_registration_data: JsonObject = attrs.field(factory=lambda: JsonObject({}))

    def __attrs_post_init__(self) -> None:
        check_reserved(self.tenant_data, "tenantData")
        check_reserved(self.tenant_registration_data, "tenantRegistrationData")


@attrs.frozen
class RegistrationUpdate:
    """Body of ``PATCH /tenant-registrations/{id}``: ``{tenantData?, tenantRegistrationData?}``; closed.

    Keys given replace the stored ones (a shallow merge, as DynamoDB's ``SET`` upstream).
    """

    tenant_data: JsonObject = attrs.field(factory=lambda: JsonObject({}))
    tenant_registration_data: JsonObject = attrs.field(factory=lambda: JsonObject({}))

    def __attrs_post_init__(self) -> None:
        check_reserved(self.tenant_data, "tenantData")
        check_reserved(self.tenant_registration_data, "tenantRegistrationData")


@attrs.frozen
class TenantRegistration:
    """A stored registration. JSON: ``{tenantRegistrationId, tenantId, sbtaws_active, ...data}``."""

    tenant_registration_id: str
    tenant_id: str | None
    active: bool
    data: dict[str, Any] = attrs.field(factory=dict)

    @property
    def status(self) -> str | None:
        """``registrationStatus`` (``created``/``deleted``/``failed`` or whatever the client set), if any."""
        value = self.data.get("registrationStatus")
        return value if isinstance(value, str) else None

    def to_json(self) -> dict[str, Any]:
        """The sbt-aws item: ids and ``sbtaws_active`` first, then the registration data."""
        head: dict[str, Any] = {REGISTRATION_ID_KEY: self.tenant_registration_id}
        if self.tenant_id is not None:
            head[TENANT_ID_KEY] = self.tenant_id
        head[ACTIVE_KEY] = self.active
        return head | {k: v for k, v in self.data.items() if k not in RESERVED_KEYS}


@attrs.frozen
class Tenant:
    """A stored tenant. JSON: ``{tenantId, tenantRegistrationId?, sbtaws_active, ...data}``."""

    tenant_id: str
    tenant_registration_id: str | None
    active: bool
    data: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The sbt-aws item: ids and ``sbtaws_active`` first, then the tenant data."""
        head: dict[str, Any] = {TENANT_ID_KEY: self.tenant_id}
        if self.tenant_registration_id is not None:
            head[REGISTRATION_ID_KEY] = self.tenant_registration_id
        head[ACTIVE_KEY] = self.active
        return head | {k: v for k, v in self.data.items() if k not in RESERVED_KEYS}


@attrs.frozen
class Registered:
    """The answer to a registration: 201 ``{data:{tenantRegistrationId, tenantId, message}}``.

    ``replayed`` is true when an ``Idempotency-Key`` retry returned the first answer (nothing new done).
    """

    tenant_registration_id: str
    tenant_id: str
    message: str = "Tenant registration initiated"
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {REGISTRATION_ID_KEY: self.tenant_registration_id, TENANT_ID_KEY: self.tenant_id,
                "message": self.message}
