"""``POST /events`` (EventBridge PutEvents-like), ``GET /events`` and ``GET /events/{eventId}`` (the event log).

``POST /events`` takes ``{"Entries": [{"Source", "DetailType", "Detail", "Time"?, "Resources"?,
"EventBusName"?, "TraceHeader"?}]}`` as PutEvents does (``Detail`` a JSON string, or an object), or a
JSON list of EventBridge envelopes (``{"detail-type", "source", "detail", "id"?, "time"?, ...}``; a given
``id`` is kept, so a resent envelope is deduplicated). It answers 200 with ``{"FailedEntryCount": n,
"Entries": [{"EventId"} | {"ErrorCode", "ErrorMessage"}]}`` in request order: one bad entry never
rejects the others, exactly as PutEvents reports per-entry failures.
"""

from __future__ import annotations

import json
from typing import Any

from ...errors import BadRequestError, NotFoundError
from ...models import Event, from_json, parse_timestamp, to_json
from ..seams import EventBus, EventRecord, PutEventsEntryResult

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


def _put_events_entry(entry: dict[str, Any]) -> Event:
    unknown = sorted(set(entry) - _PUT_EVENTS_KEYS)
    if unknown:
        raise EntryError(INVALID_ARGUMENT, f"unknown field(s) {', '.join(unknown)}")
    missing = [k for k in ("Source", "DetailType", "Detail") if entry.get(k) in (None, "")]
    if missing:
        raise EntryError(INVALID_ARGUMENT, f"{', '.join(missing)} required")
    source, detail_type, detail = entry["Source"], entry["DetailType"], entry["Detail"]
    if not isinstance(source, str) or not isinstance(detail_type, str):
        raise EntryError(INVALID_ARGUMENT, "Source and DetailType must be strings")
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except json.JSONDecodeError as exc:
            raise EntryError(MALFORMED_DETAIL, f"Detail is not valid JSON: {exc.msg}") from None
    if not isinstance(detail, dict):
        raise EntryError(MALFORMED_DETAIL, "Detail must be a JSON object")
    resources = entry.get("Resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise EntryError(INVALID_ARGUMENT, "Resources must be a list of strings")
    kwargs: dict[str, Any] = {}
    if entry.get("Time") is not None:
        try:
            kwargs["time"] = parse_timestamp(entry["Time"])
        except ValueError as exc:
            raise EntryError(INVALID_ARGUMENT, f"Time: {exc}") from None
    try:
        return Event(detail_type=detail_type, source=source, detail=detail, resources=resources, **kwargs)
    except ValueError as exc:
        raise EntryError(INVALID_ARGUMENT, str(exc)) from None


def parse_entry(entry: Any) -> Event:
    """One entry (PutEvents form or envelope) as an :class:`Event`; raises :class:`EntryError`."""
    if not isinstance(entry, dict):
        raise EntryError(INVALID_ARGUMENT, "an entry must be a JSON object")
    if "DetailType" in entry or "Source" in entry or "Detail" in entry:
        return _put_events_entry(entry)
    try:
        return from_json(Event, entry)
    except BadRequestError as exc:
        code = MALFORMED_DETAIL if exc.message.startswith("detail") else INVALID_ARGUMENT
        raise EntryError(code, exc.message) from None


def parse_entries(data: Any) -> list[Event | EntryError]:
    """Every entry of a ``POST /events`` body, parsed or with its error, in order.

    :raises BadRequestError: the body is neither ``{"Entries": [...]}`` nor a list, or holds no entry.
    """
    if isinstance(data, dict) and set(data) == {"Entries"}:
        entries = data["Entries"]
    elif isinstance(data, list):
        entries = data
    else:
        raise BadRequestError('expected {"Entries": [...]} (PutEvents) or a JSON list of events')
    if not isinstance(entries, list) or not entries:
        raise BadRequestError("Entries must be a non-empty list")
    out: list[Event | EntryError] = []
    for entry in entries:
        try:
            out.append(parse_entry(entry))
        except EntryError as exc:
            out.append(exc)
    return out


def put_events_response(parsed: list[Event | EntryError], bus: EventBus) -> dict[str, Any]:
    """Put the valid events on ``bus`` in one batch and answer PutEvents-style, in request order."""
    events = [p for p in parsed if isinstance(p, Event)]
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
    return to_json(record)  # type: ignore[no-any-return]


def get_record(bus: EventBus, event_id: str) -> EventRecord:
    """The log entry of ``event_id``; raises NotFoundError (404)."""
    record = bus.get(event_id)
    if record is None:
        raise NotFoundError(f"Event {event_id} not found.")
    return record
