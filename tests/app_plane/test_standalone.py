"""``sbt app-plane run``'s loop in-process: the jobs of one config run on the events of a control plane
served over HTTP, and their outcomes reach its tenant registry; two such planes sharing a job store run
each job once between them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from sbt_core.app_plane.standalone import run_standalone
from sbt_core.config import load_config
from sbt_core.models import scopes
from sbt_core.plugins import discover
from sbt_core.testing import start_control_plane
from sbt_core.testing.waiting import wait_for

from .test_lifecycle import PROVISION


def test_standalone_planes_provision_a_control_planes_tenants_once_each(tmp_path: Path) -> None:
    control = start_control_plane(tmp_path / "control")
    catalog = discover(entry_points=False)
    job = {**PROVISION, "script": f"echo $tenantName >> {tmp_path}/runs.txt\n" + str(PROVISION["script"])}
    config = load_config(catalog, None, raw={"state_dir": str(tmp_path / "app"), "jobs": [job],
                                             "app_plane": {"poll_interval_seconds": 0.05}})
    valid = control.token(scopes.EVENT_READ, scopes.EVENT_WRITE)
    # The first plane starts with a token the control plane refuses, and must mint a new one.
    tokens: list[Callable[[], str]] = [iter(["expired-token", valid]).__next__, lambda: valid]
    stop = threading.Event()
    try:
        with control.serve_http() as url:
            runners = [threading.Thread(target=run_standalone, args=(config, catalog, url, token, stop))
                       for token in tokens]
            for runner in runners:
                runner.start()
            try:
                client = control.client(scopes.TENANT_WRITE, scopes.TENANT_READ)
                created = [client.post("/tenant-registrations", json={"tenantData": {
                    "tenantName": name, "tier": "gold", "prices": []}}).json()["data"] for name in ("a", "b", "c")]
                for registration in created:
                    wait_for(lambda r=registration: client.get(f"/tenant-registrations/{r['tenantRegistrationId']}")
                             .json()["data"].get("registrationStatus") == "created", "the jobs to provision")
                assert client.get(f"/tenants/{created[0]['tenantId']}").json()["data"]["DB_NAME"] == "db_a"
            finally:
                stop.set()
                for runner in runners:
                    runner.join(30)
    finally:
        control.close()
    assert sorted((tmp_path / "runs.txt").read_text().split()) == ["a", "b", "c"]
    assert not any(runner.is_alive() for runner in runners)
