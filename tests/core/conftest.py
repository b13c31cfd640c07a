"""Fixture providers for the core's tests: registered without installing them."""

from __future__ import annotations

import attrs
import pytest

from sbt_core import Provider, hookimpl
from sbt_core.models import AuthSettings, Meter, Page, Secret, User


@attrs.frozen
class FakeMeteringSettings:
    region: str = "eu-west-1"
    api_key: Secret | None = None
    batch_size: int = 100


class FakeMetering(Provider):
    """Implements exactly the required IMetering hooks; records every call on the class."""

    settings_class = FakeMeteringSettings
    calls: list[tuple[str, object]] = []

    @hookimpl
    def metering_create_meter(self, meter):  # type: ignore[no-untyped-def]
        self.calls.append(("create_meter", meter))
        return Meter.new("m-1", meter)

    @hookimpl
    def metering_fetch_meter(self, meter_id):  # type: ignore[no-untyped-def]
        self.calls.append(("fetch_meter", meter_id))
        return "fake-metering"

    @hookimpl
    def metering_fetch_all_meters(self, limit, next_token):  # type: ignore[no-untyped-def]
        return Page()

    @hookimpl
    def metering_ingest_usage_event(self, usage_event):  # type: ignore[no-untyped-def]
        self.calls.append(("ingest", usage_event))

    @hookimpl
    def metering_fetch_usage(self, meter_id, query):  # type: ignore[no-untyped-def]
        return Page()


class GreedyBilling(FakeMetering):
    """A billing provider that also implements metering hooks: selected for billing only, its metering
    hooks must never run."""

    settings_class = attrs.make_class("GreedySettings", {})

    @hookimpl
    def metering_fetch_meter(self, meter_id):  # type: ignore[no-untyped-def]
        self.calls.append(("greedy_fetch_meter", meter_id))
        return "greedy"

    @hookimpl
    def billing_create_customer(self, event):  # type: ignore[no-untyped-def]
        self.calls.append(("create_customer", event))

    @hookimpl
    def billing_delete_customer(self, event):  # type: ignore[no-untyped-def]
        self.calls.append(("delete_customer", event))

    @hookimpl
    def billing_put_usage(self, run):  # type: ignore[no-untyped-def]
        return None

    @hookimpl
    def billing_webhook(self, request):  # type: ignore[no-untyped-def]
        return None


class HalfBilling(Provider):
    """A billing provider missing the required billing_delete_customer."""

    @hookimpl
    def billing_create_customer(self, event):  # type: ignore[no-untyped-def]
        return None


class FakeAuth(Provider):
    @hookimpl
    def auth_settings(self):  # type: ignore[no-untyped-def]
        return AuthSettings(jwt_issuer="https://issuer.test", jwt_audience=["c"], token_endpoint="https://t/",
                            well_known_endpoint_url="https://w/", user_client_id="c")

    @hookimpl
    def auth_create_admin_user(self, admin):  # type: ignore[no-untyped-def]
        return User(user_name=admin.name)

    def _user(self, user_id: str) -> User:
        return User(user_name=user_id)

    @hookimpl
    def auth_create_user(self, user):  # type: ignore[no-untyped-def]
        return User(user_name=user.user_name)

    @hookimpl
    def auth_fetch_all_users(self, limit, next_token):  # type: ignore[no-untyped-def]
        return Page()

    @hookimpl
    def auth_fetch_user(self, user_id):  # type: ignore[no-untyped-def]
        return self._user(user_id)

    @hookimpl
    def auth_update_user(self, user_id, update):  # type: ignore[no-untyped-def]
        return self._user(user_id)

    @hookimpl
    def auth_delete_user(self, user_id):  # type: ignore[no-untyped-def]
        return None

    @hookimpl
    def auth_disable_user(self, user_id):  # type: ignore[no-untyped-def]
        return None

    @hookimpl
    def auth_enable_user(self, user_id):  # type: ignore[no-untyped-def]
        return None


class BadSignature:
    """A plugin whose hookimpl takes an argument the spec does not have."""

    @hookimpl
    def metering_fetch_meter(self, meter_id, bogus):  # type: ignore[no-untyped-def]
        return None


class Misspelt:
    @hookimpl
    def metering_fetch_metre(self, meter_id):  # type: ignore[no-untyped-def]
        return None


class AuditWrapper:
    """An extension: a wrapper around an interface hook, plus start-up."""

    seen: list[str] = []

    @hookimpl(wrapper=True)
    def metering_fetch_meter(self, meter_id):  # type: ignore[no-untyped-def]
        self.seen.append(f"before {meter_id}")
        result = yield
        self.seen.append(f"after {result}")
        return result


FAKES = {"fakemeter": FakeMetering, "greedy": GreedyBilling, "half": HalfBilling, "fakeauth": FakeAuth}


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    FakeMetering.calls = []
    AuditWrapper.seen = []


@pytest.fixture
def fakes() -> dict[str, object]:
    return dict(FAKES)
