"""Typed facades over the hooks, one per interface (tox's ``manager.Plugin`` pattern): callers write
``providers.metering.fetch_usage(meter_id, query)``, never ``pm.hook.metering_fetch_usage(...)``.

Each method calls ``<interface>_<method>`` on the selected provider only; see :meth:`Providers.call`
for the errors raised.

The methods are written out, not generated from the contract, so the type checker sees each signature;
``tests/core/test_hookspecs.py`` holds them to the hookspecs (every contract hook and batch form has its
method, with the same arguments, annotations and result), so a hook added to the contract without its
facade method fails there.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, cast

from ..hookspecs import Interface
from ..models import (
    AdminUser,
    AuthSettings,
    CancelResult,
    CancelUsageRequest,
    CreateUserRequest,
    Customer,
    Event,
    Meter,
    MeterCreate,
    MeterUpdate,
    Page,
    PutUsageResult,
    ScheduleRun,
    UpdateUserRequest,
    UsageEvent,
    UsageQuery,
    UsageRow,
    User,
    WebhookRequest,
    WebhookResponse,
)


class SelectedProviders(Protocol):
    """What a facade reads of :class:`~sbt_core.plugins.Providers` (which builds the facades, so the
    facades name only this)."""

    types: dict[Interface, str]

    def call(self, hook: str, **kwargs: Any) -> Any: ...

    def implements(self, hook: str) -> bool: ...


class _Facade:
    interface: ClassVar[Interface]

    def __init__(self, providers: SelectedProviders) -> None:
        self._providers = providers

    def _call(self, method: str, **kwargs: Any) -> Any:
        return self._providers.call(f"{self.interface}_{method}", **kwargs)

    def implements(self, method: str) -> bool:
        """Whether the selected provider implements ``<interface>_<method>``."""
        return self._providers.implements(f"{self.interface}_{method}")

    @property
    def provider_type(self) -> str:
        return self._providers.types[self.interface]


class AuthFacade(_Facade):
    """IAuth of the selected auth provider."""

    interface = "auth"

    def settings(self) -> AuthSettings:
        return cast(AuthSettings, self._call("settings"))

    def create_admin_user(self, admin: AdminUser) -> User | None:
        return cast("User | None", self._call("create_admin_user", admin=admin))

    def create_user(self, user: CreateUserRequest) -> User:
        return cast(User, self._call("create_user", user=user))

    def fetch_all_users(self, limit: int = 10, next_token: str | None = None) -> Page[User]:
        return cast("Page[User]", self._call("fetch_all_users", limit=limit, next_token=next_token))

    def fetch_user(self, user_id: str) -> User:
        return cast(User, self._call("fetch_user", user_id=user_id))

    def update_user(self, user_id: str, update: UpdateUserRequest) -> User:
        return cast(User, self._call("update_user", user_id=user_id, update=update))

    def delete_user(self, user_id: str) -> None:
        self._call("delete_user", user_id=user_id)

    def disable_user(self, user_id: str) -> None:
        self._call("disable_user", user_id=user_id)

    def enable_user(self, user_id: str) -> None:
        self._call("enable_user", user_id=user_id)


class BillingFacade(_Facade):
    """IBilling of the selected billing provider."""

    interface = "billing"

    def create_customer(self, event: Event) -> Customer | None:
        return cast("Customer | None", self._call("create_customer", event=event))

    def delete_customer(self, event: Event) -> None:
        self._call("delete_customer", event=event)

    def create_user(self, event: Event) -> None:
        self._call("create_user", event=event)

    def delete_user(self, event: Event) -> None:
        self._call("delete_user", event=event)

    def ingest(self, event: Event) -> None:
        self._call("ingest", event=event)

    def put_usage(self, run: ScheduleRun) -> PutUsageResult | None:
        return cast("PutUsageResult | None", self._call("put_usage", run=run))

    def webhook(self, request: WebhookRequest) -> WebhookResponse | None:
        return cast("WebhookResponse | None", self._call("webhook", request=request))


class MeteringFacade(_Facade):
    """IMetering of the selected metering provider."""

    interface = "metering"

    def create_meter(self, meter: MeterCreate) -> Meter:
        return cast(Meter, self._call("create_meter", meter=meter))

    def fetch_meter(self, meter_id: str) -> Meter:
        return cast(Meter, self._call("fetch_meter", meter_id=meter_id))

    def fetch_all_meters(self, limit: int = 10, next_token: str | None = None) -> Page[Meter]:
        return cast("Page[Meter]", self._call("fetch_all_meters", limit=limit, next_token=next_token))

    def update_meter(self, meter_id: str, update: MeterUpdate) -> Meter:
        return cast(Meter, self._call("update_meter", meter_id=meter_id, update=update))

    def delete_meter(self, meter_id: str) -> Meter | None:
        return cast("Meter | None", self._call("delete_meter", meter_id=meter_id))

    def ingest_usage_event(self, usage_event: UsageEvent) -> None:
        self._call("ingest_usage_event", usage_event=usage_event)

    def ingest_usage_events(self, usage_events: list[UsageEvent]) -> list[str | None]:
        return cast("list[str | None]", self._call("ingest_usage_events", usage_events=usage_events))

    def fetch_usage(self, meter_id: str, query: UsageQuery) -> Page[UsageRow]:
        return cast("Page[UsageRow]", self._call("fetch_usage", meter_id=meter_id, query=query))

    def cancel_usage_events(self, request: CancelUsageRequest) -> CancelResult:
        return cast(CancelResult, self._call("cancel_usage_events", request=request))

    def create_customer(self, event: Event) -> None:
        self._call("create_customer", event=event)

    def delete_customer(self, event: Event) -> None:
        self._call("delete_customer", event=event)
