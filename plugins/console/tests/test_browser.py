"""The console in a real browser against a real ``sbt serve``: sign in, tenants, users, meters, the usage
chart against the API's numbers, and a dead letter from a provider that was down, replayed once it is up.

The tests of this module share one server and one tab and build on each other in file order, as an
operator's session would; each leaves a screenshot of its page (``conftest.SCREENSHOTS``).
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sbt_core.testing.processes import background_server
from sbt_core.testing.waiting import wait_for

from .conftest import Server, screenshot

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

#: localstripe binds every interface from its CLI; this runs it on loopback (as tests/e2e does).
LOCALSTRIPE = ("import sys; from aiohttp import web; from localstripe.server import app; "
               "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)")


def api(server: Server, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, server.url + path, headers=server.headers(), timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def go(page: Any, server: Server, where: str) -> None:
    page.goto(f"{server.url}/console#/{where}")


def test_sign_in_refuses_what_is_not_a_token_then_signs_in(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/console")
    expect(page.locator("#signin-token")).to_be_focused()
    screenshot(page, "signin")
    page.fill("#signin-token", "not-a-token")
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_contain_text("not a JWT")
    page.fill("#signin-token", server.token)
    page.keyboard.press("Enter")
    expect(page.locator(".sidebar a.active")).to_have_text("Tenantsg t")
    assert page.evaluate("sessionStorage.getItem('sbt-console-token')") == server.token
    assert page.evaluate("localStorage.length") == 0  # the token never outlives the tab


def test_register_a_tenant_and_read_its_lifecycle(page: Any, server: Server) -> None:
    go(page, server, "tenants")
    expect(page.get_by_text("No tenants yet")).to_be_visible()
    page.keyboard.press("n")
    dialog = page.get_by_role("dialog", name="Register a tenant")
    dialog.get_by_label("Name").fill("acme")
    dialog.get_by_label("Owner email").fill("owner@acme.test")
    dialog.get_by_label("Tier").fill("premium")
    dialog.get_by_role("button", name="Register").click()
    expect(dialog).to_be_hidden()
    row = page.get_by_test_id("tenants-table").locator("tbody tr", has_text="acme")
    expect(row).to_contain_text("premium")
    history = page.get_by_test_id("tenant-history")
    expect(history).to_contain_text("onboardingRequest")
    expect(history).to_contain_text("metering_create_customer: delivered")
    tenants = api(server, "GET", "/tenants")["data"]
    assert [(t["tenantName"], t["email"]) for t in tenants] == [("acme", "owner@acme.test")]

    page.get_by_role("button", name="Update").click()
    dialog = page.get_by_role("dialog", name="Update acme")
    dialog.get_by_label("Tier").fill("enterprise")
    dialog.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("enterprise")
    screenshot(page, "tenants")


def test_users_are_created_disabled_enabled_and_deleted(page: Any, server: Server) -> None:
    go(page, server, "users")
    users = page.get_by_test_id("users-table")
    expect(users).to_contain_text("admin")
    page.get_by_role("button", name="Create user").click()
    dialog = page.get_by_role("dialog", name="Create a user")
    dialog.get_by_label("User name").fill("jane")
    dialog.get_by_label("Email").fill("not-an-email")
    dialog.get_by_label("Email").evaluate("el => el.type = 'text'")  # let the server refuse it, not the browser
    dialog.get_by_role("button", name="Create").click()
    expect(dialog.get_by_role("alert")).to_contain_text("email")  # the API's message, shown in the dialog
    dialog.get_by_label("Email").fill("jane@example.com")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_be_hidden()
    jane = users.locator("tbody tr", has_text="jane")
    jane.get_by_role("button", name="Disable").click()
    expect(jane).to_contain_text("disabled")
    assert api(server, "GET", "/users/jane")["data"]["enabled"] is False
    jane.get_by_role("button", name="Enable").click()
    expect(jane).to_contain_text("enabled")
    screenshot(page, "users")
    jane.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete jane?").get_by_role("button", name="Delete").click()
    expect(jane).to_have_count(0)
    assert httpx.get(f"{server.url}/users/jane", headers=server.headers()).status_code == 404


def _usage_events(now: datetime) -> list[dict[str, Any]]:
    """A day of usage of three tenants in two regions, whole numbers (Stripe meters take no fractions),
    from a seeded generator."""
    rng = random.Random(22)
    entries = []
    for hour in range(23):
        for tenant in ("acme", "globex", "initech"):
            if rng.random() < 0.25:
                continue
            at = (now - timedelta(hours=hour, minutes=rng.randint(1, 50))).isoformat().replace("+00:00", "Z")
            detail = {"tenantId": tenant, "eventName": "api_calls", "timestamp": at,
                      "identifier": f"usage-{hour}-{tenant}",
                      "properties": {"value": rng.randint(5, 60), "region": rng.choice(["eu", "us"])}}
            entries.append({"Source": "sbt.application.plane", "DetailType": "ingestUsage", "Detail": detail})
    return entries


def _totals(entries: list[dict[str, Any]], key: str) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        detail = entry["Detail"]
        totals[detail["tenantId"] if key == "tenantId" else detail["properties"][key]] += detail["properties"]["value"]
    return dict(totals)


def _chart(page: Any) -> dict[tuple[str, str], float]:
    segments = page.locator("[data-testid=usage-chart] rect[data-series]").evaluate_all(
        "els => els.map(e => [e.dataset.series, e.dataset.window, Number(e.dataset.value)])")
    return {(series, window): value for series, window, value in segments}


def _api_usage(server: Server, meter_id: str, group_by: str | None) -> dict[tuple[str, str], float]:
    now = datetime.now(UTC)
    params = {"from": (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:00:00Z"),
              "to": (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:00:00Z"), "windowSize": "HOUR", "limit": "1000"}
    if group_by:
        params["groupBy"] = group_by
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for row in api(server, "GET", f"/usage/{meter_id}", params=params)["data"]:
        sums[(row["groups"][group_by] if group_by else row["tenantId"], row["windowStart"])] += row["value"]
    return dict(sums)


def test_a_meter_and_its_usage_chart_show_the_apis_numbers(page: Any, server: Server) -> None:
    go(page, server, "meters")
    expect(page.get_by_text("No meters yet")).to_be_visible()
    page.keyboard.press("n")
    dialog = page.get_by_role("dialog", name="Create a meter")
    dialog.get_by_label("Name", exact=True).fill("API calls")
    dialog.get_by_label("Event name (unique)").fill("api_calls")
    dialog.get_by_label("Group by (comma-separated property names)").fill("region")
    dialog.get_by_role("button", name="Create").click()
    meters = page.get_by_test_id("meters-table")
    expect(meters).to_contain_text("api_calls")
    screenshot(page, "meters")
    meter_id = api(server, "GET", "/meters")["data"][0]["meterId"]
    usage = _usage_events(datetime.now(UTC))
    by_tenant, by_region = _totals(usage, "tenantId"), _totals(usage, "region")
    total = sum(by_tenant.values())
    answer = api(server, "POST", "/events", json={"Entries": usage})
    assert answer["FailedEntryCount"] == 0
    wait_for(lambda: sum(_api_usage(server, meter_id, None).values()) == total, "the usage to be ingested")

    meters.get_by_role("link", name="Usage").click()
    page.get_by_label("Range", exact=True).select_option("24h")
    expect(page.get_by_label("Window", exact=True)).to_have_value("HOUR")
    expected = _api_usage(server, meter_id, None)
    expect(page.get_by_test_id("usage-total")).to_have_text(f"{total:,}")
    # The total is the same in every window size: wait until the chart has redrawn in the new one.
    wait_for(lambda: _chart(page) == expected, "the chart to show the API's HOUR windows", timeout=15)
    assert _chart(page) == expected
    legend = page.get_by_test_id("usage-legend")
    for tenant, value in by_tenant.items():
        expect(legend.locator(f"[data-series={tenant}]")).to_contain_text(f"{value:,}")
    screenshot(page, "usage")

    page.get_by_label("Stack by", exact=True).select_option("region")
    for region, value in by_region.items():
        expect(legend.locator(f"[data-series={region}]")).to_contain_text(f"{value:,}")
    by_region_api = _api_usage(server, meter_id, "region")
    wait_for(lambda: _chart(page) == by_region_api, "the chart to stack by region", timeout=15)
    assert _chart(page) == by_region_api
    table = page.get_by_test_id("usage-table")
    expect(table.locator("thead")).to_contain_text("region")

    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    lines = download.value.path().read_text().splitlines()
    assert lines[0] == "windowStart,windowEnd,tenantId,groups.region,value"
    assert sum(float(line.rsplit(",", 1)[1]) for line in lines[1:]) == total

    go(page, server, "meters")
    meters.locator("tbody tr", has_text="api_calls").get_by_role("button", name="Deactivate").click()
    expect(meters).to_contain_text("inactive")
    assert api(server, "GET", f"/meters/{meter_id}")["data"]["status"] == "inactive"


def test_a_dead_letter_from_a_provider_that_was_down_is_replayed(page: Any, server: Server) -> None:
    """Stripe (localstripe) is not running: each onboarding's billing_create_customer is dead-lettered with
    its last error. Once Stripe is up, one is replayed alone, then the rest with Replay all."""
    api(server, "POST", "/tenant-registrations", json={"tenantData": {"tenantName": "globex",
                                                                       "email": "ops@globex.test"}})
    # Both onboardings (acme's, registered above, and globex's) give up on billing_create_customer.
    wait_for(lambda: len(api(server, "GET", "/dead-letters")["data"]) == 2, "both billing deliveries to give up")
    go(page, server, "events?tab=dead-letters")
    letters = page.get_by_test_id("dead-letters-table").locator("tbody tr")
    expect(letters).to_have_count(2)
    for row in letters.all():
        expect(row).to_contain_text("onboardingRequest")
        expect(row).to_contain_text("billing_create_customer")
        expect(row).to_contain_text("APIConnectionError")
    screenshot(page, "dead-letters")

    log = server.cwd / "localstripe.log"
    url = f"http://127.0.0.1:{server.stripe_port}"
    with background_server([sys.executable, "-c", LOCALSTRIPE, str(server.stripe_port)], ready=f"{url}/v1/customers",
                           log_path=log, name="localstripe"):
        first = api(server, "GET", "/dead-letters")["data"][0]["event"]["id"]
        letters.filter(has_text=first[:8]).get_by_role("button", name="Replay").click()
        expect(letters).to_have_count(1)
        assert first not in {letter["event"]["id"] for letter in api(server, "GET", "/dead-letters")["data"]}
        page.get_by_role("button", name="Replay all").click()
        page.get_by_role("dialog").get_by_role("button", name="Replay all").click()
        expect(page.get_by_text("No dead letters")).to_be_visible()
        page.get_by_role("tab", name="Event log").click()
        events = page.get_by_test_id("events-table")
        page.get_by_label("Delivery state", exact=True).select_option("retrying")  # filters apply without a reload
        page.get_by_label("Delivery state", exact=True).select_option("any")
        onboardings = events.locator("tbody tr", has_text="onboardingRequest")
        expect(onboardings).to_have_count(2)
        for row in onboardings.all():
            expect(row).to_contain_text("billing_create_customer delivered")
        onboardings.first.click()
        expect(page.get_by_role("complementary", name="Event details")).to_contain_text("billing_create_customer")
        screenshot(page, "events")
        assert api(server, "GET", "/dead-letters")["data"] == []


def test_bindings_and_plugins_show_what_runs_where(page: Any, server: Server) -> None:
    go(page, server, "bindings")
    bindings = page.get_by_test_id("bindings-table")
    expect(bindings.locator("tr", has_text="billing_create_customer")).to_contain_text("onboardingRequest")
    expect(bindings.locator("tr", has_text="GET /console/api/bindings")).to_contain_text("event/event_read")
    plugins = page.get_by_test_id("plugins-table")
    expect(plugins.locator("tr", has_text="console")).to_contain_text("extension")
    screenshot(page, "bindings")


def test_keyboard_moves_between_pages_and_an_expired_session_signs_out(page: Any, server: Server) -> None:
    go(page, server, "tenants")
    page.locator("main").focus()
    page.keyboard.press("g")
    page.keyboard.press("m")
    expect(page.locator(".sidebar a.active")).to_contain_text("Meters")
    page.keyboard.press("?")
    expect(page.get_by_role("dialog")).to_contain_text("Keyboard shortcuts")
    page.keyboard.press("Escape")
    page.evaluate("sessionStorage.setItem('sbt-console-token', 'a.b.c')")  # a token the server refuses
    page.keyboard.press("r")
    expect(page.locator("#signin-error")).to_contain_text("Signed out")
