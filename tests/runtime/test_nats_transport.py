"""The bus on NATS JetStream, against the machine's nats-server (docs/several-processes.md)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from sbt_core.config import EventsConfig
from sbt_core.models import Event
from sbt_core.runtime.bus import Bus, Message
from sbt_core.runtime.bus.nats_transport import NatsTransport, token
from sbt_core.testing.transport import check_transport
from sbt_core.triggers import EventTrigger

_FAST = EventsConfig(transport="nats", backoff_base_seconds=0.01, backoff_max_seconds=0.05, max_attempts=3,
                     drain_timeout_seconds=5)


def test_the_nats_transport_keeps_the_transport_contract(nats_stream: dict[str, str]) -> None:
    check_transport(lambda: NatsTransport(**nats_stream))


def test_target_names_become_single_subject_tokens() -> None:
    assert token("billing_put_usage") == "billing_put_usage"
    assert token("tenant registry.v2") == "tenant=20registry=2Ev2"
    assert token("*>") == "=2A=3E"


def test_a_message_not_acked_is_handed_to_the_next_consumer(nats_stream: dict[str, str]) -> None:
    first = NatsTransport(**nats_stream, ack_wait_seconds=1.0)
    first.open("a")
    sent = Message("a", Event.create("x", {"n": 1}))
    first.send([sent])
    taken = first.receive("a")
    assert taken == sent
    # The process dies holding it: no ack, no NAK (close() would NAK it).
    first._closed = True
    first._shutdown()
    second = NatsTransport(**nats_stream, ack_wait_seconds=1.0)
    try:
        second.open("a")
        assert second.receive("a") == sent, "an un-acked message must be redelivered after ack_wait"
    finally:
        second.close()


def test_what_a_process_stored_it_takes_back_undecoded_and_others_decode(nats_stream: dict[str, str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import sbt_core.runtime.bus.nats_transport as nats_transport

    monkeypatch.setattr(nats_transport, "_KEPT_EVENTS", 3)
    here, other = NatsTransport(**nats_stream), NatsTransport(**nats_stream)
    try:
        here.open("a")
        other.open("b")
        mine = Message("a", [Event.create("x", {"n": n}) for n in range(2)])
        theirs = [Message("b", Event.create("x", {"n": n})) for n in range(4)]
        here.send([mine, *theirs])  # 6 events stored; at most 3 kept, the oldest (mine) dropped first
        assert wait_kept(here) <= 3
        taken = other.receive("b")
        assert taken == theirs[0] and taken.events[0] is not theirs[0].events[0]  # decoded from the stream
        here.send([again := Message("a", Event.create("x", {"n": 9}))])
        wait_kept(here, at_least=1)
        assert here.receive("a") == mine  # fetched after it was dropped from memory: decoded, still equal
        got = here.receive("a")
        assert got == again and got.events[0] is again.events[0]  # the stored bytes, not decoded again
    finally:
        here.close()
        other.close()


def wait_kept(transport: NatsTransport, at_least: int = 0) -> int:
    """Events kept for ``transport`` once its publish acks have been handled."""
    deadline = time.monotonic() + 5
    while transport._sent_here_events < at_least and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # the last acks' callbacks
    return transport._sent_here_events


def test_a_re_put_id_is_stored_once_but_a_replay_is_not_deduplicated(nats_stream: dict[str, str]) -> None:
    t = NatsTransport(**nats_stream)
    try:
        t.open("a")
        event = Event.create("x", {"n": 1})
        t.send([Message("a", event)])
        t.send([Message("a", event)])  # a client re-putting the entry with its id, to any process
        t.send([Message("a", event)], dedup=False)  # a replay
        marker = Message("a", Event.create("x", {"n": 2}))
        t.send([marker])
        got = [t.receive("a") for _ in range(3)]
        assert [m.events[0].id if m else None for m in got] == [event.id, event.id, marker.events[0].id]
    finally:
        t.close()


def test_a_schedule_target_hands_out_one_message_at_a_time_across_processes(nats_stream: dict[str, str]) -> None:
    one, two = NatsTransport(**nats_stream), NatsTransport(**nats_stream)
    try:
        one.open("run", exclusive=True)
        two.open("run", exclusive=True)
        a, b = Message("run", Event.create("x", {"n": 1})), Message("run", Event.create("x", {"n": 2}))
        one.send([a, b])
        running = one.receive("run")
        assert running == a
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(two.receive("run")))
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive(), "the second run must wait until the first is acked"
        assert running is not None
        one.ack(running)
        waiter.join(10)
        assert got == [b]
    finally:
        one.close()
        two.close()


def test_two_buses_share_the_queues_and_a_failed_event_is_retried_then_dead_lettered(
        nats_stream: dict[str, str]) -> None:
    calls: list[tuple[str, int]] = []
    lock = threading.Lock()

    def handler(who: str) -> Any:
        def handle(event: Event) -> None:
            with lock:
                calls.append((who, event.detail["n"]))
            if event.detail["n"] < 0:
                raise RuntimeError("refused")
        return handle

    buses = []
    for who in ("A", "B"):
        bus = Bus(_FAST, transport=NatsTransport(**nats_stream))
        bus.add_target("hook", EventTrigger("thing", "sbt.control.plane"), handler(who))
        buses.append(bus)
    for bus in buses:
        bus.start()
    events = [Event.create("thing", {"n": n}) for n in range(40)] + [Event.create("thing", {"n": -1})]
    for i, event in enumerate(events):
        buses[i % 2].put_events([event])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not buses[0].dead_letters() + buses[1].dead_letters():
        time.sleep(0.05)
    for bus in buses:
        assert bus.stop(5)
    assert sorted(n for _, n in calls if n >= 0) == list(range(40)), "each event once, by one process"
    assert [n for _, n in calls].count(-1) == 3, "max_attempts attempts, then the dead-letter store"
    letters = buses[0].dead_letters() + buses[1].dead_letters()
    assert [(d.event.detail["n"], d.attempts) for d in letters] == [(-1, 3)]


@pytest.mark.parametrize("retention", ["limits"])
def test_the_stream_is_checked_and_updated_to_the_config(nats_stream: dict[str, str], retention: str) -> None:
    NatsTransport(**nats_stream, duplicate_window_seconds=60).close()
    t = NatsTransport(**nats_stream, duplicate_window_seconds=30, max_age_seconds=3600)
    try:
        info = t._run(t._js._jsm.stream_info(t.stream), 5)
        assert (info.config.duplicate_window, info.config.max_age) == (30, 3600)
    finally:
        t.close()
    from sbt_core.errors import StartupError

    with pytest.raises(StartupError, match="retention"):
        NatsTransport(**nats_stream, retention=retention)


def test_a_schedule_slot_fired_by_two_processes_runs_once(nats_stream: dict[str, str]) -> None:
    from datetime import UTC, datetime, timedelta

    from sbt_core.bindings import Binding
    from sbt_core.runtime.scheduler import Scheduler
    from sbt_core.triggers import parse_schedule

    runs: list[tuple[str, str]] = []
    start = datetime(2026, 1, 1, 10, 0, 13, tzinfo=UTC)
    binding = Binding(hook="billing_put_usage", interface="billing", provider="p",
                      trigger=parse_schedule("rate(1 minute)"))
    buses, schedulers = [], []
    for who, skew in (("A", 0), ("B", 17)):  # started 17 s apart: the same slots all the same
        bus = Bus(_FAST, transport=NatsTransport(**nats_stream))
        clock = (lambda s: lambda: start + timedelta(seconds=s))(skew)
        scheduler = Scheduler(bus, [binding], lambda hook, run, who=who: runs.append((who, run.scheduled_time)),
                              clock=clock)
        buses.append(bus)
        schedulers.append(scheduler)
        bus.start()
    assert schedulers[0].next_wake() == schedulers[1].next_wake() == datetime(2026, 1, 1, 10, 1, tzinfo=UTC)
    for minute in (1, 2, 3):
        for scheduler in schedulers:
            scheduler.tick(datetime(2026, 1, 1, 10, minute, 0, 500, tzinfo=UTC))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(runs) < 3:
        time.sleep(0.05)
    for bus in buses:
        assert bus.stop(5)
    assert sorted(slot for _, slot in runs) == [datetime(2026, 1, 1, 10, m, tzinfo=UTC) for m in (1, 2, 3)]


def test_dead_letters_in_postgresql_are_listed_and_replayed_from_any_process(nats_stream: dict[str, str],
                                                                             pg_database: str) -> None:
    from sbt_core.runtime.bus import SqlDeadLetters

    fixed = threading.Event()
    delivered: list[tuple[str, str]] = []

    def handler(who: str) -> Any:
        def handle(event: Event) -> None:
            if not fixed.is_set():
                raise RuntimeError("the provider is down")
            delivered.append((who, event.id))
        return handle

    buses = []
    for who in ("A", "B"):
        bus = Bus(_FAST, transport=NatsTransport(**nats_stream), dead_letters=SqlDeadLetters(pg_database))
        bus.add_target("hook", EventTrigger("thing", "sbt.control.plane"), handler(who))
        bus.start()
        buses.append(bus)
    try:
        event = Event.create("thing", {"n": 1})
        buses[0].put_events([event])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not buses[1].dead_letters():
            time.sleep(0.05)
        assert [d.event.id for d in buses[0].dead_letters()] == [d.event.id for d in buses[1].dead_letters()] \
            == [event.id]
        fixed.set()
        assert [d.event.id for d in buses[1].replay(event_id=event.id)] == [event.id]
        assert buses[0].dead_letters() == [], "replayed from one process, gone for every process"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not delivered:
            time.sleep(0.05)
        assert [event_id for _, event_id in delivered] == [event.id], "a replay is not dropped as a duplicate"
    finally:
        for bus in buses:
            bus.stop(5)


def test_the_nats_transport_needs_a_url_and_keeps_it_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from sbt_core.config import load_config, show
    from sbt_core.errors import ConfigError
    from sbt_core.plugins import discover

    catalog = discover(entry_points=False, builtins=True)
    with pytest.raises(ConfigError, match='events.url: transport = "nats" needs the NATS server url'):
        load_config(catalog, raw={"events": {"transport": "nats"}})
    monkeypatch.setenv("SBT_NATS_URL", "nats://sbt:s3cret@127.0.0.1:4222")
    config = load_config(catalog, raw={"events": {"transport": "nats", "url": {"env": "SBT_NATS_URL"},
                                                  "database_url": "postgresql://sbt:pw@db/sbt"}})
    assert config.events.url is not None
    assert config.events.url.get_secret_value() == "nats://sbt:s3cret@127.0.0.1:4222"
    shown = show(config, catalog)["events"]
    assert shown["url"] == {"env": "SBT_NATS_URL"} and "pw" not in str(shown["database_url"])


def test_the_event_log_in_postgresql_shows_the_same_from_every_process(nats_stream: dict[str, str],
                                                                         pg_database: str) -> None:
    from sbt_core.runtime.bus.shared_log import SqlEventLog

    def handle(event: Event) -> str:
        if event.detail["n"] < 0:
            raise RuntimeError("refused")
        return "ok"

    buses = []
    for _ in ("A", "B"):
        bus = Bus(_FAST, transport=NatsTransport(**nats_stream), event_log=SqlEventLog(pg_database, 1000))
        bus.add_target("hook", EventTrigger("thing", "sbt.control.plane"), handle)
        bus.start()
        buses.append(bus)
    try:
        good, bad = Event.create("thing", {"n": 1}), Event.create("thing", {"n": -1})
        buses[0].put_events([good])
        buses[1].put_events([bad])

        def states(bus: Bus) -> dict[str, tuple[str, int]]:
            out = {}
            for event in (good, bad):
                record = bus.get(event.id)
                if record is not None and record.deliveries:
                    out[event.id] = (record.deliveries[0].state, record.deliveries[0].attempts)
            return out

        want = {good.id: ("delivered", 1), bad.id: ("dead_lettered", 3)}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(states(b) == want for b in buses):
            time.sleep(0.05)
        assert [states(b) for b in buses] == [want, want], "each process shows every delivery, wherever it ran"
        newest = [{r.event.id for r in bus.recent(10)} for bus in buses]
        assert newest[0] == newest[1] and {good.id, bad.id} <= newest[0]
        record = buses[0].get(bad.id)
        assert record is not None and record.deliveries[0].last_error == "RuntimeError: refused"
    finally:
        for bus in buses:
            bus.stop(5)


def _die(transport: NatsTransport) -> None:
    """What ``kill -9`` leaves of ``transport``'s process: its connection gone, nothing acked or NAKed."""
    transport._closed = True
    transport._shutdown()


