"""``POST /events`` batch acceptance after the throughput work: the fast paths give the same answers as the
careful ones (per-entry errors included), orjson gives the standard library's results, and the bus's
batch accept and the worker's burst handling keep every delivery rule."""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from starlette.responses import JSONResponse

from sbt_core.config import EventsConfig
from sbt_core.errors import BadRequestError, ProviderError
from sbt_core.input_policy import loads
from sbt_core.models import APPLICATION_PLANE_SOURCE, Event, utcnow
from sbt_core.runtime.bus import Bus
from sbt_core.runtime.contracts import EventRecord, PutEventsEntryResult
from sbt_core.runtime.http import events as ev
from sbt_core.runtime.http._json import FastJSONResponse
from sbt_core.runtime.http.hooks import json_body
from sbt_core.triggers import EventTrigger

INGEST = EventTrigger("ingestUsage", APPLICATION_PLANE_SOURCE)
FAST = EventsConfig(max_attempts=2, backoff_base_seconds=0, backoff_max_seconds=0)
JOIN = 10.0


def entry(detail: Any = '{"tenantId": "t1"}', **fields: Any) -> dict[str, Any]:
    return {"Source": APPLICATION_PLANE_SOURCE, "DetailType": "ingestUsage", "Detail": detail, **fields}


#: Every kind of entry: plain ones (the fast path) and each way one can be odd or wrong.
ENTRIES: list[Any] = [
    entry(),
    entry({"tenantId": "t2"}),  # Detail as an object
    entry('{"x": NaN, "big": 123456789012345678901234567890}'),  # json accepts, the input policy does not
    entry("{not json"),
    entry("[1, 2]"),
    entry('"text"'),
    entry(""),
    entry(None),
    entry(Unknown=1),
    entry(Time="2026-01-31T12:00:00Z"),
    entry(Time="yesterday"),
    entry(Resources=["arn:x"]),
    entry(Resources="arn:x"),
    entry(EventBusName="default", TraceHeader="t"),
    {"Source": "  ", "DetailType": "ingestUsage", "Detail": "{}"},
    {"Source": 5, "DetailType": "ingestUsage", "Detail": "{}"},
    {"Source": APPLICATION_PLANE_SOURCE, "Detail": "{}"},
    {"detail-type": "ingestUsage", "source": APPLICATION_PLANE_SOURCE, "id": "env-1", "detail": {"a": 1}},
    {"detail-type": "ingestUsage", "source": APPLICATION_PLANE_SOURCE, "detail": "nope"},
    "not an object",
    entry('{"tenantId": "t3"}'),
]


def same(a: Event | ev.EntryError, b: Event | ev.EntryError) -> bool:
    if isinstance(a, ev.EntryError) or isinstance(b, ev.EntryError):
        both = isinstance(a, ev.EntryError) and isinstance(b, ev.EntryError)
        return both and (a.code, a.message) == (b.code, b.message)
    if math.isnan(a.detail.get("x", 0)):  # NaN != NaN: compare the rest
        return attrs.evolve(a, detail={}) == attrs.evolve(b, detail={}) and a.detail.keys() == b.detail.keys()
    return a == b


def test_the_batch_fast_path_answers_exactly_as_parse_entry_does_entry_by_entry() -> None:
    parsed = ev.parse_entries({"Entries": ENTRIES})
    assert len(parsed) == len(ENTRIES)
    received = parsed[0].time  # type: ignore[union-attr]
    for item, raw in zip(parsed, ENTRIES, strict=True):
        event_id = item.id if isinstance(item, Event) and "id" not in raw else None
        expected: Event | ev.EntryError
        try:
            expected = ev.parse_entry(raw, event_id=event_id or "x", received=received)
        except ev.EntryError as exc:
            expected = exc
        if isinstance(expected, Event) and isinstance(item, Event) and "detail-type" in raw:
            expected = attrs.evolve(expected, time=item.time)  # an envelope without time is stamped when parsed
        assert same(item, expected), (raw, item, expected)
    kinds = ["ok" if isinstance(p, Event) else p.code for p in parsed]
    assert kinds == ["ok", "ok", "MalformedDetail", "MalformedDetail", "MalformedDetail", "MalformedDetail",
                     "InvalidArgument", "InvalidArgument", "InvalidArgument", "ok", "InvalidArgument", "ok",
                     "InvalidArgument", "ok",
                     "InvalidArgument", "InvalidArgument", "InvalidArgument", "ok", "MalformedDetail",
                     "InvalidArgument", "ok"]
    nan_entry = parsed[2]
    assert isinstance(nan_entry, ev.EntryError)
    assert nan_entry.message.startswith("Detail.x: not a finite JSON number")
    bad = parsed[3]
    assert isinstance(bad, ev.EntryError) and bad.message.startswith("Detail: not valid JSON: Expecting")


