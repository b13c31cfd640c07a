"""Two ``sbt serve`` processes, each with its own state directory, on one PostgreSQL database (tenant registry,
``sql`` metering, the ``stripe`` store) and one configured signing key, bill exactly what one would.

Registrations, users and usage alternate between the processes; ``billing_put_usage`` is fired on both at the
same moment, several times; Stripe's meter events go to a fake applying Stripe's identifier and idempotency-key
rules (the rest of Stripe is localstripe). The units Stripe counted must equal the usage sent, exactly.
"""

from __future__ import annotations

import random
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sbt_core.auth_local import LocalAuthSettings, mint_token
from sbt_core.models import Secret, scopes
from sbt_core.testing import wait_for

from ._serve import LOCALSTRIPE, background, free_port, sbt_serve
from ._stripe_meters import MeterEvents, stripe_front

pytest.importorskip("sbt_sql_metering", reason="the sql metering provider is not installed")

STRIPE_KEY = "sk_test_sbt_several"
SEED = 24
CONFIG = """\
state_dir = "{state}"

[providers.auth]
type = "local"
signing_key = {{ file = "{key}" }}

[providers.metering]
type = "sql"
database_url = {{ env = "SBT_TEST_DATABASE_URL" }}

[providers.billing]
type = "stripe"
api_key = {{ env = "SBT_TEST_STRIPE_KEY" }}
api_base = "{stripe}"
item_kind = "plan"
customer_lookup = "list"
database_url = {{ env = "SBT_TEST_DATABASE_URL" }}
retry_base_seconds = 0
retry_max_seconds = 0

[tenants]
database_url = {{ env = "SBT_TEST_DATABASE_URL" }}
"""


@pytest.fixture(scope="module")
def stripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, MeterEvents, Any]]:
    import stripe as stripe_sdk

    cwd = tmp_path_factory.mktemp("localstripe")
    port = free_port()
    with background([sys.executable, "-c", LOCALSTRIPE, str(port)], cwd=cwd, name="localstripe",
                    ready=f"http://127.0.0.1:{port}/v1/customers"):
        upstream = f"http://127.0.0.1:{port}"
        client = stripe_sdk.StripeClient(STRIPE_KEY, base_addresses={"api": upstream}, max_network_retries=0)
        product = client.v1.products.create(params={"name": "sbt several processes"})
        client.v1.plans.create(params={"id": "plan_metered", "product": product.id, "amount": 0, "currency": "usd",
                                       "interval": "month", "usage_type": "metered"})
        with stripe_front(upstream) as (url, meter_events):
            yield url, meter_events, client


def test_two_processes_bill_exactly_what_was_sent(tmp_path: Path, pg_database: str,
                                                  stripe: tuple[str, MeterEvents, Any]) -> None:
    front_url, meter_events, stripe_client = stripe

    def customer_of(tenant_id: str) -> str | None:
        found = [c.id for c in stripe_client.v1.customers.list(params={"limit": 100})
                 if c.metadata and c.metadata.to_dict().get("tenantId") == tenant_id]
        return found[0] if len(found) == 1 else None

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    configs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.toml"
        path.write_text(CONFIG.format(state=tmp_path / f"state-{name}", key=tmp_path / "key.pem", stripe=front_url))
        configs.append(path)
    env = {"SBT_TEST_DATABASE_URL": pg_database, "SBT_TEST_STRIPE_KEY": STRIPE_KEY}
    every_scope = scopes.ALL
    rng = random.Random(SEED)

    with sbt_serve(tmp_path, config=configs[0], env=env) as a, sbt_serve(tmp_path, config=configs[1], env=env) as b:
        # A token minted from one process's config is accepted by both.
        pem = (tmp_path / "key.pem").read_text()
        token = mint_token(every_scope, state_dir=tmp_path / "state-a",
                           settings=LocalAuthSettings(signing_key=Secret(pem)))
        headers = {"Authorization": f"Bearer {token}"}
        ca, cb = httpx.Client(base_url=a, headers=headers, timeout=30), httpx.Client(base_url=b, headers=headers,
                                                                                         timeout=30)
        both = [ca, cb]
        tenants = []
        for i in range(4):
            answer = both[i % 2].post("/tenant-registrations", json={
                "tenantData": {"tenantName": f"t{i}", "email": f"owner@t{i}.test",
                               "prices": [{"id": "plan_metered", "metricName": "apiCalls"}]},
                "tenantRegistrationData": {}})
            assert answer.status_code == 201, answer.text
            tenants.append(answer.json()["data"]["tenantId"])
        for i, tenant in enumerate(tenants):
            event = {"DetailType": "tenantUserCreated", "Source": "sbt.control.plane",
                     "Detail": {"tenantId": tenant, "userId": f"user-{i}"}}
            assert both[(i + 1) % 2].post("/events", json={"Entries": [event]}).json()["FailedEntryCount"] == 0

        sent: Counter[str] = Counter()
        ids = []
        for _round in range(3):
            for i in range(40):
                tenant = rng.choice(tenants)
                value = rng.randint(1, 9)
                entry = {"DetailType": "ingestUsage", "Source": "sbt.application.plane",
                         "Detail": {"tenantId": tenant, "metric": {"name": "apiCalls", "unit": "Count",
                                                                    "value": value}}}
                answer = both[i % 2].post("/events", json={"Entries": [entry]}).json()
                assert answer["FailedEntryCount"] == 0
                ids.append((i % 2, answer["Entries"][0]["EventId"]))
                sent[tenant] += value
            wait_for(lambda: all(delivered(both[p], event_id, "billing_ingest") for p, event_id in ids),
                     "usage delivered to billing on both processes", 60)
            wait_for(lambda: all(customer_of(t) for t in tenants), "one Stripe customer per tenant", 60)
            fire_at_once(both)

        by_customer = Counter({customer_of(t): n for t, n in sent.items()})
        counted: Counter[str] = Counter()
        for event in meter_events.events:
            payload = event["payload"]
            assert isinstance(payload, dict)
            counted[str(payload["stripe_customer_id"])] += int(payload["value"])
        assert counted == by_customer
        assert meter_events.key_conflicts == 0
        assert cb.get("/users").status_code == 200 and ca.get("/users").status_code == 200


def delivered(client: httpx.Client, event_id: str, binding: str) -> bool:
    answer = client.get(f"/events/{event_id}")
    if answer.status_code != 200:
        return False
    states = {d["target"]: d["state"] for d in answer.json()["data"]["deliveries"]}
    return states.get(binding) == "delivered"


def fire_at_once(clients: list[httpx.Client]) -> None:
    """``POST /schedules/billing_put_usage/run`` on every process at the same moment, then wait for the runs."""
    barrier = threading.Barrier(len(clients))
    runs: list[str] = []

    def fire(client: httpx.Client) -> None:
        barrier.wait()
        answer = client.post("/schedules/billing_put_usage/run")
        assert answer.status_code == 202, answer.text
        runs.append(answer.json()["data"]["eventId"])

    threads = [threading.Thread(target=fire, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    wait_for(lambda: all(finished(c, run) for c in clients for run in runs), "both pushes finished", 60)


def finished(client: httpx.Client, event_id: str) -> bool:
    answer = client.get(f"/events/{event_id}")
    if answer.status_code == 404:
        return True  # the other process's run
    states = [d["state"] for d in answer.json()["data"]["deliveries"]]
    return bool(states) and all(s in ("delivered", "dead_lettered") for s in states)
