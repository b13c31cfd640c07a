"""The whole tenant lifecycle through HTTP with the presets: registration -> provisioning script ->
created; delete -> deprovisioning script -> deleted; a failing script -> failed."""

from __future__ import annotations

from pathlib import Path

from sbt_core.models import scopes

from ._jobs import app_plane, settle, start_with_jobs

PROVISION = {"preset": "provisioning", "import_variables": ["tenantId", "tier", "tenantName"],
             "import_json_variables": ["prices"],
             "script": 'echo "provisioning $tenantName"\nDB_NAME="db_$tenantName"\nSEEN="$tier|$prices"\n'
                       'STATUS=ready',
             "export_tenant_data": ["DB_NAME", "SEEN"], "export_tenant_registration_data": ["STATUS"]}
DEPROVISION = {"preset": "deprovisioning", "import_variables": ["tenantId"],
               "script": 'test -n "$tenantId"\nGONE=yes', "export_tenant_data": ["GONE"]}


def test_register_provision_delete_deprovision(tmp_path: Path) -> None:
    harness = start_with_jobs(tmp_path, [PROVISION, DEPROVISION])
    try:
        client = harness.client(scopes.TENANT_WRITE, scopes.TENANT_READ)
        body = {"tenantData": {"tenantName": "acme", "tier": "gold", "prices": [{"id": "p1"}]},
                "tenantRegistrationData": {}}
        created = client.post("/tenant-registrations", json=body).json()["data"]
        settle(harness)
        registration_id = created["tenantRegistrationId"]
        registration = client.get(f"/tenant-registrations/{registration_id}").json()["data"]
        assert registration["registrationStatus"] == "created"
        assert registration["STATUS"] == "ready"
        tenant = client.get(f"/tenants/{created['tenantId']}").json()["data"]
        assert tenant["DB_NAME"] == "db_acme"
        assert tenant["SEEN"] == 'gold|[{"id":"p1"}]'

        assert client.delete(f"/tenant-registrations/{registration_id}").status_code == 200
        settle(harness)
        assert client.get(f"/tenant-registrations/{registration_id}").json()["data"]["registrationStatus"] == "deleted"
        assert client.get(f"/tenants/{created['tenantId']}").json()["data"]["GONE"] == "yes"
        runs = {run.job: run for run in app_plane(harness).store.recent()}
        assert set(runs) == {"provisioning", "deprovisioning"}
        assert runs["provisioning"].output == ("provisioning acme",)
    finally:
        harness.close()


def test_a_failing_script_sets_the_failed_status(tmp_path: Path) -> None:
    harness = start_with_jobs(tmp_path, [{"preset": "provisioning", "script": "echo nope >&2\nexit 3"}])
    try:
        client = harness.client(scopes.TENANT_WRITE, scopes.TENANT_READ)
        created = client.post("/tenant-registrations", json={"tenantData": {"tenantName": "x"}}).json()["data"]
        settle(harness)
        registration = client.get(f"/tenant-registrations/{created['tenantRegistrationId']}").json()["data"]
        assert registration["registrationStatus"] == "failed"
        failure = harness.events.of_type("provisionFailure")[0]
        assert failure.detail == {"tenantRegistrationId": created["tenantRegistrationId"],
                                  "jobOutput": {"tenantStatus": "Failed to provision tenant."}}
        run = app_plane(harness).store.recent()[0]
        assert (run.status, run.exit_code, run.error, run.output) == ("failed", 3, "exit code 3", ("nope",))
    finally:
        harness.close()
