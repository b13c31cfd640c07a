"""The ControlPlane assembled from config with test providers, through the sbt pytest fixtures."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from sbt_core import ProviderError, hookimpl
from sbt_core.errors import StartupError
from sbt_core.models import CONTROL_PLANE_SOURCE, to_json, utcnow
from sbt_core.runtime.control_plane import ControlPlane
from sbt_core.testing import (
    Harness,
    RecordingBilling,
    RecordingMetering,
    ingest_usage,
    onboarding_request,
    tenant_user_created,
)
from sbt_core.triggers import EventTrigger

Factory = Callable[..., Harness]


PLUGINS = {"rec": RecordingMetering, "flaky": RecordingBilling}
CONFIG = {"providers": {"metering": {"type": "rec"}, "billing": {"type": "flaky"}}}


@pytest.fixture
def plane(sbt_control_plane: Factory) -> Harness:
    return sbt_control_plane(plugins=PLUGINS, config=CONFIG)


def test_start_builds_and_wires_everything(plane: Harness) -> None:
    cp = plane.control_plane
    assert isinstance(cp, ControlPlane)
    targets = {t.name: t.kind for t in cp.bus.targets()}
    assert targets["metering_ingest_usage_event"] == "binding"
    assert targets["billing_create_customer"] == "binding"
    assert targets["billing_put_usage"] == "schedule"
    assert targets["tenants.provisionSuccess"] == "subscriber"  # the tenant registry subscribed before start
    assert [s.hook for s in cp.scheduler.schedules] == ["billing_put_usage"]
    assert plane.provider("metering").started
    assert cp.auth_settings is not None and cp.admin_user is not None
    assert cp.admin_user.user_name == cp.config.admin.name
    assert cp.providers.auth is not None
    assert cp.providers.auth.fetch_user(cp.config.admin.name).email == cp.config.admin.email


def test_events_reach_their_hooks_and_providers_publish_through_the_bus(plane: Harness) -> None:
    usage = ingest_usage("t1", "api_calls", 3)
    onboarding = onboarding_request("t1")
    plane.put(usage, onboarding)
    plane.settle()
    [ingested] = plane.provider("metering").calls["metering_ingest_usage_event"]
    assert (ingested.tenant_id, ingested.properties, ingested.identifier) == ("t1", {"value": 3}, usage.id)
    assert plane.events.states(usage) == {"metering_ingest_usage_event": "delivered", "billing_ingest": "delivered"}
    assert [e.detail["tenantId"] for e in plane.provider("billing").calls["billing_create_customer"]] == ["t1"]
    [success] = plane.events.of_type("billingSuccess")  # published by the provider through its context
    assert success.detail == {"tenantId": "t1"}


def test_published_events_follow_the_naming_config(sbt_control_plane: Factory) -> None:
    plane = sbt_control_plane(plugins=PLUGINS, config={**CONFIG, "events": {"naming": "sbt_aws"}}, tenants=False)
    plane.put(onboarding_request("t1", naming="sbt_aws"))  # prefixed input is routed like the bare name
    plane.settle()
    assert len(plane.provider("billing").calls["billing_create_customer"]) == 1
    assert [e.detail_type for e in plane.events.of_type("billingSuccess")] == ["sbt_aws_billingSuccess"]


def test_failing_provider_dead_letters_then_replays_once_fixed(plane: Harness) -> None:
    billing = plane.provider("billing")
    billing.fail["billing_create_customer"] = ProviderError("billing backend down")
    event = onboarding_request("t9")
    plane.put(event)
    plane.settle()
    assert plane.events.states(event) == {"billing_create_customer": "dead_lettered",
                                          "metering_create_customer": "delivered"}
    [letter] = plane.bus.dead_letters()
    assert (letter.attempts, letter.last_error) == (3, "billing backend down")
    del billing.fail["billing_create_customer"]
    plane.bus.replay(event_id=event.id)
    plane.settle()
    assert [e.id for e in billing.calls["billing_create_customer"]] == [event.id]
    assert plane.events.states(event) == {"billing_create_customer": "delivered",
                                          "metering_create_customer": "delivered"}
    assert len(plane.provider("metering").calls["metering_create_customer"]) == 1  # the healthy binding: once


def test_scheduled_hook_fires_on_tick(plane: Harness) -> None:
    due = plane.control_plane.scheduler.next_wake()
    assert due is not None
    [run_event] = plane.tick(due + timedelta(seconds=1))
    plane.settle()
    [run] = plane.provider("billing").calls["billing_put_usage"]
    assert run.hook == "billing_put_usage" and run.expression == "rate(24 hours)" and not run.manual
    assert plane.events.states(run_event) == {"billing_put_usage": "delivered"}


def test_schedule_override_from_config(sbt_control_plane: Factory) -> None:
    config = {**CONFIG, "bindings": [{"hook": "billing_put_usage", "schedule": "rate(1 minute)"}]}
    plane = sbt_control_plane(plugins=PLUGINS, config=config, tenants=False)
    [schedule] = plane.control_plane.scheduler.schedules
    assert schedule.trigger.expression == "rate(1 minute)"
    assert schedule.next_due - utcnow() <= timedelta(minutes=1)


def test_stop_drains_in_flight_events(sbt_control_plane: Factory) -> None:
    plane = sbt_control_plane(plugins=PLUGINS, config=CONFIG, tenants=False)
    billing = plane.provider("billing")
    gate = billing.gate["billing_create_user"] = threading.Event()
    plane.put(*(tenant_user_created("t1", f"u{i}") for i in range(3)))
    closer = threading.Thread(target=plane.close)
    closer.start()
    gate.set()
    closer.join(10)
    assert [e.detail["userId"] for e in billing.calls["billing_create_user"]] == ["u0", "u1", "u2"]
    assert plane.provider("metering").stopped  # sbt_shutdown ran after the drain
    assert plane.put(ingest_usage("t1", "x"))[0].error_code == "BusClosed"


def test_a_provider_failing_at_startup_stops_start(sbt_control_plane: Factory) -> None:
    class Broken(RecordingMetering):
        @hookimpl
        def sbt_startup(self) -> None:
            raise RuntimeError("cannot open the database")

    with pytest.raises(StartupError, match="sbt_startup.*cannot open the database"):
        sbt_control_plane(plugins={"rec": Broken}, config={"providers": {"metering": {"type": "rec"}}}, tenants=False)


def test_components_register_routes_and_subscribers_before_start(sbt_control_plane: Factory) -> None:
    plane = sbt_control_plane(plugins=PLUGINS, config=CONFIG, tenants=False, start=False)
    seen: list[str] = []

    class Component:
        routes: list[Any] = []
        started = closed = False

        def attach(self, bus: Any) -> None:
            bus.subscribe("audit", EventTrigger("onboardingRequest", CONTROL_PLANE_SOURCE), lambda e: seen.append(e.id))

        def start(self) -> None:
            self.started = True

        def close(self) -> None:
            self.closed = True

    component = Component()
    plane.control_plane.add_component(component)
    plane.control_plane.open()
    assert component.started
    event = onboarding_request("t1")
    plane.put(event)
    plane.settle()
    assert seen == [event.id]
    plane.close()
    assert component.closed
    with pytest.raises(RuntimeError):
        plane.control_plane.add_component(component)


# --- through the HTTP app -----------------------------------------------------------------------------------

def test_post_events_reaches_the_ingest_hook(plane: Harness) -> None:
    client = plane.client("event/event_write", "event/event_read")
    usage = ingest_usage("t1", "api_calls", 5)
    response = client.post("/events", json=[to_json(usage)])
    assert response.status_code == 200, response.text
    assert response.json()["Entries"] == [{"EventId": usage.id}]
    plane.settle()
    assert [u.properties["value"] for u in plane.provider("metering").calls["metering_ingest_usage_event"]] == [5]
    record = client.get(f"/events/{usage.id}").json()["data"]
    assert {d["target"]: d["state"] for d in record["deliveries"]} == \
        {"metering_ingest_usage_event": "delivered", "billing_ingest": "delivered"}


def test_dead_letter_routes_list_and_replay(plane: Harness) -> None:
    billing = plane.provider("billing")
    billing.fail["billing_create_customer"] = ProviderError("billing backend down")
    event = onboarding_request("t7")
    plane.put(event)
    plane.settle()
    reader = plane.client("event/event_read")
    [letter] = reader.get("/dead-letters").json()["data"]
    assert (letter["event"]["id"], letter["target"], letter["attempts"], letter["lastError"]) == \
        (event.id, "billing_create_customer", 3, "billing backend down")
    assert reader.post("/dead-letters/replay", json={}).status_code == 403  # replay needs event_write
    writer = plane.client("event/event_write")
    assert writer.post("/dead-letters/replay", json={"eventId": "nope"}).status_code == 404
    assert writer.post("/dead-letters/replay", json={"bogus": 1}).status_code == 400
    del billing.fail["billing_create_customer"]
    replayed = writer.post("/dead-letters/replay", json={"eventId": event.id})
    assert replayed.status_code == 200 and [d["target"] for d in replayed.json()["data"]] == ["billing_create_customer"]
    plane.settle()
    assert [e.id for e in billing.calls["billing_create_customer"]] == [event.id]
    assert reader.get("/dead-letters").json()["data"] == []


def test_schedule_routes_list_and_run(plane: Harness) -> None:
    reader = plane.client("event/event_read")
    [schedule] = reader.get("/schedules").json()["data"]
    assert (schedule["hook"], schedule["expression"], schedule["fired"]) == ("billing_put_usage", "rate(24 hours)", 0)
    writer = plane.client("event/event_write")
    response = writer.post("/schedules/billing_put_usage/run")
    assert response.status_code == 202, response.text
    plane.settle()
    [run] = plane.provider("billing").calls["billing_put_usage"]
    assert run.manual
    assert response.json()["data"]["eventId"] == plane.events.events[-1].id
    assert writer.post("/schedules/metering_nothing/run").status_code == 404
    assert plane.client(authenticated=False).get("/schedules").status_code == 401


def test_openapi_documents_the_dead_letter_and_schedule_routes(plane: Harness) -> None:
    from openapi_spec_validator import validate

    document = plane.client(authenticated=False).get("/openapi.json").json()
    validate(document)
    operations = {(path, method): op["operationId"] for path, item in document["paths"].items()
                  for method, op in item.items()}
    assert operations[("/dead-letters", "get")] == "list_dead_letters"
    assert operations[("/dead-letters/replay", "post")] == "replay_dead_letters"
    assert operations[("/schedules", "get")] == "list_schedules"
    assert operations[("/schedules/{hook}/run", "post")] == "run_schedule"
    assert "DeadLetter" in document["components"]["schemas"]


def test_tune_gc_for_serving_freezes_start_up_and_raises_the_young_threshold() -> None:
    import gc

    from sbt_core.runtime.control_plane import SERVING_GC_THRESHOLD, tune_gc_for_serving

    before = gc.get_threshold()
    try:
        tune_gc_for_serving()
        assert gc.get_threshold() == (SERVING_GC_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize("lifecycle", [True, False])
def test_serve_tunes_the_collector_only_when_it_owns_the_process(sbt_control_plane: Factory,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  lifecycle: bool) -> None:
    import asyncio

    from sbt_core.runtime import control_plane as module

    tuned: list[bool] = []
    monkeypatch.setattr(module, "tune_gc_for_serving", lambda: tuned.append(True))
    harness = sbt_control_plane(plugins=PLUGINS, config=CONFIG, start=not lifecycle)
    cp = harness.control_plane
    ready = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(cp.serve("127.0.0.1", 0, log_level="warning",
                                                                  ready=lambda url: ready.set(), lifecycle=lifecycle)))
    thread.start()
    try:
        assert ready.wait(20)
    finally:
        cp.request_exit()
        thread.join(20)
    assert tuned == ([True] if lifecycle else [])



def test_the_harness_client_imports_without_warnings() -> None:
    # harness.client() is Starlette's TestClient; with plain httpx (no httpx2) Starlette 1.x warns at import
    # (a StarletteDeprecationWarning, which is a UserWarning).
    result = subprocess.run([sys.executable, "-W", "error", "-c", "import starlette.testclient"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
