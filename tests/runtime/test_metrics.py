"""GET /metrics: Prometheus' text format, the families an operator scrapes, and who may read it."""

from __future__ import annotations

import json
import logging
import logging.config
import threading
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sbt_core import BadRequestError, ProviderError
from sbt_core.models import to_json
from sbt_core.runtime.logs import uvicorn_log_config
from sbt_core.testing import Harness, RecordingBilling, RecordingMetering, ingest_usage, onboarding_request

Factory = Callable[..., Harness]

PLUGINS = {"rec": RecordingMetering, "flaky": RecordingBilling}
CONFIG = {"providers": {"metering": {"type": "rec"}, "billing": {"type": "flaky"}}}
#: Behind a scope, so the in-process test client (not on a loopback address) can scrape with its token.
SCRAPED = {**CONFIG, "server": {"metrics": "scope"}}

#: Every family the metrics promise (issue 22), as the text format names them.
FAMILIES = {
    "sbt_http_requests": "counter",
    "sbt_http_request_duration_seconds": "histogram",
    "sbt_events_accepted": "counter",
    "sbt_events_delivered": "counter",
    "sbt_events_retried": "counter",
    "sbt_events_dead_lettered": "counter",
    "sbt_bus_queue_depth": "gauge",
    "sbt_bus_oldest_message_age_seconds": "gauge",
    "sbt_schedule_firings": "counter",
    "sbt_metering_ingested_events": "counter",
    "sbt_metering_refused_events": "counter",
    "sbt_provider_hook_duration_seconds": "histogram",
}


