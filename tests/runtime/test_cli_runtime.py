"""``sbt events ...`` and ``sbt schedule ...`` against a real uvicorn on 127.0.0.1; ``sbt serve`` as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app
from sbt_core.errors import ProviderError
from sbt_core.models import to_json
from sbt_core.testing import Harness, RecordingBilling, RecordingMetering, ingest_usage, onboarding_request

PLUGINS = {"rec": RecordingMetering, "recbill": RecordingBilling}
PROVIDERS = {"metering": {"type": "rec"}, "billing": {"type": "recbill"}}


@pytest.fixture
def plane(sbt_control_plane: Callable[..., Harness]) -> Harness:
    return sbt_control_plane(plugins=PLUGINS, config={"providers": PROVIDERS}, tenants=False)


@pytest.fixture
def url(plane: Harness) -> Iterator[str]:
    with plane.serve_http() as base:
        yield base


@pytest.fixture
def sbt(plane: Harness, url: str) -> Callable[..., tuple[int, str, str]]:
    """Run ``sbt ARGS`` in-process against the served plane (``--url`` + a token with every scope)."""
    runner = CliRunner()
    token = plane.token()

    def run(*args: str, auth: bool = True, stdin: str | None = None) -> tuple[int, str, str]:
        extra = ["--url", url, "--token", token] if auth else []
        result = runner.invoke(build_app(CliState(extra=PLUGINS, entry_points=False)), [*args, *extra], input=stdin)
        return result.exit_code, result.stdout, result.stderr

    return run


def test_events_put_one_event_reaches_its_hook(plane: Harness, sbt: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = sbt("events", "put", "ingestUsage", "--detail", '{"tenantId": "t1", "eventName": "api_calls", '
                         '"properties": {"value": 4}}', "--id", "evt-1")
    assert (code, out.strip(), err) == (0, "evt-1", "")
    plane.settle()
    [usage] = plane.provider("metering").calls["metering_ingest_usage_event"]
    assert (usage.tenant_id, usage.properties, usage.identifier) == ("t1", {"value": 4}, "evt-1")


def test_events_put_file_in_batches(plane: Harness, sbt: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    events = [ingest_usage("t1", "api_calls", i, event_id=f"u{i}") for i in range(5)]
    lines = [json.dumps(to_json(e)) for e in events]
    lines.insert(2, "")  # blank lines are skipped
    lines.append(json.dumps({"Source": "sbt.application.plane", "DetailType": "ingestUsage",
                             "Detail": json.dumps({"tenantId": "t2", "eventName": "api_calls"})}))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = sbt("events", "put", "--file", str(path), "--batch-size", "2", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["FailedEntryCount"] == 0 and [a["EventId"] for a in answer["Entries"][:5]] == [e.id for e in events]
    plane.settle()
    assert len(plane.provider("metering").calls["metering_ingest_usage_event"]) == 6


def test_events_put_reads_json_lines_from_stdin(plane: Harness, sbt: Callable[..., tuple[int, str, str]]) -> None:
    envelope = to_json(onboarding_request("t3", event_id="onb-stdin", naming="sbt_aws"))
    code, out, err = sbt("events", "put", "--file", "-", stdin=json.dumps(envelope) + "\n")
    assert (code, out.strip()) == (0, "1 put, 0 failed"), err
    plane.settle()
    assert plane.events.states("onb-stdin")["billing_create_customer"] == "delivered"


def test_events_put_reports_failed_entries_and_exits_non_zero(sbt: Callable[..., tuple[int, str, str]],
                                                              tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(to_json(ingest_usage("t1", "x"))) + "\n" + json.dumps({"detail-type": "x"}) + "\n")
    code, out, err = sbt("events", "put", "--file", str(path))
    assert code == 1
    assert out == "1 put, 1 failed\n"  # a summary, not a line per event
    assert "error: line 2: InvalidArgument" in err


def test_events_put_bad_input_is_one_line(sbt: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    code, _, err = sbt("events", "put", "ingestUsage", "--detail", "{nope")
    assert code == 1 and err.startswith("error: --detail: not valid JSON") and err.count("\n") == 1
    code, _, err = sbt("events", "put")
    assert code == 1 and err == "error: give a DETAIL_TYPE or --file (not both)\n"
    path = tmp_path / "bad.jsonl"
    path.write_text("[1]\n")
    code, _, err = sbt("events", "put", "--file", str(path))
    assert code == 1 and "bad.jsonl:1: expected a JSON object" in err


def test_events_list_and_get(plane: Harness, sbt: Callable[..., tuple[int, str, str]]) -> None:
    event = onboarding_request("t1", event_id="onb-1")
    plane.put(event)
    plane.settle()
    code, out, _ = sbt("events", "list", "--json")
    assert code == 0
    [record] = [r for r in json.loads(out) if r["event"]["id"] == "onb-1"]
    assert {d["target"]: d["state"] for d in record["deliveries"]} == {
        "billing_create_customer": "delivered", "metering_create_customer": "delivered"}
    code, out, _ = sbt("events", "get", "onb-1", "--json")
    assert code == 0 and json.loads(out)["event"]["detail"]["tenantId"] == "t1"
    code, out, _ = sbt("events", "list")
    assert code == 0 and "sbt events" in out  # a table for people; its layout follows the terminal width
    code, _, err = sbt("events", "get", "missing")
    assert code == 1 and err == "error: Event missing not found. (HTTP 404)\n"


def test_dlq_list_and_replay(plane: Harness, sbt: Callable[..., tuple[int, str, str]]) -> None:
    billing = plane.provider("billing")
    billing.fail["billing_create_customer"] = ProviderError("stripe is down")
    event = onboarding_request("t1", event_id="onb-2")
    plane.put(event)
    plane.settle()
    code, out, _ = sbt("events", "dlq", "list", "--json")
    [letter] = json.loads(out)
    assert (letter["event"]["id"], letter["target"], letter["attempts"], letter["lastError"]) == \
        ("onb-2", "billing_create_customer", 3, "stripe is down")
    code, out, _ = sbt("events", "dlq", "list")
    assert code == 0 and "sbt dead letters" in out
    code, _, err = sbt("events", "dlq", "replay")
    assert code == 1 and "--all" in err
    del billing.fail["billing_create_customer"]
    code, out, err = sbt("events", "dlq", "replay", "onb-2")
    assert code == 0, err
    assert out.splitlines() == ["replayed onb-2 to billing_create_customer", "1 dead letter(s) replayed"]
    plane.settle()
    assert [e.id for e in billing.calls["billing_create_customer"]] == ["onb-2"]
    assert sbt("events", "dlq", "list")[1].strip() == "no dead letters"
    code, _, err = sbt("events", "dlq", "replay", "onb-2")
    assert code == 1 and "no dead letter for event 'onb-2'" in err


def test_schedule_list_and_run(plane: Harness, sbt: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = sbt("schedule", "list", "--json")
    assert code == 0 and [s["hook"] for s in json.loads(out)] == ["billing_put_usage"]
    code, out, err = sbt("schedule", "run", "billing_put_usage", "--json")
    assert code == 0, err
    event_id = json.loads(out)["eventId"]
    plane.settle()
    [run] = plane.provider("billing").calls["billing_put_usage"]
    assert run.manual
    assert plane.events.states(event_id) == {"billing_put_usage": "delivered"}
    code, _, err = sbt("schedule", "run", "nothing")
    assert code == 1 and err.startswith("error: no schedule binding for 'nothing'")


def test_token_is_minted_from_the_config_when_not_given(plane: Harness, url: str, tmp_path: Path) -> None:
    config = tmp_path / "sbt.toml"
    state_dir = plane.control_plane.config.state_dir
    config.write_text(f'state_dir = "{state_dir}"\n[providers.auth]\ntype = "local"\n'
                      '[providers.metering]\ntype = "rec"\n[providers.billing]\ntype = "recbill"\n')
    runner = CliRunner()
    app = build_app(CliState(extra=PLUGINS, entry_points=False))
    result = runner.invoke(app, ["schedule", "list", "--json", "--config", str(config), "--url", url])
    assert result.exit_code == 0, result.stderr
    # A bad token is refused by the server, in one line.
    result = runner.invoke(app, ["schedule", "list", "--url", url, "--token", "nope"])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "(HTTP 401)" in result.stderr


def test_no_token_without_the_local_auth_provider_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "sbt.toml"
    config.write_text('[providers.auth]\ntype = "none"\n[providers.metering]\ntype = "rec"\n')
    result = CliRunner().invoke(build_app(CliState(extra=PLUGINS, entry_points=False)),
                                ["events", "list", "--config", str(config), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert result.stderr == ("error: no token: pass --token or set SBT_TOKEN (with no auth provider configured, sbt "
                             "cannot mint one; it needs the event/event_read scope)\n")


def test_unreachable_server_is_one_line() -> None:
    result = CliRunner().invoke(build_app(CliState(entry_points=False)),
                                ["events", "list", "--url", "http://127.0.0.1:9", "--token", "t"])
    assert result.exit_code == 1
    assert result.stderr == ("error: cannot reach the control plane at http://127.0.0.1:9 (ConnectError); "
                             "is 'sbt serve' running? (--url / SBT_URL)\n")


def test_sbt_serve_runs_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """The real command in its own process: listens on loopback, answers, drains and exits 0 on SIGTERM."""
    config = tmp_path / "sbt.toml"
    config.write_text('[server]\nport = 0\n[providers.auth]\ntype = "local"\n')
    env = {**os.environ, "SBT_LOAD_PLUGINS": "", "SBT_CONFIG": str(config)}  # built-ins only
    proc = subprocess.Popen([sys.executable, "-m", "sbt_core.cli", "serve", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline()]
        assert banner[0].startswith("sbt control plane listening on http://127.0.0.1:"), \
            proc.stderr.read() if proc.stderr else ""
        while "press Ctrl-C" not in banner[-1] and banner[-1]:
            banner.append(proc.stdout.readline())
        base = banner[0].split()[-1]
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert any("TOKEN=$(sbt token)" in line for line in banner)  # the admin token hint (config from SBT_CONFIG)
    assert f"export SBT_URL={base}   #" in banner[1]  # so the next client command reaches this port
    assert out.strip() == "sbt control plane stopped"


def test_sbt_serve_on_a_port_in_use_is_one_line_naming_the_port(tmp_path: Path) -> None:
    import socket

    config = tmp_path / "sbt.toml"
    config.write_text('[providers.auth]\ntype = "local"\n')
    env = {**os.environ, "SBT_LOAD_PLUGINS": "", "SBT_CONFIG": str(config)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "sbt_core.cli", "serve", "--host", "127.0.0.1", "--port",
                               str(port)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert done.stderr == (f"error: port {port} on 127.0.0.1 is already in use; choose another with --port "
                           f"(e.g. sbt serve --port {port + 1})\n")
    assert not (tmp_path / ".sbt").exists()  # refused before anything started


@pytest.mark.parametrize(("detail", "field"), [('{"value": NaN}', "--detail.value"),
                                               ('{"v": [1e999]}', "--detail.v[0]"),
                                               ('{"s": "\\ud800"}', "--detail.s"),
                                               ('{"tenantId": "t\\u0000"}', "detail.tenantId")])
def test_events_put_refuses_what_the_input_policy_refuses_in_one_line(
        plane: Harness, sbt: Callable[..., tuple[int, str, str]], detail: str, field: str) -> None:
    before = len(plane.bus.recent(1000))
    code, _, err = sbt("events", "put", "ingestUsage", "--detail", detail)
    assert code == 1 and field in err and err.count("\n") == 1, err
    assert len(plane.bus.recent(1000)) == before