def entry_by_entry(parsed: Sequence[Event | ev.EntryError], raw: Sequence[Any],
                   received: datetime | None = None) -> list[Event | ev.EntryError]:
    """What ``parse_entry`` answers for each of ``raw`` with the ids and time of the call (``received``, by
    default the first event's time) ``parse_entries`` gave them."""
    received = received or next(p.time for p in parsed if isinstance(p, Event))
    expected: list[Event | ev.EntryError] = []
    for item, entry_ in zip(parsed, raw, strict=True):
        try:
            expected.append(ev.parse_entry(entry_, event_id=item.id if isinstance(item, Event) else "x",
                                           received=received))
        except ev.EntryError as exc:
            expected.append(exc)
    return expected


def test_an_all_plain_batch_gives_the_events_parse_entry_gives() -> None:
    raw = [entry(json.dumps({"tenantId": f"t{i}", "n": i})) for i in range(50)]
    raw += [{"Source": "custom.source", "DetailType": "custom", "Detail": "{}"}]  # a second (source, type) pair
    parsed = ev.parse_entries({"Entries": raw})
    assert all(isinstance(p, Event) for p in parsed)
    assert all(same(a, b) for a, b in zip(parsed, entry_by_entry(parsed, raw), strict=True))
    resources = [p.resources for p in parsed if isinstance(p, Event)]
    assert len({id(r) for r in resources}) == len(resources)  # each event its own list


@pytest.mark.parametrize("spoiler", [
    entry("{not json"), entry("[1, 2]"), entry('"text"'), entry(""), entry({"tenantId": "obj"}),
    {"Source": "  ", "DetailType": "ingestUsage", "Detail": "{}"},
    {"Source": APPLICATION_PLANE_SOURCE, "DetailType": "\t", "Detail": "{}"},
    {"Source": ["a", "list"], "DetailType": "ingestUsage", "Detail": "{}"},  # unhashable
    {"Source": 5, "DetailType": "ingestUsage", "Detail": "{}"},
    entry(Time="2026-01-31T12:00:00Z"), "not an object",
], ids=repr)
def test_one_odd_entry_among_plain_ones_is_answered_on_its_own(spoiler: Any) -> None:
    raw = [entry('{"tenantId": "t1"}'), spoiler, entry('{"tenantId": "t2"}')]
    parsed = ev.parse_entries({"Entries": raw})
    assert all(same(a, b) for a, b in zip(parsed, entry_by_entry(parsed, raw), strict=True))
    assert isinstance(parsed[0], Event) and isinstance(parsed[2], Event)


def sdk_entry(detail: str = '{"tenantId": "t1"}', **fields: Any) -> dict[str, Any]:
    """An entry as an SDK's PutEvents sends it: every field given."""
    return entry(detail, **{"Time": "2026-01-31T12:00:00Z", "Resources": ["arn:x"], "EventBusName": "default",
                            "TraceHeader": "Root=1", **fields})


def parsed_on_the_batch_path(raw: list[dict[str, Any]], stamped: int) -> list[Event]:
    """The events ``parse_entries`` makes of ``raw``, after checking that it took the batch path and gave
    exactly what ``parse_entry`` gives entry by entry, with entry ``stamped`` (one without a Time) showing the
    time of the call."""
    assert ev._parse_batch(raw, ev.new_event_ids(len(raw)), utcnow()) is not None  # the batch path, not the fallback
    parsed = ev.parse_entries({"Entries": raw})
    events = [p for p in parsed if isinstance(p, Event)]
    assert len(events) == len(parsed)
    assert all(same(a, b) for a, b in zip(parsed, entry_by_entry(parsed, raw, events[stamped].time), strict=True))
    return events


def test_a_batch_whose_entries_all_have_the_same_fields_gives_the_events_parse_entry_gives() -> None:
    times: list[Any] = ["2026-01-31T12:00:00Z", "2026-01-31T13:00:00+01:00", 1769860800, 1769860800000, None]
    raw = [sdk_entry(json.dumps({"tenantId": f"t{i}"}), Time=times[i % len(times)],
                     Resources=[f"arn:{i}", "arn:shared"][: 1 + i % 2]) for i in range(40)]
    events = parsed_on_the_batch_path(raw, 4)  # Time null: the time of the call
    received = events[4].time
    assert events[0].time == events[1].time == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert (events[0].resources, events[1].resources) == (["arn:0"], ["arn:1", "arn:shared"])
    assert events[9].time == received != events[0].time
    with_time_only = [entry(Time="2026-01-31T12:00:00Z"), entry(Time="2026-01-31T12:00:00Z")]
    assert all(isinstance(p, Event) and p.resources == [] for p in ev.parse_entries({"Entries": with_time_only}))


