"""Several processes on one store (``database_url``): usage reaches Stripe exactly once, whoever seals and
sends it; usage that cannot be sent is never reported as done.

The "processes" here are provider instances with their own state directories sharing one database, run
on threads at once. Stripe's side is a fake that applies its documented rules to meter events: an
``identifier`` seen before is dropped as a duplicate, and an ``Idempotency-Key`` reused with different
parameters is refused with 400 (``idempotency_key_in_use``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import responses
from sbt_stripe_billing._store import DAY, Store, batch_identifier

from sbt_core.errors import ProviderError
from sbt_core.models import Event, ScheduleRun

METER_EVENTS = "https://api.stripe.com/v1/billing/meter_events"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class StripeMeterFake:
    """Meter events as Stripe keeps them: one per identifier; an idempotency key bound to its first body."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: dict[str, dict[str, str]] = {}
        self.keys: dict[str, str] = {}
        self.duplicates = 0
        self.key_conflicts = 0

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        form = dict(parse_qsl(request.body))
        key = request.headers.get("Idempotency-Key")
        with self.lock:
            if key is not None and self.keys.setdefault(key, request.body) != request.body:
                self.key_conflicts += 1
                return 400, {}, json.dumps({"error": {"type": "idempotency_error", "code": "idempotency_key_in_use"}})
            if form["identifier"] in self.accepted:
                self.duplicates += 1
            else:
                self.accepted[form["identifier"]] = form
        return 200, {"Content-Type": "application/json"}, json.dumps({"object": "billing.meter_event", **form})

    def units(self, customer: str) -> int:
        return sum(int(f["payload[value]"]) for f in self.accepted.values()
                   if f["payload[stripe_customer_id]"] == customer)


def usage(tenant_id: str, value: int, when: datetime = NOW - timedelta(hours=1)) -> Event:
    detail = {"tenantId": tenant_id, "metric": {"name": "apiCalls", "unit": "Count", "value": value},
              "timestamp": when.isoformat().replace("+00:00", "Z")}
    return Event.create("ingestUsage", detail, source="sbt.application.plane")


def run() -> ScheduleRun:
    return ScheduleRun(hook="billing_put_usage", expression="rate(24 hours)", manual=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    url: str = request.getfixturevalue("sbt_postgres_url")
    store = Store(url)  # each test starts on empty tables of the session's database
    with store.engine.begin() as conn:
        for table in reversed(store_tables()):
            conn.execute(table.delete())
    store.close()
    return url


def store_tables() -> list[Any]:
    from sbt_stripe_billing import _store

    return [t for t in _store.metadata.sorted_tables if t.name != "sbt_stripe_schema"]


@pytest.fixture
def fake() -> Any:
    fake = StripeMeterFake()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, METER_EVENTS, callback=fake)
        yield fake


