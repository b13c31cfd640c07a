"""``POST /events`` (EventBridge PutEvents-like), ``GET /events`` and ``GET /events/{eventId}`` (the event log).

``POST /events`` takes ``{"Entries": [{"Source", "DetailType", "Detail", "Time"?, "Resources"?,
"EventBusName"?, "TraceHeader"?}]}`` as PutEvents does (``Detail`` a JSON string, or an object), or a
JSON list of EventBridge envelopes (``{"detail-type", "source", "detail", "id"?, "time"?, ...}``; a given
``id`` is kept, so a resent envelope is deduplicated). It answers 200 with ``{"FailedEntryCount": n,
"Entries": [{"EventId"} | {"ErrorCode", "ErrorMessage"}]}`` in request order: one bad entry never
rejects the others, exactly as PutEvents reports per-entry failures.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterator
from datetime import datetime
from itertools import repeat
from typing import Any, cast

import orjson

from ... import input_policy
from ...errors import BadRequestError, NotFoundError
from ...models import Event, from_json, parse_timestamp, to_json, utcnow
from ..contracts import EventBus, EventRecord, PutEventsEntryResult

__all__ = ["event_record_json", "parse_entries", "parse_entry", "put_events_response"]

_PUT_EVENTS_KEYS = {"Source", "DetailType", "Detail", "Time", "Resources", "EventBusName", "TraceHeader"}

#: PutEvents' error codes we use: a malformed Detail, or any other bad field.
MALFORMED_DETAIL = "MalformedDetail"
INVALID_ARGUMENT = "InvalidArgument"


class EntryError(Exception):
    """One entry is invalid; ``code`` is a PutEvents ErrorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


#: The last three hex digits of the ids of one batch: entry ``i`` of a batch of up to 4096 ends in ``_HEX3[i]``.
_HEX3 = tuple(format(i, "03x") for i in range(4096))


def new_event_ids(count: int) -> list[str]:
    """``count`` distinct version-4 UUIDs as text for one batch: one ``uuid4()`` for the batch, then entry
    ``i`` replaces its last 3 hex digits with ``i`` (up to 4096 entries; a bigger batch adds ``i`` mod
    2**48 to the whole last group instead).

    ``uuid4()`` per entry cost as much as the rest of an entry's parsing, and a batch holds up to
    hundreds. Ids stay unique: within a batch the suffixes differ, and two batches share an id only if
    their 110 other random bits are equal (a 2**-110 chance per pair; 2**-74 for the big form) — what
    dedup per binding needs. They are not meant to be unguessable (the caller is told them, as with
    PutEvents).
    """
    if count <= len(_HEX3):
        prefix = str(uuid.uuid4())[:-3]
        return [prefix + suffix for suffix in _HEX3[:count]]
    head, node = str(uuid.uuid4()).rsplit("-", 1)
    base = int(node, 16)
    prefix = head + "-"
    mask = (1 << 48) - 1
    return [prefix + format((base + i) & mask, "012x") for i in range(count)]


def _put_events_entry(entry: dict[str, Any], event_id: str, received: datetime) -> Event:
    if not entry.keys() <= _PUT_EVENTS_KEYS:
        unknown = sorted(set(entry) - _PUT_EVENTS_KEYS)
        raise EntryError(INVALID_ARGUMENT, f"unknown field(s) {', '.join(unknown)}")
    source, detail_type, detail = entry.get("Source"), entry.get("DetailType"), entry.get("Detail")
    if not source or not detail_type or detail is None or detail == "":
        missing = [k for k in ("Source", "DetailType", "Detail") if entry.get(k) in (None, "")]
        raise EntryError(INVALID_ARGUMENT, f"{', '.join(missing)} required")
    if not isinstance(source, str) or not isinstance(detail_type, str) or not source.strip() \
            or not detail_type.strip():
        raise EntryError(INVALID_ARGUMENT, "Source and DetailType must be non-empty strings")
    for key, name in (("Source", source), ("DetailType", detail_type)):
        problem = input_policy.name_problem(name)
        if problem is not None:
            raise EntryError(INVALID_ARGUMENT, f"{key}: {problem}")
    if isinstance(detail, str):
        try:
            detail = input_policy.loads(detail, "Detail")
        except BadRequestError as exc:
            raise EntryError(MALFORMED_DETAIL, exc.message) from None
    if not isinstance(detail, dict):
        raise EntryError(MALFORMED_DETAIL, "Detail must be a JSON object")
    problem = input_policy.detail_problem(detail, "Detail")
    if problem is not None:
        raise EntryError(MALFORMED_DETAIL, problem)
    resources = entry.get("Resources")
    if resources is None:
        resources = []
    elif not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise EntryError(INVALID_ARGUMENT, "Resources must be a list of strings")
    when = received
    if entry.get("Time") is not None:
        try:
            when = parse_timestamp(entry["Time"])
        except ValueError as exc:
            raise EntryError(INVALID_ARGUMENT, f"Time: {exc}") from None
    # PutEvents stamps an entry without Time with the time of the call: one clock read per batch.
    return Event(detail_type=detail_type, source=source, detail=detail, id=event_id, time=when, resources=resources)


