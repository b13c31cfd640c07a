"""``[[jobs]]`` through the config machinery (every problem at once, dotted paths; secrets never printed)
and ``sbt jobs list|runs``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sbt_core.app_plane import AppPlane, open_app_plane
from sbt_core.cli import CliState, build_app
from sbt_core.config import load_config
from sbt_core.plugins import discover
from sbt_core.runtime.contracts import PutEventsEntryResult
from sbt_core.testing.events import onboarding_request

from ._jobs import WAIT

runner = CliRunner(env={"COLUMNS": "250"})


def _cli(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(build_app(CliState(entry_points=False)), list(args))


def test_config_validate_reports_every_job_problem_with_its_dotted_path(tmp_path: Path) -> None:
    (tmp_path / "sbt.toml").write_text("""
[[jobs]]
preset = "provisionin"

[[jobs]]
preset = "provisioning"
script = "true"
script_file = "provision.sh"
import_variables = ["tenant-id"]
timeout_seconds = 0

[[jobs]]
name = "dns"
kind = "terraform"
incoming_event = "onboardingRequest"
success_event = "dnsReady"
failure_event = "dnsFailed"

[[jobs]]
preset = "deprovisioning"
script = "true"
retries = 3

[[jobs]]
incoming_event = "x"
success_event = "y"
failure_event = "z"
script = "true"

[app_plane]
max_concurrent_jobs = 0
database_url = "mysql://db/jobs"
""")
    result = _cli("config", "validate", "--config", str(tmp_path / "sbt.toml"))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: jobs[0].preset: must be one of 'provisioning', 'deprovisioning' (got 'provisionin')",
        "error: jobs[1].import_variables: must be shell variable names (got 'tenant-id')",
        "error: jobs[1].timeout_seconds: must be > 0 (got 0.0)",
        "error: jobs[1].script: give exactly one of script (inline bash) and script_file",
        "error: jobs[2].kind: unknown job kind 'terraform'; installed: script",
        "error: jobs[3]: unknown key(s) retries; valid keys: environment, export_tenant_data, "
        "export_tenant_registration_data, failure_event, failure_status, import_json_variables, import_variables, "
        "incoming_event, incoming_source, job_identifier_key, name, preset, success_event, timeout_seconds; "
        "and of kind 'script': script, script_file, post_script, bash, working_dir, kill_grace_seconds",
        "error: jobs[4].name: required (letters, digits, '_', '.', '-'); or give a preset",
        "error: app_plane.database_url: unsupported database 'mysql'; use one of sqlite, postgresql",
        "error: app_plane.max_concurrent_jobs: must be >= 1 (got 0)",
    ]


def test_config_show_never_prints_a_job_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBT_TEST_DB_PASSWORD", "pw-from-env")
    (tmp_path / "sbt.toml").write_text("""
[[jobs]]
preset = "provisioning"
script = "true"
environment = { REGION = "eu", DB_PASSWORD = { env = "SBT_TEST_DB_PASSWORD" }, API_TOKEN = "tok-literal" }
""")
    result = _cli("config", "show", "--json", "--config", str(tmp_path / "sbt.toml"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["jobs"][0]["environment"] == {
        "REGION": "eu", "DB_PASSWORD": {"env": "SBT_TEST_DB_PASSWORD"}, "API_TOKEN": "**********"}
    assert "pw-from-env" not in result.stdout and "tok-literal" not in result.stdout


def test_jobs_list_and_runs_show_the_jobs_and_their_runs_with_secrets_redacted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBT_TEST_DB_PASSWORD", "pw-from-env")
    config = tmp_path / "sbt.toml"
    config.write_text("""
[[jobs]]
preset = "provisioning"
environment = { DB_PASSWORD = { env = "SBT_TEST_DB_PASSWORD" } }
script = '''
echo "connecting with $DB_PASSWORD"
URL="postgresql://app:$DB_PASSWORD@db/tenant"
DB_TOKEN=abc
NAME=tenant_1
'''
export_tenant_data = ["URL", "NAME"]
export_tenant_registration_data = ["DB_TOKEN"]

[[jobs]]
preset = "deprovisioning"
script = "true"
""")
    catalog = discover(entry_points=False)
    plane: AppPlane = open_app_plane(load_config(catalog, config), catalog,
                                     publish=lambda events: [PutEventsEntryResult(event_id=e.id) for e in events])
    plane.start()
    try:
        plane.deliver(plane.jobs["provisioning"], onboarding_request(tenant_registration_id="reg-1"))
        assert plane.join(WAIT)
    finally:
        plane.close()

    listed = _cli("jobs", "list", "--json", "--config", str(config))
    assert listed.exit_code == 0, listed.output
    jobs = {job["name"]: job for job in json.loads(listed.stdout)}
    assert jobs["provisioning"]["trigger"] == {"detailType": "onboardingRequest", "source": "sbt.control.plane"}
    assert (jobs["provisioning"]["successEvent"], jobs["provisioning"]["failureEvent"]) == (
        "provisionSuccess", "provisionFailure")
    assert jobs["provisioning"]["lastRun"]["jobId"] == "reg-1"
    assert jobs["deprovisioning"]["lastRun"] is None

    runs = _cli("jobs", "runs", "--json", "--config", str(config))
    assert runs.exit_code == 0, runs.output
    (run,) = json.loads(runs.stdout)
    assert (run["job"], run["jobId"], run["status"], run["exitCode"], run["attempt"]) == (
        "provisioning", "reg-1", "succeeded", 0, 1)
    assert run["durationSeconds"] >= 0
    assert run["jobOutput"] == {"tenantData": {"URL": "postgresql://app:**********@db/tenant", "NAME": "tenant_1"},
                                "tenantRegistrationData": {"DB_TOKEN": "**********"}}
    assert run["output"] == ["connecting with **********"]
    assert "pw-from-env" not in runs.stdout
    table = _cli("jobs", "runs", "--config", str(config))
    assert table.exit_code == 0 and "reg-1" in table.stdout and "pw-from-env" not in table.stdout
    assert "provisioning" in _cli("jobs", "list", "--config", str(config)).stdout
