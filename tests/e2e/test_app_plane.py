"""The application plane end to end, with real processes and only the README walkthrough's ``sbt.toml``:
registration -> provisioning script -> created; delete -> deprovisioning script -> deleted; a failing
script -> failed; a redelivered onboarding event runs nothing twice. Then the same jobs as a process of
their own (``sbt app-plane run``), and a control plane killed in the middle of a job."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sbt_core.app_plane import JobRun, open_store
from sbt_core.auth_local import mint_token
from sbt_core.config import load_config
from sbt_core.models import scopes
from sbt_core.plugins import discover
from sbt_core.testing.processes import free_port
from sbt_core.testing.waiting import wait_for

from ._serve import background, sbt_serve
from .test_readme import walkthrough_config

ALL_SCOPES = [scopes.TENANT_READ, scopes.TENANT_WRITE, scopes.EVENT_READ, scopes.EVENT_WRITE]


def _client(url: str, folder: Path, config: str = "sbt.toml") -> httpx.Client:
    token = mint_token(ALL_SCOPES, config=load_config(discover(), folder / config))
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30)


def _status(client: httpx.Client, registration_id: str, status: str) -> dict[str, object]:
    def reached() -> dict[str, object] | None:
        data: dict[str, object] = client.get(f"/tenant-registrations/{registration_id}").json()["data"]
        return data if data.get("registrationStatus") == status else None

    return wait_for(reached, f"registration {registration_id} to be {status}")


def _register(client: httpx.Client, registration_data: dict[str, object]) -> dict[str, str]:
    body = {"tenantData": {"tenantName": "acme"}, "tenantRegistrationData": registration_data}
    answer: dict[str, str] = client.post("/tenant-registrations", json=body).json()["data"]
    return answer


def _runs(folder: Path) -> list[JobRun]:
    """The runs in the job store of the config in ``folder``, newest first."""
    store = open_store(load_config(discover(), folder / "sbt.toml"))
    try:
        return store.recent()
    finally:
        store.dispose()


@pytest.fixture
def readme_folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "sbt.toml").write_text(walkthrough_config())
    yield tmp_path


def test_the_readme_jobs_run_the_whole_tenant_lifecycle(readme_folder: Path) -> None:
    with sbt_serve(readme_folder) as url, _client(url, readme_folder) as client:
        created = _register(client, {"tier": "basic"})
        _status(client, created["tenantRegistrationId"], "created")
        tenant = client.get(f"/tenants/{created['tenantId']}").json()["data"]
        assert tenant["TENANT_DB"] == "db_" + created["tenantId"].replace("-", "_")

        assert client.delete(f"/tenant-registrations/{created['tenantRegistrationId']}").status_code == 200
        _status(client, created["tenantRegistrationId"], "deleted")

        no_tier = _register(client, {})
        _status(client, no_tier["tenantRegistrationId"], "failed")
        onboarding = next(r["event"] for r in client.get("/events", params={"limit": 1000}).json()["data"]
                          if r["event"]["detail-type"] == "onboardingRequest"
                          and r["event"]["detail"]["tenantRegistrationId"] == created["tenantRegistrationId"])
    log = (readme_folder / "sbt-serve.log").read_text()
    assert f"creating the database of acme ({created['tenantId']}, tier basic)" in log
    assert f"dropping {tenant['TENANT_DB']}" in log
    assert "the registration needs a tier" in log

    # A restarted control plane has forgotten which events its bus delivered: the job store remembers.
    with sbt_serve(readme_folder) as url, _client(url, readme_folder) as client:
        assert client.post("/events", json=[onboarding]).json()["FailedEntryCount"] == 0
        record = wait_for(lambda: next((r for r in [client.get(f"/events/{onboarding['id']}").json()["data"]]
                                        if r["deliveries"] and all(d["state"] == "delivered"
                                                                   for d in r["deliveries"])), None),
                          "the redelivered onboardingRequest to be handled")
        jobs = {d["target"]: d for d in record["deliveries"]}["jobs.provisioning"]
        assert jobs["result"]["claim"] == "done"
    assert "creating the database of" not in (readme_folder / "sbt-serve.log").read_text()  # the second server's
    runs = {(r.job, r.job_id): r for r in _runs(readme_folder)}
    assert runs[("provisioning", created["tenantRegistrationId"])].attempt == 1
    assert runs[("provisioning", no_tier["tenantRegistrationId"])].status == "failed"


def test_the_jobs_as_a_process_of_their_own(tmp_path: Path) -> None:
    control, app = tmp_path / "control", tmp_path / "app"
    control.mkdir()
    app.mkdir()
    (control / "sbt.toml").write_text('[providers.auth]\ntype = "local"\n')
    (app / "sbt.toml").write_text(walkthrough_config() + "\n[app_plane]\npoll_interval_seconds = 0.2\n")
    with sbt_serve(control) as url, _client(url, control) as client:
        control_config = load_config(discover(), control / "sbt.toml")
        token = mint_token([scopes.EVENT_READ, scopes.EVENT_WRITE], config=control_config)
        args = [sys.executable, "-m", "sbt_core.cli", "app-plane", "run", "--url", url, "--token", token]
        log = app / "app-plane.log"
        with background(args, cwd=app, name="app-plane",
                        ready=lambda: log.exists() and "application plane running" in log.read_text()):
            created = _register(client, {"tier": "basic"})
            _status(client, created["tenantRegistrationId"], "created")
            tenant = client.get(f"/tenants/{created['tenantId']}").json()["data"]
            assert tenant["TENANT_DB"] == "db_" + created["tenantId"].replace("-", "_")
        assert "creating the database of acme" in log.read_text()
    assert [r.status for r in _runs(app)] == ["succeeded"]


def test_a_job_cut_short_by_a_killed_control_plane_runs_again_after_the_restart(tmp_path: Path) -> None:
    (tmp_path / "sbt.toml").write_text(
        '[providers.auth]\ntype = "local"\n\n[app_plane]\nlease_seconds = 1\n\n'
        '[[jobs]]\npreset = "provisioning"\n'
        f'script = """\necho started >> {tmp_path}/starts\nwhile [ -e {tmp_path}/hold ]; do sleep 0.05; done\n'
        'READY=yes\n"""\nexport_tenant_data = ["READY"]\n')
    (tmp_path / "hold").touch()
    port = free_port()
    args = [sys.executable, "-m", "sbt_core.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with background(args, cwd=tmp_path, ready=f"{url}/health", name="first") as proc, \
            _client(url, tmp_path) as client:
        created = _register(client, {})
        wait_for(lambda: (tmp_path / "starts").exists(), "the job to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (tmp_path / "hold").unlink()
    with sbt_serve(tmp_path) as url, _client(url, tmp_path) as client:
        _status(client, created["tenantRegistrationId"], "created")
        assert client.get(f"/tenants/{created['tenantId']}").json()["data"]["READY"] == "yes"
    assert (tmp_path / "starts").read_text().splitlines() == ["started", "started"]
    assert [(r.status, r.attempt) for r in _runs(tmp_path)] == [("succeeded", 2)]