def parse_entry(entry: Any, *, event_id: str | None = None, received: datetime | None = None) -> Event:
    """One entry (PutEvents form or envelope) as an :class:`Event`; raises :class:`EntryError`.

    ``event_id`` is the id of a PutEvents entry (default: a new one); an envelope keeps its own ``id``.
    ``received`` is the time of the call, the default ``Time`` (default: now).
    """
    if not isinstance(entry, dict):
        raise EntryError(INVALID_ARGUMENT, "an entry must be a JSON object")
    if "DetailType" in entry or "Source" in entry or "Detail" in entry:
        return _put_events_entry(entry, event_id or new_event_ids(1)[0], received or utcnow())
    for key in ("source", "detail-type", "id"):
        value = entry.get(key)
        problem = input_policy.name_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise EntryError(INVALID_ARGUMENT, f"{key}: {problem}")
    problem = input_policy.detail_problem(entry.get("detail"))
    if problem is not None:
        raise EntryError(MALFORMED_DETAIL, problem)
    try:
        return from_json(Event, entry)
    except BadRequestError as exc:
        code = MALFORMED_DETAIL if exc.message.startswith("detail") else INVALID_ARGUMENT
        raise EntryError(code, exc.message) from None


def parse_entries(data: Any) -> list[Event | EntryError]:
    """Every entry of a ``POST /events`` body, parsed or with its error, in order.

    :raises BadRequestError: the body is neither ``{"Entries": [...]}`` nor a list, or holds no entry.
    """
    if isinstance(data, dict) and data.keys() == {"Entries"}:
        entries = data["Entries"]
    elif isinstance(data, list):
        entries = data
    else:
        raise BadRequestError('expected {"Entries": [...]} (PutEvents) or a JSON list of events')
    if not isinstance(entries, list) or not entries:
        raise BadRequestError("Entries must be a non-empty list")
    received = utcnow()
    ids = new_event_ids(len(entries))
    batch = _parse_batch(entries, ids, received)
    if batch is not None:
        return cast("list[Event | EntryError]", batch)  # a list of events is such a list; lists are invariant
    out: list[Event | EntryError] = []
    for entry, event_id in zip(entries, ids, strict=True):
        try:
            out.append(parse_entry(entry, event_id=event_id, received=received))
        except EntryError as exc:
            out.append(exc)
    return out


_PLAIN_FIELDS = operator.itemgetter("Source", "DetailType", "Detail")
#: JSON types a ``Time`` may have for the batch path (a bool, which parse_timestamp refuses, hashes as 0 or 1).
_TIME_TYPES = {str, int, float, type(None)}
_RESOURCES_TYPES = {list, type(None)}