def test_a_batch_mixing_which_optional_fields_its_entries_give_takes_the_batch_path_with_the_same_answers() -> None:
    raw = [entry('{"tenantId": "t0"}'), sdk_entry(), entry(Time="2026-01-31T12:00:00Z"), sdk_entry(Resources=None),
           entry(Resources=[]), entry(EventBusName="default"), sdk_entry(Time=None), entry(Time=1769860800)]
    events = parsed_on_the_batch_path(raw, 0)  # no Time: the time of the call
    received = events[0].time
    assert [e.time == received for e in events] == [True, False, False, False, True, True, True, False]
    assert [e.resources for e in events] == [[], ["arn:x"], [], [], [], [], ["arn:x"], []]
    assert len({id(e.resources) for e in events}) == len(events)  # each event its own list


@pytest.mark.parametrize("spoiler", [
    sdk_entry(Time="yesterday"), sdk_entry(Time=1e20), sdk_entry(Time=True), sdk_entry(Time=[1]),
    sdk_entry(Time={"at": 1}), sdk_entry(Resources="arn:x"), sdk_entry(Resources=[1]), sdk_entry(Resources=None),
    sdk_entry("{not json"), sdk_entry(Source=" "),
], ids=repr)
def test_one_odd_entry_among_entries_with_the_same_fields_is_answered_on_its_own(spoiler: Any) -> None:
    raw = [sdk_entry(), spoiler, sdk_entry('{"tenantId": "t2"}')]
    parsed = ev.parse_entries({"Entries": raw})
    assert all(same(a, b) for a, b in zip(parsed, entry_by_entry(parsed, raw), strict=True))
    assert isinstance(parsed[0], Event) and isinstance(parsed[2], Event)


def test_a_time_out_of_range_is_refused_for_its_entry_alone() -> None:
    parsed = ev.parse_entries({"Entries": [entry(), entry(Time=1e20), entry(Time=-10**20)]})
    assert isinstance(parsed[0], Event)
    assert [(p.code, p.message) for p in parsed[1:] if isinstance(p, ev.EntryError)] == [
        ("InvalidArgument", "Time: timestamp 1e+20 is out of range"),
        ("InvalidArgument", "Time: timestamp -100000000000000000000 is out of range")]


def test_batch_event_ids_are_distinct_version_4_uuids() -> None:
    ids = ev.new_event_ids(500) + ev.new_event_ids(500)
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i
               for i in ids)


def test_json_parsing_gives_the_standard_librarys_values_and_errors_under_the_input_policy() -> None:
    for text in (b'{"a": [1, 2.5, "\\u00e9", null, true]}', b'{"a": 1, "a": 2}', b"  [ ]  ",
                 b'{"n": -12345678901234567}', "{\"a\": 1}".encode("utf-16")):
        assert loads(text) == json.loads(text)
    for refused in (b'{"x": NaN}', b'{"big": 1e400}', b'{"s": "\\ud800"}'):
        with pytest.raises(BadRequestError, match="^x: |^big: |^s: "):
            loads(refused)
    for bad in (b'{"a":', b"{'a': 1}", b"[1,]"):
        with pytest.raises(json.JSONDecodeError) as expected:
            json.loads(bad)
        with pytest.raises(BadRequestError) as got:
            loads(bad)
        assert got.value.message.startswith(f"body: not valid JSON: {expected.value.msg}")
    with pytest.raises(BadRequestError, match="body: not valid JSON: Expecting value at line 2 column 11"):
        json_body(b'{"a":\n  1, "b": }')


def test_the_fast_json_response_renders_the_same_bytes() -> None:
    content = {"FailedEntryCount": 1, "Entries": [{"EventId": "é\u2028"}, {"ErrorCode": "X", "ErrorMessage": 'a"b'}],
               "none": None, "flag": True}
    assert FastJSONResponse(content).body == JSONResponse(content).body
    big = {"n": 2**70}
    assert FastJSONResponse(big).body == JSONResponse(big).body  # beyond orjson: Starlette's rendering


# --- the bus --------------------------------------------------------------------------------------------------

class PlainBus:
    """An EventBus without ``accept``: answered through ``put_events`` only (one entry refused)."""

    def __init__(self) -> None:
        self.put: list[Event] = []

    def put_events(self, events: Sequence[Event]) -> list[PutEventsEntryResult]:
        self.put += events
        return [PutEventsEntryResult(event_id=e.id) if i != 1 else
                PutEventsEntryResult(error_code="Throttled", error_message="slow down") for i, e in enumerate(events)]

    def get(self, event_id: str) -> EventRecord | None:
        return None


