"""Writes are all or nothing: for every write route, a failure injected after the request was validated —
in the database transaction, the bus transport, the provider's store or the provider call itself — is
answered 5xx with ``{"message"}`` and leaves no trace any read can see."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from sbt_core.tenants import TenantRegistry

from ._api import Api, volatile


class Injected(Exception):
    """The failure injected after validation."""


def _raise(*_: Any, **__: Any) -> Any:
    raise Injected("injected after validation")


class _FailingWrites:
    """A sqlite3 connection whose writes fail (a full disk, a lost file) and whose reads work."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _seed(api: Api) -> None:
    api.client.post("/meters", json={"name": "calls", "eventName": "calls", "aggregation": "SUM"})
    api.client.post("/tenant-registrations", json={"tenantData": {"tenantName": "acme"}})
    api.client.post("/users", json={"userName": "alice", "userRole": "admin", "email": "alice@example.com"})
    # An event no meter counts: the metering hook refuses it, so there is a dead letter to replay.
    api.client.post("/events", json=[{"source": "sbt.application.plane", "detail-type": "ingestUsage",
                                      "detail": {"tenantId": "t1", "eventName": "unmetered",
                                                 "properties": {"value": 1}}}])
    api.client.post("/events", json=[{"source": "sbt.application.plane", "detail-type": "ingestUsage",
                                      "detail": {"tenantId": "t1", "eventName": "calls",
                                                 "properties": {"value": 1}}}])
    api.harness.settle()


#: (route, body, where the failure is injected: ``(api, monkeypatch)`` -> None)
Injection = Callable[[Api, pytest.MonkeyPatch], None]


def _tenant_store(method: str) -> Injection:
    def inject(api: Api, patch: pytest.MonkeyPatch) -> None:
        [registry] = [c for c in api.harness.control_plane.components if isinstance(c, TenantRegistry)]
        patch.setattr(registry.service.store, method, _raise)
    return inject


def _transport(api: Api, patch: pytest.MonkeyPatch) -> None:
    patch.setattr(api.harness.bus.transport, "send", _raise)


def _user_store(api: Api, patch: pytest.MonkeyPatch) -> None:
    users = api.harness.provider("auth").users
    patch.setattr(users, "_db", _FailingWrites(users._db))


def _meter_engine(method: str) -> Injection:
    def inject(api: Api, patch: pytest.MonkeyPatch) -> None:
        patch.setattr(api.harness.provider("metering").engine, method, _raise)
    return inject


CASES: list[tuple[str, str, Any, Injection]] = [
    ("POST", "/tenant-registrations", {"tenantData": {"tenantName": "beta"}}, _tenant_store("add_outbox")),
    ("PATCH", "/tenant-registrations/{tenantRegistrationId}",
     {"tenantRegistrationData": {"a": 1}, "tenantData": {"b": 2}}, _tenant_store("save_tenant")),
    ("DELETE", "/tenant-registrations/{tenantRegistrationId}", None, _tenant_store("add_outbox")),
    ("POST", "/tenants", {"tenantName": "gamma"}, _tenant_store("insert_tenant")),
    ("PUT", "/tenants/{tenantId}", {"plan": "gold"}, _tenant_store("save_tenant")),
    ("DELETE", "/tenants/{tenantId}", None, _tenant_store("save_tenant")),
    ("POST", "/events", [{"source": "sbt.application.plane", "detail-type": "ingestUsage",
                          "detail": {"tenantId": "t1", "eventName": "calls", "properties": {"value": 1}}}], _transport),
    ("POST", "/dead-letters/replay", {}, _transport),
    ("POST", "/users", {"userName": "bob", "userRole": "r", "email": "bob@example.com"}, _user_store),
    ("PUT", "/users/{userId}", {"userRole": "viewer"}, _user_store),
    ("DELETE", "/users/{userId}", None, _user_store),
    ("PUT", "/users/{userId}/disable", None, _user_store),
    ("PUT", "/users/{userId}/enable", None, _user_store),
    ("POST", "/meters", {"name": "m2", "eventName": "m2"}, _meter_engine("_add_store")),
    ("PUT", "/meters/{meterId}", {"name": "renamed"}, _meter_engine("update_meter")),
    ("DELETE", "/meters/{meterId}", None, _meter_engine("delete_meter")),
    ("DELETE", "/usage", {"identifiers": ["x"]}, _meter_engine("cancel")),
]


def test_every_write_route_failing_after_validation_leaves_no_trace(api: Api, backend: tuple[str, str | None]) -> None:
    _seed(api)
    covered = {(method, path) for method, path, _, _ in CASES}
    missing = {(m, p) for m, p, _ in api.writes()} - covered - {("POST", "/schedules/{hook}/run")}
    assert missing == set(), "a write route without an injected-failure case"
    # On PostgreSQL only the registry's routes differ from the embedded run.
    cases = [c for c in CASES if c[1].startswith("/tenant")] if backend[0] == "postgresql" else CASES
    for method, template, body, inject in cases:
        ids = api.ids()
        for name, listing, key in (("tenantId", "/tenants", "tenantId"),
                                   ("tenantRegistrationId", "/tenant-registrations", "tenantRegistrationId")):
            ids[name] = [row[key] for row in api.client.get(listing).json()["data"] if row["sbtaws_active"]]
        path = template
        for name, values in ids.items():
            path = path.replace("{" + name + "}", values[-1] if values else "none")
        before = api.read_all()
        with pytest.MonkeyPatch.context() as patch:
            inject(api, patch)
            answer = api.send(method, path, None if body is None else json.dumps(body).encode())
        assert answer.status_code >= 500 and isinstance(answer.json()["message"], str), (method, template, answer.text)
        after = api.read_all()
        changed = sorted(p for p in after if after[p] != before.get(p))
        assert volatile(after) == volatile(before), f"{method} {template} failed but left a trace in {changed}"
        # The same request without the failure succeeds: the injected failure, not the input, refused it.
        assert api.send(method, path, None if body is None else json.dumps(body).encode()).status_code < 300, \
            (method, template)
