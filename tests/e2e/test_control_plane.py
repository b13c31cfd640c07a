"""The whole control plane as a user runs it: `sbt serve` as a subprocess with `cognito` (on moto_server),
`stripe` (on localstripe) and `memory`, driven only through real clients — boto3 to sign in, httpx for the
API, the `sbt` CLI, and the stripe SDK to read localstripe's state.

Only Stripe's Billing Meter events endpoint is stubbed (localstripe has none), by a loopback front that
forwards everything else to localstripe.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import stripe

from sbt_core.testing import wait_for

from ._serve import LOCALSTRIPE, background, clean_environ, free_port, sbt_serve
from ._stripe_meters import MeterEvents, stripe_front

REGION = "us-east-1"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
           "AWS_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}
STRIPE_KEY = "sk_test_sbt_e2e"
WEBHOOK_SECRET = "whsec_sbt_e2e"
PASSWORD = "Adm1n-Passw0rd!"
USAGE_EVENTS = 100_000


def sbt(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "sbt_core.cli", *args], cwd=cwd, capture_output=True, text=True,
                            env={**clean_environ(), **env}, timeout=600)
    assert result.returncode == 0, f"sbt {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def moto(workdir: Path) -> Iterator[str]:
    port = free_port()
    exe = shutil.which("moto_server")
    cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
    with background([*cmd, "-H", "127.0.0.1", "-p", str(port)], cwd=workdir, env=AWS_ENV, name="moto",
                    ready=f"http://127.0.0.1:{port}/moto-api/"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def localstripe(workdir: Path) -> Iterator[str]:
    port = free_port()
    cwd = workdir / "localstripe"
    cwd.mkdir()
    with background([sys.executable, "-c", LOCALSTRIPE, str(port)], cwd=cwd, name="localstripe",
                    ready=f"http://127.0.0.1:{port}/v1/customers"):
        yield f"http://127.0.0.1:{port}"


def test_register_meter_ingest_bill_and_offboard(workdir: Path, moto: str, localstripe: str) -> None:
    stripe_api = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": localstripe}, max_network_retries=0)
    product = stripe_api.v1.products.create(params={"name": "API"})
    metered = stripe_api.v1.plans.create(params={"id": "plan_api_calls", "product": product.id, "currency": "usd",
                                                 "interval": "month", "amount": 0, "usage_type": "metered"})
    paid = stripe_api.v1.plans.create(params={"id": "plan_pro", "product": product.id, "currency": "usd",
                                              "interval": "month", "amount": 500})

    # An operator bootstraps Cognito with the real command and pastes its block into sbt.toml.
    boot = subprocess.run([sys.executable, "-m", "sbt_core.cli", "cognito", "bootstrap", "--endpoint-url", moto,
                           "--region", REGION], capture_output=True, text=True, env={**clean_environ(), **AWS_ENV},
                          cwd=workdir, timeout=120)
    assert boot.returncode == 0, boot.stderr
    secret_line = next(line for line in boot.stderr.splitlines() if line.startswith("export "))
    secret_name, _, secret_value = secret_line.removeprefix("export ").partition("=")
    auth_block = boot.stdout

    with stripe_front(localstripe) as (stripe_base, meter_events):
        config = workdir / "sbt.toml"
        config.write_text(f"""
state_dir = "state"

[admin]
name = "admin"
email = "admin@acme.test"

{auth_block}

[providers.billing]
type = "stripe"
api_key = {{ env = "STRIPE_API_KEY" }}
webhook_secret = {{ env = "STRIPE_WEBHOOK_SECRET" }}
api_base = "{stripe_base}"
item_kind = "plan"
customer_lookup = "list"
delete_customer_on_offboarding = false

[providers.metering]
type = "memory"

