"""The dead-letter store: one contract for the in-memory and the SQL store, the SQL store outliving its
process, and dead letters surviving a restart of the bus and of the control plane."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from sbt_core import ProviderError, SbtError
from sbt_core.config import EventsConfig
from sbt_core.errors import BadRequestError, StartupError
from sbt_core.models import Event, utcnow
from sbt_core.runtime.bus import Bus, DeadLetter, DeadLetterStore, MemoryDeadLetters, SqlDeadLetters
from sbt_core.runtime.bus.dead_letters import SQLITE_FILE
from sbt_core.testing import Harness, RecordingBilling, onboarding_request
from sbt_core.triggers import EventTrigger

JOIN = 10.0


def letter(event_id: str, target: str = "billing_create_customer", *, attempts: int = 3,
           error: str = "billing backend down") -> DeadLetter:
    event = Event("onboardingRequest", "sbt.control.plane", {"tenantId": event_id, "n": [1, 2.5, None]}, event_id,
                  resources=["arn:aws:example"])
    return DeadLetter(event, target, attempts, error, utcnow())


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeadLetterStore]:
    """An empty store of each kind."""
    made: DeadLetterStore
    if request.param == "memory":
        made = MemoryDeadLetters()
    elif request.param == "sqlite":
        made = SqlDeadLetters.in_state_dir(tmp_path)
    else:
        url = request.getfixturevalue("pg_database")
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS sbt_dead_letters"))
        engine.dispose()
        made = SqlDeadLetters(url)
    yield made
    made.close()


def test_a_store_keeps_letters_oldest_first_and_filters_them(store: DeadLetterStore) -> None:
    a, b, c = letter("e1"), letter("e2"), letter("e1", "metering_create_customer")
    for each in (a, b, c):
        store.add([each])
    assert store.select() == [a, b, c]  # equal records: the envelope, its time and detail survive storage
    assert store.select(event_id="e1") == [a, c]
    assert store.select(target="metering_create_customer") == [c]
    assert store.select(event_id="e1", target="billing_create_customer") == [a]
    assert store.select(event_id="nope") == []


def test_a_letter_added_again_replaces_the_old_one_and_becomes_the_newest(store: DeadLetterStore) -> None:
    store.add([letter("e1")])
    store.add([letter("e2")])
    again = letter("e1", attempts=5, error="still down")
    store.add([again])
    assert [(d.event.id, d.attempts, d.last_error) for d in store.select()] == [
        ("e2", 3, "billing backend down"), ("e1", 5, "still down")]


def test_letters_added_together_keep_their_order_and_the_last_of_a_key_wins(store: DeadLetterStore) -> None:
    store.add([letter("e0")])
    store.add([letter("e1"), letter("e2"), letter("e0", attempts=4), letter("e1", attempts=5)])
    assert [(d.event.id, d.attempts) for d in store.select()] == [("e2", 3), ("e0", 4), ("e1", 5)]


def test_claim_removes_a_letter_once(store: DeadLetterStore) -> None:
    store.add([letter("e1")])
    store.add([letter("e2")])
    assert store.claim([("e1", "billing_create_customer")]) == {("e1", "billing_create_customer")}
    assert store.claim([("e1", "billing_create_customer")]) == set()
    assert store.claim([("e2", "another_target")]) == set()
    assert [d.event.id for d in store.select()] == ["e2"]
    both = [("e1", "billing_create_customer"), ("e2", "billing_create_customer")]
    assert store.claim(both) == {("e2", "billing_create_customer")}  # several at once: only those still there
    assert store.select() == []


def test_sql_letters_outlive_the_store_that_wrote_them(tmp_path: Path) -> None:
    first = SqlDeadLetters.in_state_dir(tmp_path)
    first.add([letter("e1")])
    first.close()
    assert (tmp_path / SQLITE_FILE).exists()
    reopened = SqlDeadLetters.in_state_dir(tmp_path)
    assert [d.event.id for d in reopened.select()] == ["e1"]
    reopened.close()


def test_two_processes_claiming_the_same_letter_get_it_once(tmp_path: Path) -> None:
    one, two = SqlDeadLetters.in_state_dir(tmp_path), SqlDeadLetters.in_state_dir(tmp_path)
    one.add([letter("e1")])
    assert [d.event.id for d in two.select()] == ["e1"]  # a letter written by one is seen by the other
    results: list[bool] = []
    threads = [threading.Thread(target=lambda s=s: results.append(bool(s.claim([("e1", "billing_create_customer")]))))
               for s in (one, two) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    one.close()
    two.close()


def test_a_letter_the_database_refuses_is_kept_in_memory_and_written_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = SqlDeadLetters.in_state_dir(tmp_path)
    real_write = store._write
    down = [True]

    def write(letters: list[DeadLetter]) -> None:
        if down[0]:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        real_write(letters)

    monkeypatch.setattr(store, "_write", write)
    with caplog.at_level(logging.ERROR, logger="sbt.bus"):
        store.add([letter("e1")])
    assert "e1" in caplog.text and "disk I/O error" in caplog.text
    assert [d.event.id for d in store.select()] == ["e1"]  # listed (and replayable) while unwritten
    down[0] = False
    store.add([letter("e2")])  # the next call writes the older one first
    store.close()
    reopened = SqlDeadLetters.in_state_dir(tmp_path)
    assert [d.event.id for d in reopened.select()] == ["e1", "e2"]
    reopened.close()


def test_an_unwritten_letter_can_still_be_claimed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqlDeadLetters.in_state_dir(tmp_path)
    real_write = store._write
    monkeypatch.setattr(store, "_write", lambda each: (_ for _ in ()).throw(OperationalError("INSERT", {}, None)))
    store.add([letter("e1")])
    assert store.claim([("e1", "billing_create_customer")]) == {("e1", "billing_create_customer")}
    monkeypatch.setattr(store, "_write", real_write)
    assert store.select() == []
    store.close()


# --- through the bus ---------------------------------------------------------------------------------------

def failing_bus(store: DeadLetterStore, calls: list[str], *, fail: bool) -> Bus:
    bus = Bus(EventsConfig(max_attempts=2, backoff_base_seconds=0, backoff_max_seconds=0), dead_letters=store)

    def handle(event: Event) -> None:
        calls.append(event.id)
        if fail:
            raise ProviderError("billing backend down")

    bus.add_target("billing_create_customer", EventTrigger("onboardingRequest", "sbt.control.plane"), handle)
    bus.start()
    return bus


def test_dead_letters_survive_a_restart_of_the_bus_and_replay_once_fixed(tmp_path: Path) -> None:
    calls: list[str] = []
    event = onboarding_request("t1")
    bus = failing_bus(SqlDeadLetters.in_state_dir(tmp_path), calls, fail=True)
    bus.put_events([event])
    assert bus.join(JOIN)
    assert calls == [event.id, event.id]
    bus.stop()

    calls.clear()
    restarted = failing_bus(SqlDeadLetters.in_state_dir(tmp_path), calls, fail=False)
    [kept] = restarted.dead_letters()
    assert (kept.event, kept.attempts, kept.last_error) == (event, 2, "billing backend down")
    assert restarted.get(event.id) is None  # the event log itself starts empty
    [replayed] = restarted.replay(event_id=event.id)
    assert replayed == kept
    assert restarted.join(JOIN)
    assert calls == [event.id]
    record = restarted.get(event.id)
    assert record is not None and [(d.target, d.state) for d in record.deliveries] == [
        ("billing_create_customer", "delivered")]
    assert restarted.dead_letters() == []
    restarted.stop()
    assert SqlDeadLetters.in_state_dir(tmp_path).select() == []  # replayed letters are gone from the file


def test_a_letter_claimed_by_another_replay_is_not_delivered_again(tmp_path: Path) -> None:
    calls: list[str] = []
    event = onboarding_request("t1")
    SqlDeadLetters.in_state_dir(tmp_path).add([DeadLetter(event, "billing_create_customer", 2, "down", utcnow())])
    bus = failing_bus(SqlDeadLetters.in_state_dir(tmp_path), calls, fail=False)
    assert SqlDeadLetters.in_state_dir(tmp_path).claim([(event.id, "billing_create_customer")])  # another process won
    assert bus.replay() == []
    assert bus.join(JOIN) and calls == []
    bus.stop()


# --- through the control plane -------------------------------------------------------------------------------

Factory = Callable[..., Harness]
CONFIG: dict[str, Any] = {"providers": {"billing": {"type": "flaky"}}}


def test_sbt_serve_keeps_dead_letters_across_a_restart(sbt_control_plane: Factory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    plane = sbt_control_plane(plugins={"flaky": RecordingBilling}, config=CONFIG, state_dir=state, tenants=False)
    plane.provider("billing").fail["billing_create_customer"] = ProviderError("billing backend down")
    event = onboarding_request("t9")
    plane.put(event)
    plane.settle()
    assert [d.event.id for d in plane.bus.dead_letters()] == [event.id]
    plane.close()

    restarted = sbt_control_plane(plugins={"flaky": RecordingBilling}, config=CONFIG, state_dir=state,
                                  tenants=False)
    client = restarted.client()
    listed = client.get("/dead-letters").json()["data"]
    assert [(d["event"]["id"], d["target"]) for d in listed] == [(event.id, "billing_create_customer")]
    assert client.post("/dead-letters/replay", json={"eventId": event.id}).status_code == 200
    restarted.settle()
    assert [e.id for e in restarted.provider("billing").calls["billing_create_customer"]] == [event.id]
    assert client.get("/dead-letters").json()["data"] == []


def test_dead_letters_can_be_kept_in_memory_only(sbt_control_plane: Factory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = {**CONFIG, "events": {"dead_letters": "memory"}}
    plane = sbt_control_plane(plugins={"flaky": RecordingBilling}, config=config, state_dir=state, tenants=False)
    assert isinstance(plane.bus.dead_letter_store, MemoryDeadLetters)
    assert not (state / SQLITE_FILE).exists()


def test_an_unusable_state_directory_stops_start_up_with_a_clear_error(sbt_control_plane: Factory,
                                                                      tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(StartupError, match="cannot open the dead-letter store in .*not-a-dir"):
        sbt_control_plane(plugins={"flaky": RecordingBilling}, config=CONFIG, state_dir=blocker, tenants=False,
                          auth=False)


def test_dead_letter_times_are_kept_to_the_microsecond(tmp_path: Path) -> None:
    store = SqlDeadLetters.in_state_dir(tmp_path)
    when = utcnow() - timedelta(days=3, microseconds=17)
    original = DeadLetter(letter("e1").event, "t", 1, "x", when)
    store.add([original])
    assert store.select() == [original]
    store.close()


# --- at a stop that does not drain ------------------------------------------------------------------------

def test_a_stop_that_cannot_drain_dead_letters_what_waits_to_retry(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus(EventsConfig(max_attempts=5, backoff_base_seconds=3600, backoff_max_seconds=3600),
              dead_letters=SqlDeadLetters.in_state_dir(tmp_path))
    calls: list[str] = []

    def handle(event: Event) -> None:
        calls.append(event.id)
        raise ProviderError("billing backend down")

    bus.add_target("billing_create_customer", EventTrigger("onboardingRequest", "sbt.control.plane"), handle)
    bus.start()
    event = onboarding_request("t1")
    bus.put_events([event])
    while not calls:  # the first attempt has failed; the retry now waits an hour
        threading.Event().wait(0.01)
    with caplog.at_level(logging.WARNING, logger="sbt.bus"):
        assert bus.stop(timeout=0.2) is False
    assert "1 undelivered event(s) dead-lettered at stop" in caplog.text
    [kept] = SqlDeadLetters.in_state_dir(tmp_path).select()  # as the next process finds it
    assert (kept.event, kept.target, kept.attempts) == (event, "billing_create_customer", 1)
    assert kept.last_error == "the bus stopped before delivering it (last error: billing backend down)"


def test_events_queued_on_a_bus_that_never_started_are_dead_lettered_at_stop() -> None:
    bus = Bus()
    bus.add_target("billing_create_customer", EventTrigger("onboardingRequest", "sbt.control.plane"),
                   lambda event: None)
    events = [onboarding_request(f"t{i}") for i in range(3)]
    bus.put_events(events)
    bus.stop()
    assert [(d.event, d.attempts, d.last_error) for d in bus.dead_letters()] == [
        (e, 0, "the bus stopped before delivering it") for e in events]


def test_a_refused_batch_is_one_log_line_and_one_write(caplog: pytest.LogCaptureFixture) -> None:
    writes: list[int] = []

    class CountingStore(MemoryDeadLetters):
        def add(self, letters: Iterable[DeadLetter]) -> None:
            batch = list(letters)
            writes.append(len(batch))
            super().add(batch)

    bus = Bus(EventsConfig(), dead_letters=CountingStore())
    refusals = iter(["no meter counts eventName 'api'", "no meter counts eventName 'web'"] * 3)

    def handle(event: Event) -> None:
        raise BadRequestError(next(refusals))

    bus.add_target("metering_ingest_usage_event", EventTrigger("onboardingRequest", "sbt.control.plane"), handle)
    bus.start()
    with caplog.at_level(logging.ERROR, logger="sbt.bus"):
        bus.put_events([onboarding_request(f"t{i}") for i in range(5)])
        assert bus.join(JOIN)
    assert writes == [5]
    [line] = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert line.startswith("5 event(s) ") and line.endswith(
        "to metering_ingest_usage_event dead-lettered after 1 attempt(s): no meter counts eventName 'api' "
        "(and 1 other error(s); sbt events dlq list shows each)")
    assert len(bus.dead_letters()) == 5
    bus.stop()


def test_a_letter_the_database_cannot_take_does_not_hold_back_the_others(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    store = SqlDeadLetters.in_state_dir(tmp_path)
    unwritable = DeadLetter(Event("custom", "app", {"when": object()}, "bad"), "t", 1, "x", utcnow())
    with caplog.at_level(logging.ERROR, logger="sbt.bus"):
        store.add([letter("e1"), unwritable, letter("e2")])
    assert "1 dead letter(s) (event bad for t first) not written" in caplog.text
    assert [d.event.id for d in store.select()] == ["e1", "e2", "bad"]  # the unwritten one is still listed
    reopened = SqlDeadLetters.in_state_dir(tmp_path)
    assert [d.event.id for d in reopened.select()] == ["e1", "e2"]
    store.close()
    reopened.close()


def test_a_replay_cut_short_by_a_stop_puts_its_letters_back(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = Bus()
    bus.add_target("billing_create_customer", EventTrigger("onboardingRequest", "sbt.control.plane"),
                   lambda event: None)
    kept = letter("e1")
    bus.dead_letter_store.add([kept])

    def closed(messages: Any, *, delay: float = 0.0, dedup: bool = True) -> None:  # closed between claim and send
        raise RuntimeError("the transport is closed")

    monkeypatch.setattr(bus.transport, "send", closed)
    with pytest.raises(SbtError, match="the event bus has stopped"):
        bus.replay()
    assert bus.dead_letters() == [kept]
