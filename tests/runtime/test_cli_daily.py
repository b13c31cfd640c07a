"""The CLI for daily use (issue 25): tables read at 80 columns with whole ids, client commands that need only a
URL and a token, and a 401 that says where the token's key came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app
from sbt_core.errors import ProviderError
from sbt_core.testing import Harness, RecordingBilling, RecordingMetering, ingest_usage, onboarding_request

PLUGINS = {"rec": RecordingMetering, "recbill": RecordingBilling}
PROVIDERS = {"metering": {"type": "rec"}, "billing": {"type": "recbill"}}
#: Ids as long as a user may choose (uuids are 36): a table may never cut or wrap them.
LONG = "evt-{}-0123456789abcdef0123456789abcdef0123"


@pytest.fixture
def plane(sbt_control_plane: Callable[..., Harness]) -> Harness:
    return sbt_control_plane(plugins=PLUGINS, config={"providers": PROVIDERS})


@pytest.fixture
def url(plane: Harness) -> Iterator[str]:
    with plane.serve_http() as base:
        yield base


def _app() -> object:
    return build_app(CliState(extra=PLUGINS, entry_points=False))


def _at_80(*args: str) -> str:
    result = CliRunner(env={"COLUMNS": "80"}).invoke(_app(), list(args))  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    too_wide = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert not too_wide, "\n".join(too_wide)
    return result.stdout


def test_every_table_fits_80_columns_with_whole_ids(plane: Harness, url: str, tmp_path: Path) -> None:
    common = ["--url", url, "--token", plane.token()]
    plane.provider("billing").fail["billing_create_customer"] = ProviderError("stripe is down: " + "x" * 120)
    events = [ingest_usage("a-tenant-with-a-long-name", "api_calls", i, event_id=LONG.format(i)) for i in range(3)]
    plane.put(*events, onboarding_request("t1", event_id=LONG.format("onb")))
    plane.settle()

    out = _at_80("events", "list", "--limit", "2", *common)
    assert LONG.format(2) in out and LONG.format("onb") in out
    assert out.splitlines()[-1] == "2 of 4 events (--limit for more)"
    assert _at_80("events", "list", *common).splitlines()[-1] == "4 of 4 events"
    assert LONG.format("onb") in _at_80("events", "dlq", "list", *common)
    get = _at_80("events", "get", LONG.format("onb"), *common)
    assert "billing_create_customer" in get and "dead_lettered" in get
    assert "billing_put_usage" in _at_80("schedule", "list", *common)

    ids = []
    for name in ("acme", "a-tenant-with-a-rather-long-name-that-goes-on-and-on-and-on"):
        result = CliRunner().invoke(_app(), ["tenants", "register", "--set", f"tenantName={name}", "--json",  # type: ignore[arg-type]
                                             *common])
        ids.append(json.loads(result.stdout))
    registrations = _at_80("tenants", "list", *common)
    assert all(i["tenantRegistrationId"] in registrations for i in ids)
    assert [line.split()[1] for line in registrations.splitlines() if line.startswith(ids[0]["tenantRegistrationId"])] \
        == ["active"]  # registrationStatus is not set until the application plane reports: the status says so
    tenants = _at_80("tenants", "list", "--tenants", *common)
    assert all(i["tenantId"] in tenants for i in ids) and "acme" in tenants
    wide = CliRunner(env={"COLUMNS": "80"}).invoke(_app(), ["tenants", "list", "--wide", *common])  # type: ignore[arg-type]
    assert all(f'{i["tenantRegistrationId"]}  ' in wide.stdout and i["tenantId"] in wide.stdout for i in ids)

    config = tmp_path / "sbt.toml"
    config.write_text('[providers.metering]\ntype = "rec"\n[providers.billing]\ntype = "recbill"\n')
    for args in (["plugins", "list"], ["plugins", "list", "--hook", "billing_put_usage"], ["bindings"]):
        _at_80(*args, "--config", str(config))
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'state_dir = "{tmp_path / "jobs-state"}"\n[[jobs]]\npreset = "provisioning"\n'
                    'name = "provision-a-tenant-with-a-rather-long-job-name"\nscript = "true"\n')
    assert "provision-a-tenant-with-a-rather-long-job-name" in _at_80("jobs", "list", "--config", str(jobs))


def test_a_client_command_needs_neither_other_providers_secrets_nor_creates_state(plane: Harness, url: str,
                                                                                  tmp_path: Path) -> None:
    """A read aimed at a server from a folder whose sbt.toml names a secret unset here, and no `.sbt/`."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "sbt.toml").write_text('[providers.auth]\ntype = "local"\n'
                                     '[providers.billing]\ntype = "recbill"\napi_key = { env = "SBT_TEST_UNSET" }\n'
                                     '[tenants]\ndatabase_url = { env = "SBT_TEST_UNSET" }\n')
    runner = CliRunner(env={"SBT_TEST_UNSET": None, "SBT_URL": url, "SBT_TOKEN": plane.token()})
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        listed = runner.invoke(_app(), ["events", "list", "--json"])  # type: ignore[arg-type]
        assert listed.exit_code == 0, listed.output
        # Without a token, minting needs the local key: none here, so one line, and nothing is created.
        no_key = CliRunner(env={"SBT_TEST_UNSET": None, "SBT_URL": url, "SBT_TOKEN": None}).invoke(
            _app(), ["tenants", "list"])  # type: ignore[arg-type]
    finally:
        os.chdir(cwd)
    assert no_key.exit_code == 1 and no_key.stderr.count("\n") == 1
    assert no_key.stderr.startswith("error: no token: no signing key at ")
    assert f".sbt{os.sep}local{os.sep}jwt-signing-key.pem (this folder holds no control plane's state)" in no_key.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["sbt.toml"]


