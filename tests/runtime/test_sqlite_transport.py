"""The durable transport (``[events] transport = "sqlite"``): the transport contract, messages kept until
acked across a reopen (what a restart after ``kill -9`` sees), group commit, and the bus on top of it:
recovered messages delivered, counted, logged and deduplicated; refused writes undone."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from sbt_core.config import EventsConfig
from sbt_core.errors import ProviderError, StartupError, UnavailableError
from sbt_core.models import CONTROL_PLANE_SOURCE, Event
from sbt_core.runtime.bus import Bus, Message, SqliteTransport
from sbt_core.testing.transport import check_transport
from sbt_core.triggers import EventTrigger

ONBOARDING = EventTrigger("onboardingRequest", CONTROL_PLANE_SOURCE)
FAST = EventsConfig(max_attempts=3, backoff_base_seconds=0, backoff_max_seconds=0)
JOIN = 10.0  # a hang guard only


def event(n: int) -> Event:
    return Event.create("onboardingRequest", {"tenantId": f"t{n}", "nested": {"n": n, "tags": ["a", "b"]}})


def crash(transport: Any) -> None:
    """What ``kill -9`` leaves of ``transport``: nothing written after this point (no later commit, no ack
    deleted), its workers' queues gone, the file let go for the next transport."""
    with transport._lock:
        while transport._leading:
            transport._committed.wait()
        transport._writable = False
    transport._memory.close()
    transport._db.close()


def test_is_a_transport(tmp_path: Path) -> None:
    n = itertools.count()
    check_transport(lambda: SqliteTransport(tmp_path / f"q{next(n)}.sqlite3"))