def _parse_batch(entries: list[Any], ids: list[str], received: datetime) -> list[Event] | None:
    """The usual body, every entry a valid PutEvents entry — ``Source``, ``DetailType`` and ``Detail``
    (JSON text of an object), each optionally with ``Time``, ``Resources`` (a list of strings, or null),
    ``EventBusName`` and ``TraceHeader``, as an SDK sends them: the events, checked as
    :func:`_put_events_entry` checks them, one field of the whole batch at a time. None at the first doubt:
    :func:`parse_entries` then goes entry by entry, which gives the exact per-entry answers and messages.

    Each step is one C-level pass over the batch (``map`` over the entries, ``orjson.loads`` over the
    details) and each distinct (source, detail type) pair and ``Time`` is checked once: a Python loop per
    entry cost more than parsing its ``Detail``.
    """
    try:
        if set(map(type, entries)) != {dict}:
            return None
        fields = set().union(*entries)  # every field some entry has
        if not fields <= _PUT_EVENTS_KEYS:
            return None
        sources, detail_types, raw = zip(*map(_PLAIN_FIELDS, entries), strict=True)  # KeyError: an entry lacks one
        for source, detail_type in set(zip(sources, detail_types, strict=True)):
            if type(source) is not str or type(detail_type) is not str or not source.strip() \
                    or not detail_type.strip() or not source.isprintable() or not detail_type.isprintable():
                return None
        if set(map(type, raw)) != {str}:
            return None
        brackets = map(operator.add, map(str.count, raw, repeat("{")), map(str.count, raw, repeat("[")))
        if max(brackets) > input_policy.MAX_DEPTH:  # as input_policy.plainly_shallow, in C-level passes
            return None  # the entry-by-entry path decodes (and names the depth) under the input policy
        # orjson refuses NaN, infinities and unpaired surrogates, as the input policy does
        details = list(map(orjson.loads, raw))
        times = _batch_times(entries, received) if "Time" in fields else [received] * len(entries)
        resources = _batch_resources(entries) if "Resources" in fields else None
    except (KeyError, TypeError, ValueError):  # a missing or unhashable field, a malformed Detail, Time or Resources
        return None
    if set(map(type, details)) != {dict}:
        return None
    try:
        for key in input_policy.DETAIL_ID_KEYS:  # each distinct name once; one not printable: entry by entry
            names = set(map(dict.get, details, repeat(key)))
            names.discard(None)
            if not all(type(name) is str and name.isprintable() for name in names):
                return None
    except TypeError:  # an unhashable value (a list or object where a name belongs)
        return None
    if resources is None:
        resources = [[] for _ in ids]
    return [Event(detail_type=detail_type, source=source, detail=detail, id=event_id, time=when, resources=res)
            for detail_type, source, detail, event_id, when, res in zip(
                detail_types, sources, details, ids, times, resources, strict=True)]


def _batch_times(entries: list[dict[str, Any]], received: datetime) -> list[datetime]:
    """Each entry's ``Time`` (missing or null: ``received``), each distinct value parsed once. Raises
    TypeError for a type ``parse_timestamp`` does not take, ValueError for a malformed value."""
    given = list(map(dict.get, entries, repeat("Time")))
    if not set(map(type, given)) <= _TIME_TYPES:
        raise TypeError("Time of another type")
    parsed = {value: received if value is None else parse_timestamp(value) for value in set(given)}
    return list(map(parsed.__getitem__, given))


def _batch_resources(entries: list[dict[str, Any]]) -> list[list[str]]:
    """Each entry's ``Resources`` list as given, a new empty one where it is missing or null. Raises
    TypeError unless every other one is a list of strings."""
    given = list(map(dict.get, entries, repeat("Resources")))
    if not set(map(type, given)) <= _RESOURCES_TYPES or not all(type(r) is str for each in given if each for r in each):
        raise TypeError("Resources other than lists of strings")
    return [[] if each is None else each for each in given]


def put_events_response(parsed: list[Event | EntryError], bus: EventBus) -> dict[str, Any]:
    """Put the valid events on ``bus`` in one batch and answer PutEvents-style, in request order."""
    events = [p for p in parsed if isinstance(p, Event)]
    # Bus.accept accepts all or nothing (False only once the bus has stopped) without building a result
    # record per entry nor putting each event through the input policy again (parse_entries did); any other
    # EventBus answers per entry through put_events.
    accept = getattr(bus, "accept", None)
    results: Iterator[PutEventsEntryResult]
    if accept is not None and (not events or accept(events)):
        if len(events) == len(parsed):
            return {"FailedEntryCount": 0, "Entries": [{"EventId": event.id} for event in events]}
        results = (PutEventsEntryResult(event_id=event.id) for event in events)
    else:  # another EventBus, or a stopped bus (whose put_events says so per entry)
        results = iter(bus.put_events(events) if events else [])
    entries: list[dict[str, str]] = []
    failed = 0
    for item in parsed:
        result = PutEventsEntryResult(error_code=item.code, error_message=item.message) \
            if isinstance(item, EntryError) else next(results)
        if result.event_id is not None:
            entries.append({"EventId": result.event_id})
        else:
            failed += 1
            entries.append({"ErrorCode": result.error_code or "InternalFailure",
                            "ErrorMessage": result.error_message or "the event was not accepted"})
    return {"FailedEntryCount": failed, "Entries": entries}


def event_record_json(record: EventRecord) -> dict[str, Any]:
    """An event-log entry as JSON: ``{event: <envelope>, received, deliveries: [{target, state, attempts,
    lastError, updated}]}``."""
    data: dict[str, Any] = to_json(record)
    return data


def get_record(bus: EventBus, event_id: str) -> EventRecord:
    """The log entry of ``event_id``; raises NotFoundError (404)."""
    record = bus.get(event_id)
    if record is None:
        raise NotFoundError(f"Event {event_id} not found.")
    return record
