"""Two ``sbt serve`` processes on one PostgreSQL registry: what one registers, the other lists, reads,
updates, and resolves job results for; an ``Idempotency-Key`` retry against the other process replays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from sbt_core.auth_local import mint_token
from sbt_core.config import load_config
from sbt_core.models import scopes
from sbt_core.plugins import discover
from sbt_core.tenants._store import metadata

LISTENING = "sbt control plane listening on "
SCOPES = [scopes.TENANT_READ, scopes.TENANT_WRITE, scopes.EVENT_WRITE, scopes.EVENT_READ]


def _write_config(directory: Path) -> Path:
    directory.mkdir(parents=True)
    path = directory / "sbt.toml"
    path.write_text('state_dir = "state"\n\n[server]\nhost = "127.0.0.1"\nport = 0\n\n'
                    '[providers.auth]\ntype = "local"\n\n[tenants]\ndatabase_url = { env = "SBT_TEST_TENANTS_DB" }\n')
    return path


def _token(config_path: Path) -> str:
    # Minted from the process's own local key (created here first, so the server finds it).
    catalog = discover(entry_points=False)
    return mint_token(SCOPES, config=load_config(catalog, config_path))


@pytest.fixture
def two_servers(tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[httpx.Client]]:
    monkeypatch.setenv("SBT_TEST_TENANTS_DB", pg_database)  # the config refers to it; so does _token here
    engine = sa.create_engine(pg_database)
    metadata.drop_all(engine)
    engine.dispose()
    env = os.environ | {"SBT_LOAD_PLUGINS": ""}  # no installed plugin leaks in
    procs: list[subprocess.Popen[str]] = []
    clients: list[httpx.Client] = []
    try:
        for name in ("a", "b"):
            config = _write_config(tmp_path / name)
            token = _token(config)
            proc = subprocess.Popen([sys.executable, "-m", "sbt_core.cli", "serve", "-c", str(config),
                                     "--log-level", "warning"], env=env, cwd=tmp_path, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append(proc)
            assert proc.stdout is not None
            url = None
            for line in proc.stdout:  # ends when the process exits: a failed start cannot hang here
                if line.startswith(LISTENING):
                    url = line[len(LISTENING):].strip()
                    break
            assert url is not None, f"sbt serve ({name}) did not start (exit {proc.poll()})"
            clients.append(httpx.Client(base_url=url, timeout=30, headers={"authorization": f"Bearer {token}"}))
        yield clients
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_two_sbt_serve_processes_share_tenants(two_servers: list[httpx.Client]) -> None:
    a, b = two_servers
    body = {"tenantData": {"tenantName": "across", "tier": "basic"},
            "tenantRegistrationData": {"registrationStatus": "In progress"}}
    created = a.post("/tenant-registrations", json=body, headers={"Idempotency-Key": "serve-1"})
    assert created.status_code == 201, created.text
    rid, tid = created.json()["data"]["tenantRegistrationId"], created.json()["data"]["tenantId"]

    assert rid in {r["tenantRegistrationId"] for r in b.get("/tenant-registrations").json()["data"]}
    assert b.get(f"/tenants/{tid}").json()["data"]["tenantName"] == "across"
    retried = b.post("/tenant-registrations", json=body, headers={"Idempotency-Key": "serve-1"})
    assert retried.status_code == 201 and retried.json() == created.json()
    assert len(a.get("/tenant-registrations").json()["data"]) == 1

    patched = b.patch(f"/tenant-registrations/{rid}", json={"tenantData": {"testKey": "testValue"},
                                                            "tenantRegistrationData": {"testKey": "testValue"}})
    assert patched.json()["data"]["tenant"]["testKey"] == "testValue"
    assert a.get(f"/tenants/{tid}").json()["data"]["testKey"] == "testValue"

    # The application plane puts provisionSuccess on B (POST /events); A reads the status once B applied it.
    put = b.post("/events", json=[{"detail-type": "provisionSuccess", "source": "sbt.application.plane",
                                   "detail": {"tenantRegistrationId": rid, "jobOutput": {}}}])
    assert put.status_code == 200 and put.json()["FailedEntryCount"] == 0
    event_id = put.json()["Entries"][0]["EventId"]
    deadline = time.monotonic() + 20  # a hang guard: the delivery state is what we wait for
    while True:
        states = {d["target"]: d["state"] for d in b.get(f"/events/{event_id}").json()["data"]["deliveries"]}
        if states.get("tenants.provisionSuccess") == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert states == {"tenants.provisionSuccess": "delivered"}
    assert a.get(f"/tenant-registrations/{rid}").json()["data"]["registrationStatus"] == "created"

    deleted = a.delete(f"/tenant-registrations/{rid}").json()
    assert deleted == {"data": {"message": "Tenant registration deletion initiated"}}
    assert b.get(f"/tenant-registrations/{rid}").json()["data"]["sbtaws_active"] is False
    assert b.get(f"/tenants/{tid}").json()["data"]["sbtaws_active"] is False