def processes(make_billing: Callable[..., Any], database_url: str, count: int) -> list[Any]:
    out = []
    for _ in range(count):
        billing = make_billing(database_url=database_url, retry_base_seconds=0, retry_max_seconds=0)
        billing.provider.clock = lambda: NOW
        out.append(billing)
    out[0].provider.store.set_customer("t1", "cus_T1")
    out[0].provider.store.set_customer("t2", "cus_T2")
    return out


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` on threads released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def go(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_pushes_from_two_processes_at_once_bill_every_unit_exactly_once(make_billing, database_url, fake):
    a, b = processes(make_billing, database_url, 2)
    sent = {"cus_T1": 0, "cus_T2": 0}
    for round_ in range(5):
        for i in range(10):  # usage alternates between the processes
            tenant, customer = ("t1", "cus_T1") if i % 3 else ("t2", "cus_T2")
            (a if i % 2 else b).facade.ingest(usage(tenant, round_ + i + 1))
            sent[customer] += round_ + i + 1
        results = at_once(lambda: a.facade.put_usage(run()), lambda: b.facade.put_usage(run()))
        assert not [r for r in results if isinstance(r, Exception)]
        assert a.provider.store.batches("pending") == []  # every batch sealed was sent by one of them

    assert {c: fake.units(c) for c in sent} == sent
    assert fake.key_conflicts == 0


def test_a_redelivered_usage_event_counts_once_whichever_process_gets_it(make_billing, database_url, fake):
    a, b = processes(make_billing, database_url, 2)
    event = usage("t1", 5)
    at_once(lambda: a.facade.ingest(event), lambda: b.facade.ingest(event))
    a.facade.put_usage(run())
    assert fake.units("cus_T1") == 5


def test_the_identifier_names_the_usage_not_the_process(make_billing, database_url, fake):
    a, b = processes(make_billing, database_url, 2)
    a.facade.ingest(usage("t1", 5))
    a.facade.put_usage(run())
    b.facade.ingest(usage("t1", 3))
    b.facade.put_usage(run())
    today = int(NOW.timestamp()) - int(NOW.timestamp()) % DAY
    assert set(fake.accepted) == {batch_identifier("t1", "apiCalls", today, 0, 5),
                                  batch_identifier("t1", "apiCalls", today, 5, 3)}


def test_a_correction_never_reuses_an_earlier_identifier(make_billing, database_url, fake):
    (a,) = processes(make_billing, database_url, 1)
    for value in (5, -5, 5):  # after the correction the day is back at 5, but the third batch is new usage
        a.facade.ingest(usage("t1", value))
        a.facade.put_usage(run())
    assert len(fake.accepted) == 3 and fake.units("cus_T1") == 5 and fake.duplicates == 0


def test_a_batch_another_process_is_sending_is_left_to_it(make_billing, database_url, fake):
    a, b = processes(make_billing, database_url, 2)
    a.facade.ingest(usage("t1", 5))
    a.provider.store.seal(int(NOW.timestamp()))
    (batch,) = a.provider.store.batches("pending")
    assert a.provider.store.claim(batch.identifier, lease_seconds=60)  # a is sending it
    result = b.facade.put_usage(run())
    assert (result.pushed, result.remaining, fake.accepted) == (0, 1, {})
    # a died mid-send: once the lease expires the next run sends it, under the same identifier
    assert b.provider.store.claim(batch.identifier, lease_seconds=60) is False
    with b.provider.store.engine.begin() as conn:
        from sbt_stripe_billing._store import usage_batches

        conn.execute(usage_batches.update().values(claimed_until=0))
    assert b.facade.put_usage(run()).pushed == 1
    assert list(fake.accepted) == [batch.identifier]


def test_usage_that_cannot_be_sent_is_reported_waiting_then_overdue_once(make_billing, database_url, fake):
    (a,) = processes(make_billing, database_url, 1)
    a.facade.ingest(usage("t3", 4))  # t3 has no Stripe customer (onboarded elsewhere, or not yet)

    result = a.facade.put_usage(run())
    assert result.pushed == 0 and result.remaining == 1
    assert "no Stripe customer for the tenant yet" in result.errors[0]
    assert a.of("billingFailure") == []

    with a.provider.store.engine.begin() as conn:  # a day later, still no customer
        from sbt_stripe_billing._store import usage_batches

        conn.execute(usage_batches.update().values(sealed_at=usage_batches.c.sealed_at - 25 * 3600))
    with pytest.raises(ProviderError, match=r"1 batch\(es\) waiting over 24 h \(billingFailure published\)"):
        a.facade.put_usage(run())
    (failure,) = a.of("billingFailure")
    assert failure.detail["tenantId"] == "t3" and failure.detail["reason"] == "usageNotPushed"
    assert failure.detail["value"] == 4

    # reported once: the next run (a replay of the dead letter, say) publishes nothing new
    a.facade.put_usage(run())
    assert len(a.of("billingFailure")) == 1
    # once the customer exists, the batch goes out
    a.provider.store.set_customer("t3", "cus_T3")
    assert a.facade.put_usage(run()).pushed == 1 and fake.units("cus_T3") == 4


def test_a_version_1_file_is_migrated_keeping_sums_and_identifiers(tmp_path: Path, make_billing, fake):
    path = tmp_path / "state" / "stripe" / "billing.sqlite3"
    path.parent.mkdir(parents=True)
    old_id = "sbt_" + "a" * 40
    today = int(NOW.timestamp()) - int(NOW.timestamp()) % DAY
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.execute("INSERT INTO customers VALUES ('t1', 'cus_T1', 0, 0)")
        db.execute("INSERT INTO processed VALUES ('ingest', 'e1', ?)", (NOW.timestamp(),))
        db.execute("INSERT INTO usage_batches VALUES (?, 't1', 'apiCalls', ?, 1, 7, ?, 'pending', 0, NULL, ?, NULL)",
                   (old_id, today, today + 60, NOW.timestamp()))
        db.execute("INSERT INTO usage_open VALUES ('t1', 'apiCalls', ?, 2, ?)", (today, today + 120))
    billing = make_billing(state_dir=tmp_path / "state", retry_base_seconds=0, retry_max_seconds=0)
    billing.provider.clock = lambda: NOW

    billing.facade.put_usage(run())

    assert set(fake.accepted) == {old_id, batch_identifier("t1", "apiCalls", today, 7, 2)}
    assert fake.units("cus_T1") == 9
    assert billing.provider.store.seen("ingest", "e1")


V1_SCHEMA = """
CREATE TABLE customers (tenant_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL);
CREATE TABLE processed (kind TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE usage_open (tenant_id TEXT NOT NULL, metric TEXT NOT NULL, bucket INTEGER NOT NULL,
    value INTEGER NOT NULL, last_ts INTEGER NOT NULL, PRIMARY KEY (tenant_id, metric, bucket));
CREATE TABLE usage_batches (identifier TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, metric TEXT NOT NULL,
    bucket INTEGER NOT NULL, seq INTEGER NOT NULL, value INTEGER NOT NULL, timestamp INTEGER NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, sealed_at REAL NOT NULL,
    sent_at REAL, UNIQUE (tenant_id, metric, bucket, seq));
CREATE TABLE users (tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (tenant_id, user_id));
"""
