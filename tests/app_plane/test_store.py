"""The job store's claim, on SQLite and PostgreSQL: what each delivery of an event does, and of two
deliveries racing for one identifier exactly one runs the job."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import sqlalchemy as sa

from sbt_core.app_plane import Claim, JobRunStore, RunStatus
from sbt_core.app_plane._store import metadata
from sbt_core.models import Event
from sbt_core.testing.events import onboarding_request


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    url: str = request.getfixturevalue("pg_database")
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[JobRunStore]:
    store = JobRunStore(database_url, clock=Clock())
    store.create_schema()
    yield store
    store.dispose()


def _finish(store: JobRunStore, event: Event, owner: str, status: RunStatus) -> None:
    run = store.get("provisioning", "reg-1")
    assert run is not None and run.owner == owner
    outcome = Event.create("provisionSuccess", {"tenantRegistrationId": "reg-1"})
    assert store.finish(run, status=status, exit_code=0, error=None, exported={}, output=(), outcome=outcome)


def test_each_delivery_of_an_identifier_does_what_its_run_calls_for(store: JobRunStore) -> None:
    clock = store._clock
    assert isinstance(clock, Clock)
    first = onboarding_request(tenant_registration_id="reg-1")
    assert store.claim("provisioning", "reg-1", first, "a", 30)[0] is Claim.RUN
    assert store.claim("provisioning", "reg-1", first, "b", 30)[0] is Claim.SKIP  # in progress, lease alive
    clock.now += 31
    claim, run = store.claim("provisioning", "reg-1", first, "b", 30)  # a's lease passed: b takes over
    assert (claim, run.attempt, run.owner) == (Claim.RUN, 2, "b")
    gone = store.get("provisioning", "reg-1")
    assert gone is not None
    assert store.finish(attrs.evolve(gone, owner="a", attempt=1), status=RunStatus.SUCCEEDED, exit_code=0, error=None,
                        exported={}, output=(), outcome=first) is None  # a's late result does not count

    _finish(store, first, "b", RunStatus.FAILED)
    assert store.claim("provisioning", "reg-1", first, "c", 30)[0] is Claim.EMIT  # outcome not sent yet
    done = store.get("provisioning", "reg-1")
    assert done is not None
    store.mark_published(done)
    assert store.claim("provisioning", "reg-1", first, "c", 30)[0] is Claim.DONE  # a redelivery
    retry = onboarding_request(tenant_registration_id="reg-1")
    claim, run = store.claim("provisioning", "reg-1", retry, "c", 30)  # a new request retries a failed run
    assert (claim, run.attempt) == (Claim.RUN, 3)
    _finish(store, retry, "c", RunStatus.SUCCEEDED)
    assert store.claim("provisioning", "reg-1", onboarding_request(tenant_registration_id="reg-1"), "d",
                       30)[0] is Claim.EMIT  # succeeded: never again, only its outcome
    assert [r.job_id for r in store.unpublished(["provisioning"])] == ["reg-1"]


def test_of_two_deliveries_racing_for_one_identifier_exactly_one_runs(database_url: str) -> None:
    stores = [JobRunStore(database_url) for _ in range(2)]
    stores[0].create_schema()
    event = onboarding_request(tenant_registration_id="reg-1")
    claims: list[Claim] = []
    barrier = threading.Barrier(8)

    def deliver(i: int) -> None:
        barrier.wait()
        claims.append(stores[i % 2].claim("provisioning", "reg-1", event, f"owner-{i}", 30)[0])

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.dispose()
    assert sorted(claims) == [Claim.RUN] + [Claim.SKIP] * 7
