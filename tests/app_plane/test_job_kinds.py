"""A third party's job kind: found like a provider (here registered without installing), listed as kind
``job``, validated and run by the core around it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from typer.testing import CliRunner

from sbt_core import hookimpl
from sbt_core.cli import CliState, build_app
from sbt_core.errors import ConfigError
from sbt_core.job_kind import JobKind, JobRequest, JobResult
from sbt_core.plugins import Kind, Status, discover
from sbt_core.testing.events import onboarding_request

from ._jobs import app_plane, settle, start_with_jobs


@attrs.frozen
class TemplateSettings:
    """``outputs``: each exported name and a ``str.format`` template over the job's environment."""

    outputs: dict[str, str] = attrs.field(factory=dict)


class TemplateJob(JobKind):
    """Exports values computed from the environment, without a process (what a Terraform kind would
    read from ``terraform output``)."""

    settings_class = TemplateSettings

    def check(self, settings: Any, base_dir: Path) -> list[str]:
        return [] if settings.outputs else ["outputs: name at least one output"]

    def run(self, request: JobRequest) -> JobResult:
        if request.environment.get("tier") == "broken":
            raise RuntimeError("the template engine broke")
        outputs = request.settings.outputs
        return JobResult(exit_code=0, exported={name: outputs[name].format(**request.environment)
                                                for name in request.export if name in outputs})


class HookedJob(JobKind):
    def run(self, request: JobRequest) -> JobResult:
        return JobResult()

    @hookimpl
    def metering_fetch_meter(self, meter_id: str) -> Any:
        return None


JOB = {"preset": "provisioning", "kind": "template", "import_variables": ["tenantId", "tier"],
       "outputs": {"SCHEMA": "t_{tier}_{tenantId}"}, "export_tenant_data": ["SCHEMA"]}


def test_a_third_party_kind_runs_a_job_and_its_exports_reach_the_outcome(tmp_path: Path) -> None:
    harness = start_with_jobs(tmp_path, [JOB], tenants=False, plugins={"template": TemplateJob})
    try:
        harness.put(onboarding_request(tenant_id="t1", tenant_registration_id="reg-1", tier="gold"),
                    onboarding_request(tenant_id="t2", tenant_registration_id="reg-2", tier="broken"))
        settle(harness)
        (success,) = harness.events.of_type("provisionSuccess")
        assert success.detail == {"tenantRegistrationId": "reg-1",
                                  "jobOutput": {"tenantData": {"SCHEMA": "t_gold_t1"}, "tenantRegistrationData": {}}}
        (failure,) = harness.events.of_type("provisionFailure")
        assert failure.detail["tenantRegistrationId"] == "reg-2"
        run = app_plane(harness).store.get("provisioning", "reg-2")
        assert run is not None and run.error == "job kind 'template' failed: RuntimeError: the template engine broke"
    finally:
        harness.close()


def test_a_job_kind_is_listed_as_kind_job_and_validates_its_own_keys(tmp_path: Path) -> None:
    catalog = discover(entry_points=False, extra={"template": TemplateJob, "hooked": HookedJob})
    record = catalog.get("template")
    assert record is not None and (record.status, record.kind) == (Status.LOADED, Kind.JOB)
    assert catalog.job_kinds() == ["script", "template"]
    hooked = catalog.get("hooked")
    assert hooked is not None and hooked.status is Status.FAILED
    assert "a job kind cannot implement interface hooks" in str(hooked.error)
    result = CliRunner().invoke(build_app(CliState(extra={"template": TemplateJob}, entry_points=False)),
                                ["plugins", "list", "--json"])
    assert '"kind": "job"' in result.stdout

    with pytest.raises(ConfigError) as caught:
        start_with_jobs(tmp_path, [{**JOB, "outputs": {}}], tenants=False, plugins={"template": TemplateJob})
    assert list(caught.value.problems) == ["jobs[0].outputs: name at least one output"]