def test_messages_not_acked_are_handed_out_again_by_the_next_transport_in_order(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    first = SqliteTransport(path)
    first.open("a")
    sent = [Message("a", [event(i), event(i + 100)], batch=i) for i in range(4)]
    first.send(sent)
    delivered = first.receive_many("a", 2)
    for message in delivered:
        first.ack(message)
    first.close()  # the two others were never acked: as if the process died with them queued

    second = SqliteTransport(path)
    second.open("a")
    assert second.backlog("a") == sent[2:], "events, attempt and batch number come back unchanged"
    assert second.backlog("a") == [], "each target's backlog is reported once"
    assert second.receive_many("a", 10) == sent[2:]
    second.close()


def test_an_ack_lost_at_a_crash_means_one_more_delivery_never_none(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    first = SqliteTransport(path)
    first.open("a")
    message = Message("a", event(1))
    first.send([message])
    assert first.receive("a") == message
    first.ack(message)  # not yet written: acks are deleted by the next commit
    crash(first)
    second = SqliteTransport(path)
    second.open("a")
    assert second.backlog("a") == [message]
    second.close()


def test_a_delayed_retry_keeps_its_attempt_and_its_due_time_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    first = SqliteTransport(path)
    first.open("a")
    retry = Message("a", event(1), attempt=3)
    first.send([retry], delay=3600)
    first.close()

    second = SqliteTransport(path)
    second.open("a")
    assert second.backlog("a") == [retry]
    now = Message("a", event(2))
    second.send([now])
    assert second.receive("a") == now, "the retry still waits for its due time"
    second.close()


def test_a_second_process_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    first = SqliteTransport(path)
    with pytest.raises(StartupError, match="another process"):
        SqliteTransport(path)
    first.close()
    SqliteTransport(path).close()  # free again once closed


def test_messages_of_a_target_no_longer_opened_are_stranded(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    first = SqliteTransport(path)
    first.open("a")
    first.open("gone")
    kept, stranded = Message("a", event(1)), Message("gone", event(2))
    first.send([kept, stranded])
    first.close()

    second = SqliteTransport(path)
    second.open("a")
    [taken] = second.take_stranded({"a"})
    assert taken == stranded
    second.ack(taken)
    second.close()
    third = SqliteTransport(path)
    assert third.take_stranded(set()) == [kept]
    third.close()


class _SlowCommits:
    """The transport's connection, whose first insert waits until released: meanwhile other senders queue
    behind the running commit."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.inserts = 0
        self.started, self.release = threading.Event(), threading.Event()

    def executemany(self, sql: str, rows: Any) -> Any:
        if sql.startswith("INSERT"):
            self.inserts += 1
            if self.inserts == 1:
                self.started.set()
                self.release.wait(JOIN)
        return self.db.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_concurrent_sends_share_one_commit(tmp_path: Path) -> None:
    transport = SqliteTransport(tmp_path / "bus.sqlite3")
    transport.open("a")
    slow = _SlowCommits(transport._db)
    transport._db = slow  # type: ignore[assignment]
    first = threading.Thread(target=transport.send, args=([Message("a", event(0))],))
    first.start()
    assert slow.started.wait(JOIN)
    others = [threading.Thread(target=transport.send, args=([Message("a", event(i))],)) for i in range(1, 11)]
    for thread in others:
        thread.start()
    while len(transport._queued) < 10:  # every other sender is waiting for the commit that runs
        threading.Event().wait(0.001)
    slow.release.set()
    for thread in [first, *others]:
        thread.join(JOIN)
    assert slow.inserts == 2, "the ten sends queued behind the first commit are written by one commit"
    assert len(transport.receive_many("a", 20)) == 11
    transport.close()


# --- the bus on the durable transport -------------------------------------------------------------------------

def test_the_bus_delivers_after_a_restart_what_it_had_accepted_and_not_delivered(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    before = Bus(FAST, transport=SqliteTransport(path))
    before.add_target("a", ONBOARDING, lambda e: None)
    accepted = [event(i) for i in range(20)]
    before.put_events(accepted)  # never started: nothing delivered
    crash(before.transport)  # the process dies: no stop, no dead letters

    got: list[str] = []
    after = Bus(FAST, transport=SqliteTransport(path))
    after.add_target("a", ONBOARDING, lambda e: got.append(e.id))
    assert after.busy("a"), "the recovered events count as outstanding"
    after.start()
    assert after.join(JOIN)
    assert got == [e.id for e in accepted]
    assert [d.state for d in after.get(accepted[0].id).deliveries] == ["delivered"]  # type: ignore[union-attr]
    after.put_events(accepted[:3])  # a client resending what was accepted before the crash
    assert after.join(JOIN)
    assert len(got) == 20, "recovered ids are remembered for dedup"
    assert after.stop(JOIN)
    assert not after.dead_letters(), "a durable transport keeps what a stop leaves; nothing is dead-lettered"


def test_a_retry_waiting_at_a_crash_resumes_with_its_attempt_count(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    slow = EventsConfig(max_attempts=3, backoff_base_seconds=3600, backoff_max_seconds=3600)
    before = Bus(slow, transport=SqliteTransport(path))
    failed = threading.Event()

    def fail(e: Event) -> None:
        failed.set()
        raise ProviderError("down")

    before.add_target("a", ONBOARDING, fail)
    before.start()
    one = event(1)
    before.put_events([one])
    assert failed.wait(JOIN)
    transport: Any = before.transport

    def only_the_retry_is_stored() -> bool:  # the retry committed and the first attempt's ack written
        with transport._lock:
            return [m.attempt for m, _ in transport._rows.values()] == [2] and not transport._acked \
                and not transport._leading

    while not only_the_retry_is_stored():
        threading.Event().wait(0.001)
    crash(transport)

    attempts: list[int] = []
    after = Bus(FAST, transport=SqliteTransport(path))
    after.add_target("a", ONBOARDING, lambda e: (attempts.append(1), fail(e)))
    [delivery] = after.get(one.id).deliveries  # type: ignore[union-attr]
    assert (delivery.state, delivery.attempts) == ("retrying", 1)
    assert after.transport.backlog("a") == []  # already taken by the bus
    after.transport._memory._clock = lambda: float("inf")  # type: ignore[attr-defined]  # its hour has passed
    after.start()
    assert after.join(JOIN)
    assert len(attempts) == 2, "attempts 2 and 3 only: the first was made before the crash"
    [letter] = after.dead_letters()
    assert letter.attempts == 3
    after.stop(JOIN)


def test_the_bus_dead_letters_what_was_queued_for_a_target_no_longer_configured(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    before = Bus(FAST, transport=SqliteTransport(path))
    before.add_target("removed", ONBOARDING, lambda e: None)
    one = event(1)
    before.put_events([one])
    before.stop(0)

    after = Bus(FAST, transport=SqliteTransport(path))
    after.add_target("other", EventTrigger("other", CONTROL_PLANE_SOURCE), lambda e: None)
    after.start()
    [letter] = after.dead_letters()
    assert (letter.event, letter.target, letter.attempts) == (one, "removed", 0)
    assert "no longer configured" in letter.last_error
    after.stop(JOIN)
    assert SqliteTransport(path).take_stranded(set()) == [], "acked once dead-lettered"


class _FailingInserts(_SlowCommits):
    def executemany(self, sql: str, rows: Any) -> Any:
        if sql.startswith("INSERT") and not self.release.is_set():
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.executemany(sql, rows)


def test_events_the_transport_could_not_store_are_refused_and_not_remembered(tmp_path: Path) -> None:
    transport = SqliteTransport(tmp_path / "bus.sqlite3")
    failing = _FailingInserts(transport._db)
    transport._db = failing  # type: ignore[assignment]
    got: list[str] = []
    bus = Bus(FAST, transport=transport)
    bus.add_target("a", ONBOARDING, lambda e: got.append(e.id))
    bus.start()
    batch = [event(i) for i in range(10)]
    with pytest.raises(UnavailableError, match="disk I/O error"):
        bus.accept(batch)
    assert not bus.busy("a") and bus.join(JOIN)
    assert bus.get(batch[0].id) is None, "a refused event is not in the log"
    failing.release.set()  # the disk is back: the client sends the same events again
    assert bus.accept(batch)
    assert bus.join(JOIN)
    assert got == [e.id for e in batch], "and they are delivered: dedup did not remember the refused ids"
    bus.stop(JOIN)


def test_a_stop_that_cannot_drain_leaves_the_rest_queued_for_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    running, release = threading.Event(), threading.Event()

    def stuck(e: Event) -> None:
        running.set()
        release.wait(JOIN)

    before = Bus(FAST, transport=SqliteTransport(path))
    before.add_target("a", ONBOARDING, stuck)
    before.start()
    accepted = [event(i) for i in range(3)]
    for one in accepted:  # one message each: the first runs, the others wait behind it
        before.put_events([one])
    assert running.wait(JOIN)
    assert before.stop(timeout=0) is False
    assert before.dead_letters() == [], "nothing is dead-lettered: it stays queued"
    release.set()  # the hook returns after the stop: its ack is not written, so it runs again too

    got: list[str] = []
    after = Bus(FAST, transport=SqliteTransport(path))
    after.add_target("a", ONBOARDING, lambda e: got.append(e.id))
    after.start()
    assert after.join(JOIN)
    assert got == [e.id for e in accepted]
    after.stop(JOIN)


def test_an_event_whose_detail_cannot_be_stored_is_refused_and_not_counted(tmp_path: Path) -> None:
    bus = Bus(FAST, transport=SqliteTransport(tmp_path / "bus.sqlite3"))
    bus.add_target("a", ONBOARDING, lambda e: None)
    bus.start()
    odd = Event.create("onboardingRequest", {"tenantId": "t1", "handle": object()})
    with pytest.raises(TypeError):
        bus.accept([odd])
    assert not bus.busy("a") and bus.get(odd.id) is None
    bus.stop(JOIN)


# --- sbt serve's control plane --------------------------------------------------------------------------------

def test_sbt_serve_keeps_the_queues_in_sqlite_and_the_harness_in_memory(tmp_path: Path) -> None:
    from sbt_core.config import load_config
    from sbt_core.plugins import discover
    from sbt_core.runtime.bus import InProcessTransport
    from sbt_core.runtime.control_plane import ControlPlane
    from sbt_core.testing import start_control_plane

    catalog = discover()
    served = ControlPlane.from_config(catalog, load_config(catalog, None, raw={"state_dir": str(tmp_path / "a")}),
                                      tenants=False)
    assert isinstance(served.bus.transport, SqliteTransport)
    assert served.bus.transport.path == tmp_path / "a" / "bus.sqlite3"
    served.close()
    harness = start_control_plane(tmp_path / "b")
    assert isinstance(harness.bus.transport, InProcessTransport)
    harness.close()


def test_post_events_answers_only_once_its_events_are_committed(tmp_path: Path) -> None:
    from sbt_core.testing import start_control_plane

    harness = start_control_plane(tmp_path, config={"events": {"transport": "sqlite"}})
    try:
        transport = harness.bus.transport
        assert isinstance(transport, SqliteTransport)
        harness.bus.subscribe("onboarded", ONBOARDING, lambda e: None)  # so the event has a queue to go to
        slow = _SlowCommits(transport._db)
        transport._db = slow  # type: ignore[assignment]
        answers: list[int] = []
        client = harness.client("event/event_write")
        body = [{"detail-type": "onboardingRequest", "source": CONTROL_PLANE_SOURCE, "detail": {"tenantId": "t1"}}]
        poster = threading.Thread(target=lambda: answers.append(client.post("/events", json=body).status_code))
        poster.start()
        assert slow.started.wait(JOIN), "the request's events are being committed"
        poster.join(0.2)
        assert answers == [], "no answer while the commit is still running"
        slow.release.set()
        poster.join(JOIN)
        assert answers == [200]
    finally:
        harness.close()


def test_the_message_encoding_round_trips_every_field_and_refuses_what_an_event_would() -> None:
    from datetime import UTC, datetime

    import orjson

    from sbt_core.runtime.bus.sqlite_transport import decode_events, encode_events

    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    plain = tuple(Event("ingestUsage", "sbt.app.plane", {"n": n}, id=f"id-{n}", time=when,
                        resources=["arn:x"] if n else []) for n in range(5))
    unusual = (Event("custom", "src", {"a": [1]}, id="e1", time=when, version="1", account="123", region="eu-1"),
               *plain)
    for events in (plain, unusual, (event(1),)):
        assert decode_events(encode_events(events)) == events
    # What the validating constructor refuses is refused.
    rows = orjson.loads(encode_events(plain))
    for column, value in ((0, " "), (1, ""), (3, "")):
        bad = [list(r) for r in rows]
        bad[2][column] = value
        with pytest.raises(ValueError):
            decode_events(orjson.dumps(bad))
    with pytest.raises((ValueError, TypeError, IndexError)):
        decode_events(orjson.dumps([r[:8] for r in rows]))
