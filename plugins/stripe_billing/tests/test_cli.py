"""``sbt stripe meters`` and ``sbt stripe usage`` through sbt's own CLI app (plugins registered, not installed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import responses
from sbt_stripe_billing import StripeBilling
from typer.testing import CliRunner

from sbt_core.cli import CliState, build_app
from sbt_core.errors import ProviderError
from sbt_core.models import Event, ScheduleRun

METERS = "https://api.stripe.com/v1/billing/meters"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_STRIPE_KEY", "sk_test_cli_secret")
    path = tmp_path / "sbt.toml"
    path.write_text(f"""
state_dir = "{tmp_path / 'state'}"

[providers.billing]
type = "stripe"
api_key = {{ env = "TEST_STRIPE_KEY" }}
meter_event_names = {{ productsSold = "products_sold", apiCalls = "api_calls" }}
""")
    return path


def sbt(*args: str) -> tuple[int, str, str]:
    app = build_app(CliState(extra={"stripe": StripeBilling}, entry_points=False))
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def meter(meter_id: str, event_name: str, status: str = "active") -> dict:
    return {"id": meter_id, "object": "billing.meter", "event_name": event_name, "status": status,
            "display_name": event_name}


def test_meters_reports_missing_and_creates_them(config_file):
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, METERS, json={"object": "list", "has_more": False, "url": "/v1/billing/meters",
                                              "data": [meter("mtr_1", "products_sold")]})
        code, out, err = sbt("stripe", "meters", "--config", str(config_file), "--json")
        assert code == 1
        assert json.loads(out) == [{"eventName": "api_calls", "meterId": None, "status": "missing"},
                                   {"eventName": "products_sold", "meterId": "mtr_1", "status": "active"}]

        mock.add(responses.POST, METERS, json=meter("mtr_2", "api_calls"))
        code, out, err = sbt("stripe", "meters", "--config", str(config_file), "--create")
        assert code == 0, err
        assert out.splitlines() == ["api_calls: created (mtr_2)", "products_sold: active (mtr_1)"]
        create = next(c.request for c in mock.calls if c.request.method == "POST")
        assert dict(parse_qsl(create.body)) == {
            "display_name": "api_calls", "event_name": "api_calls", "default_aggregation[formula]": "sum",
            "customer_mapping[type]": "by_id", "customer_mapping[event_payload_key]": "stripe_customer_id",
            "value_settings[event_payload_key]": "value"}
    assert "sk_test_cli_secret" not in out + err


def test_meters_failure_is_one_line_without_the_key(config_file):
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, METERS, status=401, json={"error": {
            "type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****cret"}})
        code, out, err = sbt("stripe", "meters", "--config", str(config_file))
    assert code == 1 and err.startswith("error: stripe: AuthenticationError HTTP 401")
    assert "sk_test" not in err


def test_usage_shows_the_local_store(config_file, make_billing, tmp_path):
    billing = make_billing(state_dir=tmp_path / "state", retry_base_seconds=0, max_retries=0)
    now = datetime.now(UTC)
    billing.provider.store.set_customer("t1", "cus_1")
    billing.facade.ingest(Event.create("ingestUsage", {"tenantId": "t1", "metric": {"name": "productsSold", "value": 3},
                                                       "timestamp": now.isoformat()}))
    billing.facade.ingest(Event.create("ingestUsage", {"tenantId": "t1", "metric": {"name": "apiCalls", "value": 9},
                                                       "timestamp": (now - timedelta(days=40)).isoformat()}))
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, "https://api.stripe.com/v1/billing/meter_events", status=500,
                 json={"error": {"type": "api_error", "message": "down"}})
        with pytest.raises(ProviderError):
            billing.facade.put_usage(ScheduleRun(hook="billing_put_usage", expression="rate(24 hours)"))
    billing.facade.ingest(Event.create("ingestUsage", {"tenantId": "t1", "metric": {"name": "productsSold", "value": 1},
                                                       "timestamp": now.isoformat()}))

    code, out, err = sbt("stripe", "usage", "--config", str(config_file), "--json")

    assert code == 0, err
    report = json.loads(out)
    assert [(r["tenantId"], r["metric"], r["value"]) for r in report["open"]] == [("t1", "productsSold", 1)]
    assert [(r["metric"], r["value"], r["lastError"]) for r in report["pending"]] == [
        ("productsSold", 3, "APIError HTTP 500")]
    assert [(r["metric"], r["value"]) for r in report["expired"]] == [("apiCalls", 9)]
    assert report["orphaned"] == []


def test_commands_refuse_a_config_without_stripe(tmp_path):
    path = tmp_path / "sbt.toml"
    path.write_text('[server]\nport = 8081\n')  # no [providers.billing]
    code, out, err = sbt("stripe", "usage", "--config", str(path))
    assert code == 1 and "does not select the 'stripe' provider" in err