def test_a_message_that_kills_every_process_handling_it_is_dead_lettered_as_poison(
        nats_stream: dict[str, str]) -> None:
    from sbt_core.runtime.bus import MemoryDeadLetters

    config = EventsConfig(transport="nats", max_attempts=2, drain_timeout_seconds=5)
    letters = MemoryDeadLetters()
    calls: list[int] = []
    released = threading.Event()  # the handlers of "dead" processes stay blocked until the test ends
    current: list[NatsTransport] = []

    def handle(event: Event) -> None:
        calls.append(event.detail["n"])
        if event.detail["n"] < 0:  # the process dies mid-delivery
            _die(current[-1])
            released.wait(60)

    buses = []

    def process() -> Bus:
        transport = NatsTransport(**nats_stream, ack_wait_seconds=1.0, poison_after=config.max_attempts)
        current.append(transport)
        bus = Bus(config, transport=transport, dead_letters=letters)
        bus.add_target("hook", EventTrigger("thing", "sbt.control.plane"), handle)
        buses.append(bus)
        return bus

    try:
        first = process()
        poison, good = Event.create("thing", {"n": -1}), Event.create("thing", {"n": 1})
        # Two messages, fetched together: the good one is held, not handled, by each process that dies.
        first.put_events([poison])
        first.put_events([good])
        first.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not letters.select():
            if current[-1]._closed:  # the last process died: the next one starts (JetStream redelivers)
                process().start()
            time.sleep(0.05)
        assert [(d.event.id, d.target) for d in letters.select()] == [(poison.id, "hook")]
        assert letters.select()[0].last_error.startswith("poison: ")
        # The first handling, then max_attempts more that never finished; the next delivery is not handled.
        assert calls.count(-1) == 1 + config.max_attempts
        while time.monotonic() < deadline and 1 not in calls:
            time.sleep(0.05)
        assert calls.count(1) >= 1, "a message fetched beside it is delivered, not dead-lettered with it"
        buses[-1].join(10)
        assert [d.event.id for d in letters.select()] == [poison.id]
        while time.monotonic() < deadline and current[-1].pending("hook"):
            time.sleep(0.05)
        assert current[-1].pending("hook") == 0, "both acked: nothing left to redeliver"
    finally:
        released.set()
        for bus in buses:
            bus.stop(5)