def test_a_401_says_which_key_the_token_was_minted_from(plane: Harness, url: str, tmp_path: Path,
                                                        sbt_control_plane: Callable[..., Harness]) -> None:
    other = sbt_control_plane(plugins=PLUGINS, config={"providers": PROVIDERS}, tenants=False)  # another key
    state_dir = other.control_plane.config.state_dir
    config = tmp_path / "sbt.toml"
    config.write_text(f'state_dir = "{state_dir}"\n[providers.auth]\ntype = "local"\n')
    result = CliRunner(env={"SBT_URL": None, "SBT_TOKEN": None}).invoke(
        _app(), ["events", "list", "--config", str(config), "--url", url])  # type: ignore[arg-type]
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "(HTTP 401); the token was minted from " + str(state_dir / "local" / "jwt-signing-key.pem") in result.stderr
    assert "--token / SBT_TOKEN" in result.stderr


_MEASURED = """
import resource, sys
sys.argv = ["sbt", *sys.argv[1:]]
try:
    from sbt_core.cli import main
    main()
finally:
    print(f"maxrss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
"""


def _put_file_peak_rss(path: Path, url: str, token: str) -> tuple[int, list[str]]:
    """Peak resident memory (KiB) of `sbt events put --file PATH` in its own process, and its stderr lines."""
    env = {**os.environ, "SBT_LOAD_PLUGINS": "", "SBT_URL": url, "SBT_TOKEN": token}
    done = subprocess.run([sys.executable, "-c", _MEASURED, "events", "put", "--file", str(path),
                           "--batch-size", "500"], capture_output=True, text=True, env=env, timeout=300)
    *lines, last = done.stderr.splitlines()
    assert done.returncode == 0, done.stderr
    return int(last.removeprefix("maxrss_kb=")), lines


def test_events_put_file_streams_in_constant_memory_and_reports_progress_lines(plane: Harness, url: str,
                                                                              tmp_path: Path) -> None:
    """A file 12 times larger costs the client no more memory: a whole-file read of the large one would hold
    its 18 MB of text and 12,000 parsed events (as much again) at once."""
    def write(path: Path, count: int) -> Path:
        with path.open("w") as out:
            for i in range(count):
                detail = {"tenantId": f"tenant-{i % 7}", "note": "x" * 1500, "n": i}
                envelope = {"detail-type": "noBindingMatches", "source": "test.app", "detail": detail}
                out.write(json.dumps(envelope) + "\n")
        return path

    token = plane.token()
    small, _ = _put_file_peak_rss(write(tmp_path / "small.jsonl", 1_000), url, token)
    large, progress = _put_file_peak_rss(write(tmp_path / "large.jsonl", 12_000), url, token)
    assert large - small < 15 * 1024, f"{small} KiB for 1,000 events, {large} KiB for 12,000"
    # Not on a terminal: progress as plain lines on stderr, not a bar.
    assert progress == ["put 10000 of 12000 events"]