[events]
backoff_base_seconds = 0.1
""")
        env = {**AWS_ENV, secret_name: secret_value, "STRIPE_API_KEY": STRIPE_KEY,
               "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
        with sbt_serve(workdir, config=config, env=env) as url:
            _drive(url, workdir, config, env, moto, localstripe, stripe_api, meter_events, metered.id, paid.id)


def _drive(url: str, workdir: Path, config: Path, env: dict[str, str], moto: str, localstripe: str,
           stripe_api: stripe.StripeClient, meter_events: MeterEvents, metered_plan: str, paid_plan: str) -> None:
    toml = config.read_text()
    pool_id = toml.split('user_pool_id = "')[1].split('"')[0]
    client_id = toml.split('user_client_id = "')[1].split('"')[0]
    cognito = boto3.client("cognito-idp", region_name=REGION, endpoint_url=moto,
                           aws_access_key_id="testing", aws_secret_access_key="testing")

    # The admin was created at start-up; the operator sets its password and signs in with boto3.
    assert cognito.admin_get_user(UserPoolId=pool_id, Username="admin")["Username"] == "admin"
    cognito.admin_set_user_password(UserPoolId=pool_id, Username="admin", Password=PASSWORD, Permanent=True)

    def login(user: str, password: str) -> str:
        answer = cognito.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
                                       AuthParameters={"USERNAME": user, "PASSWORD": password})
        return str(answer["AuthenticationResult"]["AccessToken"])

    token = login("admin", PASSWORD)
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert httpx.get(f"{url}/users").status_code == 401

    # Register a tenant -> onboardingRequest -> one Stripe customer (with its subscription) and a
    # metering customer.
    answer = api.post("/tenant-registrations", json={
        "tenantData": {"tenantName": "acme", "email": "owner@acme.test",
                       "prices": [{"id": metered_plan, "metricName": "api_calls"}]},
        "tenantRegistrationData": {"registrationStatus": "In progress"}})
    assert answer.status_code == 201, answer.text
    tenant_id, registration_id = answer.json()["data"]["tenantId"], answer.json()["data"]["tenantRegistrationId"]

    def customers() -> list[Any]:
        return [c for c in stripe_api.v1.customers.list(params={"limit": 100}).data
                if c.metadata and c.metadata.to_dict().get("tenantId") == tenant_id]

    (customer,) = wait_for(customers, "the tenant's Stripe customer")
    assert customer.email == "owner@acme.test"
    subscriptions = wait_for(lambda: stripe_api.v1.subscriptions.list(params={"customer": customer.id}).data,
                             "the tenant's subscription")
    assert [item.plan.id for item in subscriptions[0]["items"].data] == [metered_plan]

    def onboarding_deliveries() -> dict[str, str] | None:
        for record in api.get("/events", params={"limit": 50}).json()["data"]:
            if record["event"]["detail"].get("tenantId") == tenant_id and record["event"]["detail-type"].endswith(
                    "onboardingRequest"):
                states = {d["target"]: d["state"] for d in record["deliveries"]}
                return states if all(s == "delivered" for s in states.values()) else None
        return None

    assert wait_for(onboarding_deliveries, "onboarding delivered") == {
        "billing_create_customer": "delivered", "metering_create_customer": "delivered"}

    # Create and manage a user.
    assert api.post("/users", json={"userName": "alice", "userRole": "TenantAdmin",
                                    "email": "alice@acme.test"}).status_code == 201
    assert api.get("/users/alice").json()["data"]["userRole"] == "TenantAdmin"
    assert api.put("/users/alice", json={"userRole": "TenantUser"}).json() == {"message": "User updated"}
    assert api.get("/users/alice").json()["data"]["userRole"] == "TenantUser"
    cognito.admin_set_user_password(UserPoolId=pool_id, Username="alice", Password=PASSWORD, Permanent=True)
    assert login("alice", PASSWORD)
    assert api.put("/users/alice/disable").json() == {"message": "User disabled"}
    with pytest.raises(cognito.exceptions.NotAuthorizedException):
        login("alice", PASSWORD)
    assert api.put("/users/alice/enable").json() == {"message": "User enabled"}
    assert login("alice", PASSWORD)
    assert {u["userName"] for u in api.get("/users").json()["data"]} >= {"admin", "alice"}
    assert api.delete("/users/alice").json() == {"message": "User deleted"}
    assert api.get("/users/alice").status_code == 404

    # Create a meter and replay a usage file through the CLI.
    meter = api.post("/meters", json={"name": "API calls", "eventName": "api_calls", "aggregation": "SUM",
                                      "groupBy": ["region"]})
    assert meter.status_code == 201, meter.text
    meter_id = meter.json()["data"]["meterId"]
    rng = random.Random(42)
    expected: dict[str, int] = defaultdict(int)
    usage_file = workdir / "usage.jsonl"
    with usage_file.open("w") as fh:
        for i in range(USAGE_EVENTS):
            region, value = rng.choice(("eu", "us", "ap")), rng.randint(1, 9)
            expected[region] += value
            fh.write(json.dumps({"detail-type": "ingestUsage", "source": "sbt.application.plane", "detail": {
                "tenantId": tenant_id, "eventName": "api_calls", "identifier": f"e2e-{i}",
                "properties": {"value": value, "region": region}}}) + "\n")
    cli_env = {**env, "SBT_URL": url, "SBT_TOKEN": token}
    put = json.loads(sbt("events", "put", "--file", str(usage_file), "--json", cwd=workdir, env=cli_env))
    assert put["FailedEntryCount"] == 0 and len(put["Entries"]) == USAGE_EVENTS

    window = {"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "groupBy": "region"}

    def usage_by_region() -> dict[str, float]:
        rows = api.get(f"/usage/{meter_id}", params=window).json()["data"]
        return {row["groups"]["region"]: row["value"] for row in rows if row["tenantId"] == tenant_id}

    wait_for(lambda: usage_by_region() == expected, f"usage to reach {dict(expected)}", timeout=300)

    # Each binding has its own queue, in order: once the last event reached billing_ingest, all did.
    last = put["Entries"][-1]["EventId"]

    def ingested_for_billing() -> bool:
        deliveries = api.get(f"/events/{last}").json()["data"]["deliveries"]
        return {d["target"]: d["state"] for d in deliveries}.get("billing_ingest") == "delivered"

    wait_for(ingested_for_billing, "billing_ingest to catch up", timeout=300)

    # Push the aggregated usage to Stripe now: one meter event per tenant, metric and day.
    sbt("schedule", "run", "billing_put_usage", cwd=workdir, env=cli_env)
    pushed = wait_for(lambda: [e for e in meter_events.events
                               if e["payload"].get("stripe_customer_id") == customer.id], "meter events")
    assert sum(int(e["payload"]["value"]) for e in pushed) == sum(expected.values())
    assert {e["event_name"] for e in pushed} == {"api_calls"}
    assert len({e["identifier"] for e in pushed}) == len(pushed)

    # A payment in Stripe: localstripe signs its webhook to POST /billing/stripe -> billingSuccess.
    hook = httpx.post(f"{localstripe}/_config/webhooks/sbt", auth=(STRIPE_KEY, ""),
                      data={"url": f"{url}/billing/stripe", "secret": WEBHOOK_SECRET})  # every event type
    assert hook.status_code < 300, hook.text
    stripe_api.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    stripe_api.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": "pm_card_visa"}})
    stripe_api.v1.subscriptions.create(params={"customer": customer.id, "items": [{"plan": paid_plan}]})

    def billing_success() -> list[dict[str, Any]]:
        return [r for r in api.get("/events", params={"limit": 200}).json()["data"]
                if r["event"]["detail-type"].endswith("billingSuccess")
                and r["event"]["detail"].get("tenantId") == tenant_id]

    (success,) = wait_for(billing_success, "billingSuccess in the event log")
    assert success["event"]["detail"]["amount"] == 500 and success["event"]["detail"]["currency"] == "usd"

    # Offboard -> offboardingRequest -> every subscription of the tenant is cancelled.
    subscription_ids = [s.id for s in stripe_api.v1.subscriptions.list(params={"customer": customer.id}).data]
    assert len(subscription_ids) == 2
    deleted = api.delete(f"/tenant-registrations/{registration_id}")
    assert deleted.json() == {"data": {"message": "Tenant registration deletion initiated"}}
    wait_for(lambda: all(stripe_api.v1.subscriptions.retrieve(s).status == "canceled" for s in subscription_ids),
             "the subscriptions to be cancelled")
    assert api.get(f"/tenants/{tenant_id}").json()["data"]["sbtaws_active"] is False