def test_consumers_of_targets_not_configured_are_named_and_kept_until_dropped(
        nats_stream: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    from sbt_core.errors import ConflictError, NotFoundError
    from sbt_core.runtime.bus import MemoryDeadLetters
    from sbt_core.runtime.bus.nats_transport import untoken

    old = "old hook"  # written =XX in the consumer's name: named back as it was
    assert untoken(token(old)) == old
    before = NatsTransport(**nats_stream)  # a process of the config that still had the target
    before.open("hook")
    before.open(old)
    waiting = [Message(old, Event.create("thing", {"n": n})) for n in range(3)]
    before.send(waiting)
    before.close()

    letters = MemoryDeadLetters()
    bus = Bus(_FAST, transport=NatsTransport(**nats_stream), dead_letters=letters)
    bus.add_target("hook", EventTrigger("thing", "sbt.control.plane"), lambda event: None)
    with caplog.at_level("WARNING", logger="sbt.bus"):
        bus.start()
    try:
        warning = " ".join(r.getMessage() for r in caplog.records)
        assert f"{old} (3 message(s) not acked, no process pulling)" in warning and "sbt events drop-target" in warning
        assert letters.select() == [], "nothing is taken at start-up: another config version may deliver them"
        transport = bus.transport
        assert isinstance(transport, NatsTransport)
        assert [(c.target, c.waiting, c.pulled) for c in transport.stranded(["hook"])] == [(old, 3, False)]
        with pytest.raises(NotFoundError):
            transport.drop_target("never", letters)

        # A process whose config still has the target (an older version, mid-deploy) holds the messages.
        puller = NatsTransport(**nats_stream, ack_wait_seconds=1.0)
        puller.open(old)
        assert puller.receive(old) == waiting[0]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not transport.stranded(["hook"])[0].pulled:
            time.sleep(0.05)
        with pytest.raises(ConflictError, match="pulling"):
            transport.drop_target(old, letters)
        outcome = transport.drop_target(old, letters, force=True)
        assert (outcome.dead_lettered, outcome.left, outcome.deleted) == (0, 3, False), \
            "what a process holds cannot be taken: the consumer is kept, nothing is lost"
        assert [c.target for c in transport.stranded(["hook"])] == [old]

        _die(puller)  # its messages come back after ack_wait; its last pull request expires
        while time.monotonic() < deadline + 10 and transport.stranded(["hook"])[0].pulled:
            time.sleep(0.05)
        outcome = transport.drop_target(old, letters, wait_seconds=3.0)
        assert (outcome.dead_lettered, outcome.left, outcome.deleted) == (3, 0, True)
        assert sorted(d.event.detail["n"] for d in letters.select()) == [0, 1, 2]
        assert {d.last_error.split(":")[0] for d in letters.select()} == {"target removed"}
        assert transport.stranded(["hook"]) == []
    finally:
        bus.stop(5)


def test_sbt_events_drop_target_dead_letters_and_deletes_the_consumer(nats_stream: dict[str, str],
                                                                      tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from sbt_core.cli import CliState, build_app
    from sbt_core.runtime.bus import SqlDeadLetters

    sender = NatsTransport(**nats_stream)
    sender.open("gone")
    sent = Message("gone", Event.create("thing", {"n": 1}))
    sender.send([sent])
    sender.close()
    config = tmp_path / "sbt.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n'
                      f'[events]\ntransport = "nats"\nurl = "{nats_stream["url"]}"\n'
                      f'stream = "{nats_stream["stream"]}"\nsubject_prefix = "{nats_stream["subject_prefix"]}"\n'
                      '[providers.auth]\ntype = "local"\n')
    app = build_app(CliState(entry_points=False))
    result = CliRunner().invoke(app, ["events", "drop-target", "gone", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"target": "gone", "deadLettered": 1, "left": 0, "deleted": True}
    store = SqlDeadLetters.in_state_dir(tmp_path / "state")  # where `sbt serve` of this config keeps them
    try:
        assert [(d.event.id, d.target) for d in store.select()] == [(sent.events[0].id, "gone")]
    finally:
        store.close()
    result = CliRunner().invoke(app, ["events", "drop-target", "gone", "--config", str(config)])
    assert (result.exit_code, result.stderr) == (1, f"error: stream {nats_stream['stream']} has no consumer for "
                                                    "target gone\n")


def test_concurrent_sends_are_each_answered_once_stored_and_a_refused_one_raises(nats_stream: dict[str, str]) -> None:
    from sbt_core.errors import UnavailableError

    t = NatsTransport(**nats_stream)
    try:
        t.open("a")
        batches = [[Message("a", Event.create("x", {"n": n, "i": i})) for i in range(3)] for n in range(20)]
        senders = [threading.Thread(target=t.send, args=(batch,)) for batch in batches]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(30)
        assert t.pending("a") == 60, "every send returned once JetStream stored all of its messages"
        got: list[Message] = []
        deadline = time.monotonic() + 30  # a hang guard
        while len(got) < 60 and time.monotonic() < deadline:
            got += t.receive_many("a", 100)
        for n in range(len(batches)):  # each sender's messages in its order
            assert [m.events[0].detail["i"] for m in got if m.events[0].detail["n"] == n] == [0, 1, 2]
        t._run(t._js._jsm.delete_stream(t.stream), 10)  # JetStream can no longer store anything
        with pytest.raises(UnavailableError, match="could not store the events"):
            t.send([Message("a", Event.create("x", {}))])
    finally:
        t.close()