def scrape(plane: Harness) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """family name -> {(sample name, sorted labels): value} of one GET /metrics."""
    answer = plane.client().get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        samples = out.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(families: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]], sample: str,
          **labels: str) -> float:
    family = next(name for name in families if sample.startswith(name))
    return families[family].get((sample, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def plane(sbt_control_plane: Factory) -> Harness:
    return sbt_control_plane(plugins=PLUGINS, config=SCRAPED)


def test_every_family_is_exposed_with_its_type(plane: Harness) -> None:
    answer = plane.client().get("/metrics")
    types = {f.name: f.type for f in text_string_to_metric_families(answer.text)}
    assert {name: types.get(name) for name in FAMILIES} == FAMILIES


def test_a_walkthrough_moves_every_family(plane: Harness) -> None:
    client = plane.client()
    billing = plane.provider("billing")
    metering = plane.provider("metering")
    billing.fail["billing_create_customer"] = ProviderError("Stripe is down")  # retried, then dead-lettered
    refused = ingest_usage("t1", "api_calls", 2)
    plane.put(ingest_usage("t1", "api_calls", 3), onboarding_request("t1"))
    plane.settle()
    metering.fail["metering_ingest_usage_event"] = BadRequestError("no meter counts eventName 'api_calls'")
    plane.put(refused)
    plane.settle()
    assert client.post("/schedules/billing_put_usage/run").status_code == 202
    plane.settle()
    client.get("/meters/nope")

    families = scrape(plane)
    ingest, create = "metering_ingest_usage_event", "billing_create_customer"
    assert value(families, "sbt_events_accepted_total", binding=ingest) == 2
    assert value(families, "sbt_events_delivered_total", binding=ingest) == 1
    assert value(families, "sbt_metering_ingested_events_total") == 1
    assert value(families, "sbt_metering_refused_events_total", reason="refused") == 1
    assert value(families, "sbt_events_dead_lettered_total", binding=ingest, reason="refused") == 1
    assert value(families, "sbt_events_retried_total", binding=create) == 2  # attempts 1 and 2 of 3
    assert value(families, "sbt_events_dead_lettered_total", binding=create, reason="retries_exhausted") == 1
    assert value(families, "sbt_schedule_firings_total", hook="billing_put_usage", trigger="manual") == 1
    assert value(families, "sbt_provider_hook_duration_seconds_count", hook=ingest, provider="rec") == 2
    assert value(families, "sbt_http_requests_total", method="POST", route="/schedules/{hook}/run",
                  status="202") == 1
    assert value(families, "sbt_http_requests_total", method="GET", route="/meters/{meterId}", status="404") == 1
    assert value(families, "sbt_http_request_duration_seconds_count", method="GET", route="/meters/{meterId}") == 1
    assert value(families, "sbt_bus_queue_depth", binding=ingest) == 0
    assert value(families, "sbt_bus_oldest_message_age_seconds", binding=ingest) == 0


def test_queue_depth_and_age_show_a_backlog(plane: Harness) -> None:
    gate = threading.Event()
    plane.provider("metering").gate["metering_ingest_usage_event"] = gate  # the worker blocks in the hook
    try:
        plane.put(*[ingest_usage("t1", "api_calls", 1) for _ in range(3)])
        families = scrape(plane)
        assert value(families, "sbt_bus_queue_depth", binding="metering_ingest_usage_event") == 3
        assert value(families, "sbt_bus_oldest_message_age_seconds", binding="metering_ingest_usage_event") > 0
    finally:
        gate.set()
    plane.settle()


def test_an_unknown_path_counts_as_unmatched_never_as_its_own_series(plane: Harness) -> None:
    client = plane.client()
    for path in ("/x1", "/x2", "/x3"):
        client.get(path)
    families = scrape(plane)
    assert value(families, "sbt_http_requests_total", method="GET", route="unmatched", status="404") == 3
    routes = {dict(labels)["route"] for (_, labels) in families["sbt_http_requests"]}
    assert not routes & {"/x1", "/x2", "/x3"}


@pytest.mark.parametrize("access", ["loopback", "scope", "open", "off"])
def test_access_follows_the_server_setting(sbt_control_plane: Factory, access: str) -> None:
    plane = sbt_control_plane(plugins=PLUGINS, config={**CONFIG, "server": {"metrics": access}})
    anonymous = plane.client(authenticated=False)
    # Starlette's TestClient connects as "testclient": not a loopback address, like a remote scraper.
    expected = {"loopback": 403, "scope": 401, "open": 200, "off": 404}[access]
    assert anonymous.get("/metrics").status_code == expected
    if access == "scope":
        assert plane.client("user/user_read").get("/metrics").status_code == 403
        assert plane.client("event/event_read").get("/metrics").status_code == 200


def test_by_default_loopback_clients_read_metrics_without_a_token(sbt_control_plane: Factory) -> None:
    plane = sbt_control_plane(plugins=PLUGINS, config=CONFIG)
    with plane.serve_http() as url:
        answer = httpx.get(f"{url}/metrics")
    assert answer.status_code == 200 and "sbt_http_requests_total" in answer.text


def test_metrics_route_is_in_the_openapi_document(plane: Harness) -> None:
    paths = plane.client().get("/openapi.json").json()["paths"]
    assert "get" in paths["/metrics"]


def test_json_log_lines_carry_the_event_id_and_binding(plane: Harness, caplog: pytest.LogCaptureFixture) -> None:
    from pythonjsonlogger.json import JsonFormatter

    config = uvicorn_log_config("json", "info")
    formatter = JsonFormatter(**{k: v for k, v in config["formatters"]["json"].items() if k != "()"})
    plane.provider("metering").fail["metering_ingest_usage_event"] = BadRequestError("refused on purpose")
    event = ingest_usage("t1", "api_calls", 1)
    with caplog.at_level(logging.ERROR, logger="sbt.bus"):
        plane.client().post("/events", json=[to_json(event)])
        plane.settle()
    line = json.loads(formatter.format(next(r for r in caplog.records if r.name == "sbt.bus")))
    assert line["level"] == "ERROR" and line["logger"] == "sbt.bus"
    assert line["binding"] == "metering_ingest_usage_event"
    assert line["event_id"] == event.id and line["event_ids"] == [event.id]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:  # the whole dict is one dictConfig takes
        logging.config.dictConfig(config)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
