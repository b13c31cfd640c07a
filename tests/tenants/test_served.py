"""Over real sockets on 127.0.0.1: two control planes sharing one PostgreSQL registry, and the
``sbt tenants`` CLI against a served control plane."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app
from sbt_core.models import scopes
from sbt_core.testing import Harness
from sbt_core.testing.events import provision_success

from ._plane import start_plane

TENANT_SCOPES = (scopes.TENANT_READ, scopes.TENANT_WRITE)


@pytest.fixture
def two_planes(tmp_path: Path, pg_database: str) -> Iterator[list[tuple[Harness, httpx.Client]]]:
    """Two control planes, each with its own state directory, bus and providers, on one PostgreSQL
    registry; each served by uvicorn and reached by an httpx client holding its own token."""
    import sqlalchemy as sa

    from sbt_core.tenants._store import metadata

    engine = sa.create_engine(pg_database)
    metadata.drop_all(engine)
    engine.dispose()
    planes = [start_plane(tmp_path / f"plane-{i}", pg_database) for i in range(2)]
    try:
        with planes[0].serve_http() as url_a, planes[1].serve_http() as url_b:
            clients = [httpx.Client(base_url=url, timeout=30,
                                    headers={"authorization": f"Bearer {plane.token(*TENANT_SCOPES)}"})
                       for plane, url in zip(planes, (url_a, url_b), strict=True)]
            yield list(zip(planes, clients, strict=True))
            for client in clients:
                client.close()
    finally:
        for plane in planes:
            plane.close()


def test_two_control_planes_on_one_postgresql_see_each_others_tenants(
        two_planes: list[tuple[Harness, httpx.Client]]) -> None:
    (plane_a, a), (plane_b, b) = two_planes
    body = {"tenantData": {"tenantName": "shared", "tier": "basic"}}
    created = a.post("/tenant-registrations", json=body, headers={"Idempotency-Key": "k-1"})
    assert created.status_code == 201
    rid, tid = created.json()["data"]["tenantRegistrationId"], created.json()["data"]["tenantId"]

    # B sees A's registration and tenant, and A sees B's update.
    assert b.get(f"/tenant-registrations/{rid}").json()["data"]["tenantId"] == tid
    assert b.get(f"/tenants/{tid}").json()["data"]["tenantName"] == "shared"
    b.patch(f"/tenant-registrations/{rid}", json={"tenantData": {"tier": "premium"}}).raise_for_status()
    assert a.get(f"/tenants/{tid}").json()["data"]["tier"] == "premium"
    from_b = b.post("/tenant-registrations", json={"tenantData": {"tenantName": "from-b"}}).json()["data"]
    assert {r["tenantRegistrationId"] for r in a.get("/tenant-registrations").json()["data"]} == {
        rid, from_b["tenantRegistrationId"]}

    # A client retrying against the other process gets the first answer; nothing is onboarded twice.
    retried = b.post("/tenant-registrations", json=body, headers={"Idempotency-Key": "k-1"})
    assert retried.status_code == 201 and retried.json() == created.json()
    plane_a.settle()
    plane_b.settle()
    onboarded = [e.detail["tenantId"] for p in (plane_a, plane_b)
                 for e in p.provider("billing").calls["billing_create_customer"]]
    assert sorted(onboarded) == sorted([tid, from_b["tenantId"]])

    # The application plane reports to B's bus; A reads the new status.
    plane_b.put(provision_success(rid))
    plane_b.settle()
    assert a.get(f"/tenant-registrations/{rid}").json()["data"]["registrationStatus"] == "created"

    # Deleted through B: A sees it soft-deleted, and only B offboarded it.
    assert b.delete(f"/tenant-registrations/{rid}").status_code == 200
    assert a.delete(f"/tenant-registrations/{rid}").status_code == 200  # already deleted: no second offboarding
    plane_a.settle()
    plane_b.settle()
    assert a.get(f"/tenant-registrations/{rid}").json()["data"]["sbtaws_active"] is False
    offboarded = [e for p in (plane_a, plane_b) for e in p.provider("billing").calls["billing_delete_customer"]]
    assert [e.detail["tenantId"] for e in offboarded] == [tid]


@pytest.fixture
def served_plane(tmp_path: Path) -> Iterator[tuple[Harness, str]]:
    """One control plane with the embedded SQLite registry, served on 127.0.0.1."""
    plane = start_plane(tmp_path / "state", f"sqlite:///{tmp_path / 'state' / 'tenants.sqlite3'}")
    try:
        with plane.serve_http() as url:
            yield plane, url
    finally:
        plane.close()


def test_cli_drives_the_served_control_plane(served_plane: tuple[Harness, str], tmp_path: Path) -> None:
    plane, url = served_plane
    runner = CliRunner()
    app = build_app(CliState(entry_points=False))
    common = ["--url", url, "--token", plane.token(*TENANT_SCOPES)]

    def sbt(*args: str) -> Any:
        result = runner.invoke(app, ["tenants", *args, *common])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if "--json" in args or args[0] in ("get", "update") else result.stdout

    data_file = tmp_path / "tenant.json"
    data_file.write_text(json.dumps({"tenantName": "cli", "email": "cli@example.com"}))
    created = sbt("register", "--tenant-data", f"@{data_file}", "--set", "tier=basic",
                  "--registration-data", '{"registrationStatus": "In progress"}', "--idempotency-key", "cli-1",
                  "--json")
    rid, tid = created["tenantRegistrationId"], created["tenantId"]
    again = sbt("register", "--tenant-data", f"@{data_file}", "--set", "tier=basic",
                "--registration-data", '{"registrationStatus": "In progress"}', "--idempotency-key", "cli-1", "--json")
    assert again == created
    sbt("register", "--set", "tenantName=second")

    listed = sbt("list", "--json")
    assert len(listed["data"]) == 2 and rid in {r["tenantRegistrationId"] for r in listed["data"]}
    page = sbt("list", "--limit", "1", "--json")
    assert len(page["data"]) == 1 and page["next_token"]
    assert len(sbt("list", "--all", "--limit", "1", "--json")["data"]) == 2
    assert "cli" in sbt("list", "--tenants")

    assert sbt("get", rid)["tenantId"] == tid
    assert sbt("get", tid, "--tenant")["tier"] == "basic"
    updated = sbt("update", rid, "--set", "testKey=testValue", "--registration-data", '{"testKey": "testValue"}')
    assert updated["tenant"]["testKey"] == updated["tenantRegistration"]["testKey"] == "testValue"
    assert "Tenant registration deletion initiated" in sbt("delete", rid)
    assert sbt("get", rid)["sbtaws_active"] is False

    plane.settle()
    assert [e.detail["tenantId"] for e in plane.provider("billing").calls["billing_create_customer"]].count(tid) == 1

    # With only the config: the URL from [server], a token minted from the local key in state_dir.
    host, port = url.removeprefix("http://").rsplit(":", 1)
    config = tmp_path / "sbt.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[server]\nhost = "{host}"\nport = {port}\n'
                      '[providers.auth]\ntype = "local"\n')
    result = runner.invoke(app, ["tenants", "list", "--json", "-c", str(config)],
                           env={"SBT_URL": None, "SBT_TOKEN": None})
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["data"]) == 2

    # Errors are one line on stderr and exit 1.
    missing = runner.invoke(app, ["tenants", "delete", "nope", *common])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: Tenant registration not found for id nope (HTTP 404)"
    bad = runner.invoke(app, ["tenants", "register", "--tenant-data", "[1]", *common])
    assert bad.exit_code == 1 and "expected a JSON object" in bad.stderr