def test_per_entry_answers_in_request_order_over_the_bus_and_any_event_bus() -> None:
    bus = Bus(FAST)
    body = {"Entries": [entry(), entry("{bad"), entry(), entry(Time="never")]}
    answer = ev.put_events_response(ev.parse_entries(body), bus)
    assert answer["FailedEntryCount"] == 2
    ok1, bad, ok2, late = answer["Entries"]
    assert set(ok1) == {"EventId"} and set(ok2) == {"EventId"} and ok1 != ok2
    assert bad["ErrorCode"] == "MalformedDetail" and late["ErrorCode"] == "InvalidArgument"
    assert bus.get(ok1["EventId"]) is not None and bus.get(ok2["EventId"]) is not None
    assert len(bus.recent()) == 2  # nothing stored for the refused entries

    all_ok = ev.put_events_response(ev.parse_entries({"Entries": [entry(), entry()]}), bus)
    assert all_ok["FailedEntryCount"] == 0 and len(all_ok["Entries"]) == 2

    plain = PlainBus()
    answer = ev.put_events_response(ev.parse_entries({"Entries": [entry(), entry("{bad"), entry(), entry()]}),
                                    plain)  # type: ignore[arg-type]
    assert [sorted(e) for e in answer["Entries"]] == [["EventId"], ["ErrorCode", "ErrorMessage"],
                                                      ["ErrorCode", "ErrorMessage"], ["EventId"]]
    assert answer["Entries"][2]["ErrorCode"] == "Throttled" and answer["FailedEntryCount"] == 2
    bus.stop(JOIN)


def test_a_stopped_bus_refuses_each_entry_and_logs_nothing() -> None:
    bus = Bus(FAST)
    bus.stop(JOIN)
    events = [Event.create("ingestUsage", {"tenantId": "t"}) for _ in range(3)]
    assert bus.accept(events) is False
    assert [r.error_code for r in bus.put_events(events)] == ["BusClosed"] * 3
    answer = ev.put_events_response(ev.parse_entries({"Entries": [entry(), entry("{bad")]}), bus)
    assert answer["FailedEntryCount"] == 2 and answer["Entries"][0]["ErrorCode"] == "BusClosed"
    assert bus.recent() == []


def test_a_batch_repeating_an_id_is_delivered_once_per_target() -> None:
    bus = Bus(FAST)
    got: list[str] = []
    bus.add_target("ingest", INGEST, lambda e: got.append(e.id))
    bus.start()
    event = Event.create("ingestUsage", {"tenantId": "t"})
    assert bus.accept([event, event, attrs.evolve(event, detail={"other": 1})])
    assert bus.join(JOIN)
    assert got == [event.id]
    record = bus.get(event.id)
    assert record is not None and record.event == event  # the first envelope is kept
    assert [(d.target, d.state) for d in record.deliveries] == [("ingest", "delivered")]
    bus.stop(JOIN)


def test_a_failing_event_inside_a_burst_is_retried_and_dead_lettered_while_the_rest_are_delivered() -> None:
    bus = Bus(FAST)
    gate = threading.Event()
    calls: list[str] = []
    events = [Event.create("ingestUsage", {"tenantId": "t", "n": i}) for i in range(200)]
    poison = events[57].id

    def handler(event: Event) -> Any:
        gate.wait(JOIN)  # hold the first delivery so the rest queue up into one burst
        calls.append(event.id)
        if event.id == poison:
            raise ProviderError("metering is down")
        if event.detail["n"] == 3:
            raise BadRequestError("not a usage event")  # not retryable: dead-lettered at once
        return {"n": event.detail["n"]}

    bus.add_target("ingest", INGEST, handler)
    bus.start()
    assert bus.accept(events)
    gate.set()
    assert bus.join(JOIN)
    assert calls[:200] == [e.id for e in events]  # in order, one at a time
    assert calls[200:] == [poison]  # its retry, after the burst
    states = {e.id: bus.get(e.id).deliveries[0] for e in events}  # type: ignore[union-attr]
    assert states[poison].state == "dead_lettered" and states[poison].attempts == 2
    assert states[poison].last_error == "metering is down"
    assert states[events[3].id].state == "dead_lettered" and states[events[3].id].attempts == 1
    delivered = [e for e in events if e.id not in (poison, events[3].id)]
    assert all(states[e.id].state == "delivered" and states[e.id].attempts == 1 for e in delivered)
    assert states[events[10].id].result == {"n": 10}
    assert {(d.event.id, d.attempts) for d in bus.dead_letters()} == {(poison, 2), (events[3].id, 1)}
    assert not bus.busy("ingest")
    bus.stop(JOIN)
