"""The README cannot rot: its set-up commands are what CI runs, and its walkthrough runs verbatim
against a real `sbt serve` (only the port is changed, to a free one)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sbt_core.auth_local import mint_token
from sbt_core.config import Config, load_config
from sbt_core.models import scopes
from sbt_core.plugins import discover
from sbt_core.tenants.client import TenantClient
from sbt_core.testing.waiting import wait_for

from ._serve import clean_environ, sbt_serve

ROOT = Path(__file__).resolve().parents[2]
#: The metric families of docs/operating.md.
METRIC_FAMILIES = ("sbt_http_requests", "sbt_http_request_duration_seconds", "sbt_events_accepted",
                   "sbt_events_delivered", "sbt_events_retried", "sbt_events_dead_lettered", "sbt_bus_queue_depth",
                   "sbt_bus_oldest_message_age_seconds", "sbt_schedule_firings", "sbt_metering_ingested_events",
                   "sbt_metering_refused_events", "sbt_provider_hook_duration_seconds")
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, flags=re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def _commands(section: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", _section(section), flags=re.S)


def walkthrough_config() -> str:
    """The walkthrough's ``sbt.toml``, as the README shows it."""
    blocks = re.findall(r"```toml\n(.*?)```", _section("Five-minute walkthrough"), flags=re.S)
    assert len(blocks) == 1, "the walkthrough shows one sbt.toml"
    return str(blocks[0])


def test_the_two_setup_commands_are_what_ci_runs() -> None:
    run, test = (block.strip() for block in _commands("Set up and run"))
    assert run.endswith("&& sbt serve")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci, ".ci/run must run the README's test command verbatim"
    installed = set(re.findall(r"-e (\S+)", run))
    required = {line.split()[-1].split("[")[0] for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
                if line.startswith("-e ")}
    assert installed <= required | {"."}, "the run command installs only what the test setup installs too"


def _config(folder: Path) -> Config:
    return load_config(discover(), folder / "sbt.toml")


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
def test_the_walkthrough_works_verbatim(tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "sbt.toml").write_text(walkthrough_config())
    script = "\n".join(_commands("Five-minute walkthrough"))
    assert "http://127.0.0.1:8080" in script
    with sbt_serve(tmp_path) as url:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace("http://127.0.0.1:8080", url)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300,
                                env=clean_environ())
        assert result.returncode == 0, result.stdout + result.stderr
        registered = json.loads(next(line for line in result.stdout.splitlines() if "tenantRegistrationId" in line))
        assert registered["data"]["message"] == "Tenant registration initiated"
        # The provisioning job ran in the background of the walkthrough.
        with TenantClient(url, mint_token([scopes.TENANT_READ], config=_config(tmp_path))) as tenants:
            wait_for(lambda: tenants.get_registration(registered["data"]["tenantRegistrationId"])
                     .get("registrationStatus") == "created", "the provisioning job to succeed")
            tenant = tenants.get_tenant(registered["data"]["tenantId"])
        assert tenant["TENANT_DB"] == "db_" + registered["data"]["tenantId"].replace("-", "_")
        assert "sbt job runs" in result.stdout
        # What an operator scrapes after the walkthrough (the server answers loopback clients without a token).
        scraped = list(text_string_to_metric_families(httpx.get(f"{url}/metrics").text))
    assert {family.name for family in scraped} >= set(METRIC_FAMILIES)
    moved = {family.name for family in scraped if any(sample.value > 0 for sample in family.samples)}
    # Nothing failed and no schedule ran in the walkthrough, and the queues are empty once it is done: those
    # families are there at zero (tests/runtime/test_metrics.py moves each of them).
    assert moved >= set(METRIC_FAMILIES) - {"sbt_events_retried", "sbt_events_dead_lettered",
                                             "sbt_metering_refused_events", "sbt_schedule_firings",
                                             "sbt_bus_queue_depth", "sbt_bus_oldest_message_age_seconds"}
    assert "sbt_metering_ingested_events_total" in result.stdout
    usage = json.loads(next(line for line in result.stdout.splitlines() if '"windowStart"' in line))["data"]

    expected: dict[tuple[str, str], float] = defaultdict(float)
    acme = next(line.split()[0] for line in result.stdout.splitlines() if " acme " in f" {line} ")
    expected[(acme, "eu")] += 5  # the single event sent with curl, for the registered tenant
    for line in (ROOT / "examples" / "usage.jsonl").read_text().splitlines():
        detail = json.loads(line)["detail"]
        expected[(detail["tenantId"], detail["properties"]["region"])] += detail["properties"]["value"]
    assert {(row["tenantId"], row["groups"]["region"]): row["value"] for row in usage} == expected
    assert all(row["windowEnd"] > row["windowStart"] for row in usage)
    assert "metering_fetch_usage" in result.stdout  # sbt bindings printed its table
    # The walkthrough's config names no provider: local auth and memory metering run, and the server says so.
    assert "[providers." not in walkthrough_config()
    assert ("providers: auth local (embedded default), billing none, metering memory (embedded default)"
            in (tmp_path / "sbt-serve.log").read_text())
