"""A job is idempotent by its job identifier, runs with only its declared environment, and is killed
(with everything it started) when it passes its timeout."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from sbt_core.app_plane import Claim
from sbt_core.testing.events import onboarding_request

from ._jobs import WAIT, app_plane, settle, start_with_jobs


def _counting_job(tmp_path: Path, **extra: object) -> dict[str, object]:
    """A provisioning job that appends a line to ``runs.txt`` per run (and waits for ``go`` if it exists
    as a folder named ``hold``)."""
    script = (f'echo run >> {tmp_path}/runs.txt\n'
              f'while [ -d {tmp_path}/hold ]; do sleep 0.05; done\n'
              'DONE=yes')
    return {"preset": "provisioning", "script": script, "export_tenant_data": ["DONE"], **extra}


def _runs(tmp_path: Path) -> int:
    path = tmp_path / "runs.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_redelivered_event_runs_nothing_twice_even_after_a_restart(tmp_path: Path) -> None:
    event = onboarding_request(tenant_registration_id="reg-1")
    first = start_with_jobs(tmp_path / "state", [_counting_job(tmp_path)], tenants=False)
    try:
        first.put(event)
        settle(first)
        assert [e.detail["jobOutput"] for e in first.events.of_type("provisionSuccess")] == [
            {"tenantData": {"DONE": "yes"}, "tenantRegistrationData": {}}]
    finally:
        first.close()
    # A new process has forgotten the ids the bus saw: only the job store stands between a redelivery and a rerun.
    second = start_with_jobs(tmp_path / "state", [_counting_job(tmp_path)], tenants=False)
    try:
        second.put(event)
        settle(second)
        assert _runs(tmp_path) == 1
        assert second.events.of_type("provisionSuccess") == []  # its outcome already went out
        assert second.events.deliveries(event)["jobs.provisioning"].result["claim"] == Claim.DONE

        again = onboarding_request(tenant_registration_id="reg-1")  # a new request for the same registration
        second.put(again)
        settle(second)
        assert _runs(tmp_path) == 1
        resent = second.events.of_type("provisionSuccess")
        assert [e.detail["jobOutput"]["tenantData"] for e in resent] == [{"DONE": "yes"}]
    finally:
        second.close()


def test_a_run_in_progress_is_not_started_a_second_time(tmp_path: Path) -> None:
    (tmp_path / "hold").mkdir()
    harness = start_with_jobs(tmp_path / "state", [_counting_job(tmp_path)], tenants=False)
    try:
        harness.put(onboarding_request(tenant_registration_id="reg-1"))
        harness.settle()
        duplicate = onboarding_request(tenant_registration_id="reg-1")
        harness.put(duplicate)
        harness.settle()
        assert harness.events.deliveries(duplicate)["jobs.provisioning"].result["claim"] == Claim.SKIP
        (tmp_path / "hold").rmdir()
        settle(harness)
        assert _runs(tmp_path) == 1
        assert len(harness.events.of_type("provisionSuccess")) == 1
    finally:
        harness.close()


def test_a_failed_run_runs_again_on_a_new_event_only(tmp_path: Path) -> None:
    job = {"preset": "provisioning", "script": f'echo run >> {tmp_path}/runs.txt\ntest -e {tmp_path}/fixed'}
    harness = start_with_jobs(tmp_path / "state", [job], tenants=False)
    try:
        failing = onboarding_request(tenant_registration_id="reg-1")
        harness.put(failing)
        settle(harness)
        assert len(harness.events.of_type("provisionFailure")) == 1
        (tmp_path / "fixed").touch()
        harness.put(onboarding_request(tenant_registration_id="reg-1"))
        settle(harness)
        assert _runs(tmp_path) == 2
        assert len(harness.events.of_type("provisionSuccess")) == 1
        run = app_plane(harness).store.get("provisioning", "reg-1")
        assert run is not None and (run.status, run.attempt) == ("succeeded", 2)
    finally:
        harness.close()


def test_an_event_without_the_job_identifier_is_dead_lettered(tmp_path: Path) -> None:
    harness = start_with_jobs(tmp_path / "state", [_counting_job(tmp_path)], tenants=False)
    try:
        event = onboarding_request()
        event.detail.pop("tenantRegistrationId")
        harness.put(event)
        settle(harness)
        letters = harness.bus.dead_letters()
        assert [(d.target, d.last_error) for d in letters] == [
            ("jobs.provisioning", "job provisioning: onboardingRequest detail needs tenantRegistrationId (the job "
                                  "identifier), a non-empty string")]
        assert _runs(tmp_path) == 0
    finally:
        harness.close()


def test_the_script_sees_only_its_declared_environment_and_secrets_stay_out_of_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SBT_TEST_DB_PASSWORD", "s3cr3t-value")
    monkeypatch.setenv("SBT_TEST_LEAK", "should-not-be-seen")
    job = {"preset": "provisioning", "import_variables": ["tenantId", "tier", "missing"],
           "import_json_variables": ["prices", "plan"],
           "environment": {"REGION": "eu-west-1", "DB_PASSWORD": {"env": "SBT_TEST_DB_PASSWORD"}},
           "script": 'NAMES=$(compgen -e | sort | tr "\\n" " ")\necho "password is $DB_PASSWORD"',
           "export_tenant_data": ["NAMES", "tier", "prices", "plan", "REGION"]}
    harness = start_with_jobs(tmp_path / "state", [job], tenants=False)
    try:
        with caplog.at_level(logging.INFO, logger="sbt.jobs"):
            harness.put(onboarding_request(tenant_registration_id="reg-1", tier=3, prices=[{"id": "p"}],
                                           plan={"name": "gold", "seats": 5}))
            settle(harness)
        data = harness.events.of_type("provisionSuccess")[0].detail["jobOutput"]["tenantData"]
        bash_own = {"OLDPWD", "PWD", "SHLVL", "_"}
        assert set(data.pop("NAMES").split()) - bash_own == {
            "PATH", "tenantId", "tier", "prices", "plan", "REGION", "DB_PASSWORD"}
        assert data == {"tier": "3", "prices": '[{"id":"p"}]', "plan": '{"name":"gold","seats":5}',
                        "REGION": "eu-west-1"}
        assert "password is **********" in caplog.text
        assert "s3cr3t-value" not in caplog.text
        assert app_plane(harness).store.get("provisioning", "reg-1").output == ("password is **********",)
    finally:
        harness.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1].startswith("Z")  # exited, not yet reaped


def test_a_job_past_its_timeout_is_killed_with_its_process_group_and_fails(tmp_path: Path) -> None:
    job = {"preset": "provisioning", "timeout_seconds": 0.5, "kill_grace_seconds": 0.5,
           "script": f"sleep 300 &\necho $! > {tmp_path}/child.pid\nsleep 300"}
    harness = start_with_jobs(tmp_path / "state", [job], tenants=False)
    try:
        harness.put(onboarding_request(tenant_registration_id="reg-1"))
        settle(harness)
        run = app_plane(harness).store.get("provisioning", "reg-1")
        assert run is not None and (run.status, run.error) == ("failed", "timed out after 0.5 s")
        assert len(harness.events.of_type("provisionFailure")) == 1
        child = int((tmp_path / "child.pid").read_text())
        deadline = time.monotonic() + WAIT  # a hang guard: the kill is already sent
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child)
    finally:
        harness.close()


def test_a_run_stopped_with_the_control_plane_runs_again_at_the_next_start(tmp_path: Path) -> None:
    (tmp_path / "hold").mkdir()
    first = start_with_jobs(tmp_path / "state", [_counting_job(tmp_path)], tenants=False)
    first.put(onboarding_request(tenant_registration_id="reg-1"))
    first.settle()
    deadline = time.monotonic() + WAIT
    while _runs(tmp_path) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.close()  # kills the run, gives its lease up
    assert first.events.of_type("provisionSuccess") == []
    (tmp_path / "hold").rmdir()
    second = start_with_jobs(tmp_path / "state", [_counting_job(tmp_path)], tenants=False)
    try:
        plane = app_plane(second)
        deadline = time.monotonic() + WAIT
        while (run := plane.store.get("provisioning", "reg-1")) is not None and run.status == "running" \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        settle(second)
        assert run is not None and (run.status, run.attempt) == ("succeeded", 2)
        assert len(second.events.of_type("provisionSuccess")) == 1
        assert _runs(tmp_path) == 2
    finally:
        second.close()
