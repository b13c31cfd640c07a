"""``sbt app-plane run``'s loop in-process: the jobs of one config run on the events of a control plane
served over HTTP, and their outcomes reach its tenant registry."""

from __future__ import annotations

import threading
from pathlib import Path

from sbt_core.app_plane.standalone import run_standalone
from sbt_core.config import load_config
from sbt_core.models import scopes
from sbt_core.plugins import discover
from sbt_core.testing import start_control_plane
from sbt_core.testing.waiting import wait_for

from .test_lifecycle import PROVISION


def test_standalone_jobs_provision_a_control_planes_tenant_and_mint_a_new_token_when_refused(tmp_path: Path) -> None:
    control = start_control_plane(tmp_path / "control")
    catalog = discover(entry_points=False)
    config = load_config(catalog, None, raw={"state_dir": str(tmp_path / "app"), "jobs": [PROVISION],
                                             "app_plane": {"poll_interval_seconds": 0.05}})
    tokens = iter(["expired-token", control.token(scopes.EVENT_READ, scopes.EVENT_WRITE)])
    stop = threading.Event()
    try:
        with control.serve_http() as url:
            runner = threading.Thread(target=run_standalone, args=(config, catalog, url, lambda: next(tokens), stop))
            runner.start()
            try:
                client = control.client(scopes.TENANT_WRITE, scopes.TENANT_READ)
                body = {"tenantData": {"tenantName": "acme", "tier": "gold", "prices": []}}
                created = client.post("/tenant-registrations", json=body).json()["data"]
                registration = wait_for(
                    lambda: (r := client.get(f"/tenant-registrations/{created['tenantRegistrationId']}")
                             .json()["data"]).get("registrationStatus") == "created" and r,
                    "the standalone job to provision the tenant")
                assert registration["STATUS"] == "ready"
                assert client.get(f"/tenants/{created['tenantId']}").json()["data"]["DB_NAME"] == "db_acme"
            finally:
                stop.set()
                runner.join(30)
    finally:
        control.close()
    assert not runner.is_alive()
