"""Records of IMetering: meters, usage events, usage queries and rows, cancellations.

SBT defines no payloads for IMetering; these merge Stripe Billing Meters, OpenMeter and Amberflo
(docs/design.md section 4; Stripe Billing Meters' and OpenMeter's documented rules).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import attrs

from ..errors import BadRequestError
from ..input_policy import NONBLANK_NAME_PATTERN, NONBLANK_PATTERN, WHITESPACE, WHITESPACE_PRINTABLE, name_problem
from ._convert import WIRE_KEY, camel, parse_timestamp, stating
from .common import MAX_PAGE_LIMIT, utcnow
from .events import Event

#: An event property name (``valueProperty``, ``groupBy``, ``eventName``); the OpenAPI document states it.
PROPERTY_PATTERN = "^[A-Za-z_][A-Za-z0-9_.\\-]{0,99}$"
_PROPERTY = re.compile(PROPERTY_PATTERN)


class Aggregation(StrEnum):
    """How a meter folds the values of its events in a window (OpenMeter's names; Stripe's ``last`` = LATEST)."""

    SUM = "SUM"
    COUNT = "COUNT"
    MAX = "MAX"
    MIN = "MIN"
    AVG = "AVG"
    LATEST = "LATEST"  # value of the event with the latest *event* time in the window
    UNIQUE_COUNT = "UNIQUE_COUNT"  # number of distinct values (values compared as text)


class MeterStatus(StrEnum):
    """Stripe's meter status: an ``inactive`` meter refuses new events."""

    ACTIVE = "active"
    INACTIVE = "inactive"


class WindowSize(StrEnum):
    """Tumbling window of a usage query; windows start on the boundary in ``windowTimeZone``."""

    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    MONTH = "MONTH"


def _property_name(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    # fullmatch: ``$`` alone would let a trailing line break through, which the document's pattern refuses.
    if value is not None and not _PROPERTY.fullmatch(value):
        raise ValueError(f"{camel(attribute.name)} {value!r} must start with a letter or _ "
                         "and hold only letters, digits, _ . -")


stating(_property_name, pattern=PROPERTY_PATTERN)


def _group_by(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for name in value:
        _property_name(instance, attribute, name)
    if len(set(value)) != len(value):
        raise ValueError("groupBy names must be distinct")


def _names_pattern(space: str) -> str:
    blank, name = f"[{space}]*", PROPERTY_PATTERN[1:-1]
    return f"^{blank}(?:{name}{blank})?(?:,{blank}(?:{name}{blank})?)*$"


#: ``groupBy`` as text: names separated by commas, white space around them and empty items ignored
#: (:func:`_group_names`); each item of the list form may be such text too.
GROUP_BY_PATTERN = _names_pattern(WHITESPACE)
#: The same in a query string, where the input policy refuses control characters (white space included).
GROUP_BY_QUERY_PATTERN = _names_pattern(WHITESPACE_PRINTABLE)
# Distinct names (compared once trimmed, blank items left out) is beyond JSON Schema (uniqueItems compares
# the raw items): the description says it.
stating(_group_by, type=["array", "string"], pattern=GROUP_BY_PATTERN,
        items={"type": "string", "pattern": GROUP_BY_PATTERN},
        description="distinct event property names: a list, or comma-separated text (blank items are ignored)")


def _text(max_len: int, *, name: bool = True) -> Any:
    """Validator of a text field of 1 to ``max_len`` characters, not blank; a ``name`` (or id) also
    under the input policy's rule for names (no control characters)."""
    def check(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is not None and (not value.strip() or len(value) > max_len):
            raise ValueError(f"{camel(attribute.name)} must be 1 to {max_len} characters")
        if name and value is not None and (problem := name_problem(value)) is not None:
            raise ValueError(f"{camel(attribute.name)}: {problem}")
    return stating(check, minLength=1, maxLength=max_len, pattern=NONBLANK_NAME_PATTERN if name else NONBLANK_PATTERN)


@functools.cache
def time_zones() -> list[str]:
    """The IANA time zones ``windowTimeZone`` may name, sorted: the system's tz database (read on first use,
    a fraction of a second)."""
    return sorted(available_timezones())


def _zone(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"windowTimeZone {value!r} is not an IANA time zone (e.g. Europe/Paris)") from None


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v for v in (p.strip() for p in value.split(",")) if v)
    return tuple(value)


def _group_names(value: Any) -> tuple[str, ...]:
    """``groupBy`` as names: comma-separated text, or a list (a repeated query parameter) whose items may be
    such text too."""
    items = [value] if isinstance(value, str) else _tuple(value)
    return tuple(name for item in items for name in _tuple(item))


@attrs.frozen
class MeterCreate:
    """Body of ``POST /meters``.

    ``eventName`` is unique across meters (Stripe: one meter per event name). ``valueProperty`` is the
    property of a usage event holding the number; it defaults to ``value`` and is refused for COUNT.
    ``groupBy`` names the event properties a query may group by.
    """

    name: str = attrs.field(validator=_text(250))
    event_name: str = attrs.field(validator=[_text(100), _property_name])
    aggregation: Aggregation = attrs.field(default=Aggregation.SUM, converter=Aggregation)
    value_property: str | None = attrs.field(default=None, validator=_property_name)
    group_by: tuple[str, ...] = attrs.field(default=(), converter=_group_names, validator=_group_by)
    description: str | None = attrs.field(default=None, validator=_text(1000, name=False))

    def __attrs_post_init__(self) -> None:
        if self.aggregation is Aggregation.COUNT:
            if self.value_property is not None:
                raise ValueError("valueProperty is not allowed for a COUNT meter: it counts events")
        elif self.value_property is None:
            object.__setattr__(self, "value_property", "value")
        if self.value_property is not None and self.value_property in self.group_by:
            raise ValueError("valueProperty cannot also be a groupBy name")


# A COUNT meter takes no valueProperty (its __attrs_post_init__); valueProperty outside groupBy is beyond
# JSON Schema.
stating(MeterCreate, anyOf=[
    {"required": ["aggregation"], "properties": {"aggregation": {"const": "COUNT"}, "valueProperty": {"type": "null"}}},
    {"properties": {"aggregation": {"not": {"const": "COUNT"}}}}])


@attrs.frozen
class Meter:
    """A meter as the API answers it: ``{meterId, name, eventName, aggregation, valueProperty, groupBy,
    description, status, created, modified}``."""

    meter_id: str
    name: str
    event_name: str
    aggregation: Aggregation = attrs.field(converter=Aggregation)
    value_property: str | None
    group_by: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    description: str | None = None
    status: MeterStatus = attrs.field(default=MeterStatus.ACTIVE, converter=MeterStatus)
    created: datetime = attrs.field(factory=utcnow)
    modified: datetime = attrs.field(factory=utcnow)

    @classmethod
    def new(cls, meter_id: str, spec: MeterCreate) -> Meter:
        """A fresh active meter from a create request."""
        now = utcnow()
        return cls(meter_id=meter_id, name=spec.name, event_name=spec.event_name, aggregation=spec.aggregation,
                   value_property=spec.value_property, group_by=spec.group_by, description=spec.description,
                   created=now, modified=now)


#: What ``PUT /meters/{id}`` may change: anything else would rewrite history already aggregated.
MUTABLE_METER_FIELDS = ("name", "description", "status")


@attrs.frozen
class MeterUpdate:
    """Body of ``PUT /meters/{meterId}``: only ``name``, ``description`` and ``status`` may change."""

    name: str | None = attrs.field(default=None, validator=_text(250))
    description: str | None = attrs.field(default=None, validator=_text(1000, name=False))
    status: MeterStatus | None = attrs.field(default=None, converter=attrs.converters.optional(MeterStatus))

    @classmethod
    def from_body(cls, body: Any) -> MeterUpdate:
        """Parse a PUT body, refusing immutable fields with a message that says why."""
        from ._convert import from_json

        if isinstance(body, dict):
            frozen = sorted(k for k in body if k in {"eventName", "aggregation", "valueProperty", "groupBy", "meterId"})
            if frozen:
                raise BadRequestError(
                    f"{', '.join(frozen)} cannot change once a meter exists: it would rewrite usage already "
                    "aggregated; only name, description and status may change (create a new meter instead)")
        return from_json(cls, body)

    def apply(self, meter: Meter) -> Meter:
        """``meter`` with this update applied and ``modified`` set to now."""
        changes = {k: getattr(self, k) for k in MUTABLE_METER_FIELDS if getattr(self, k) is not None}
        return attrs.evolve(meter, **changes, modified=utcnow())


@attrs.frozen
class UsageEvent:
    """One usage event (the ``ingestUsage`` detail), canonical form:
    ``{tenantId, eventName, identifier?, timestamp?, properties}``.

    ``identifier`` is the idempotency key (defaults to the envelope id); ``timestamp`` is the event
    time (defaults to when the envelope was put); ``properties`` holds the value (under the meter's
    ``valueProperty``) and the group-by dimensions. Values are checked by the metering provider,
    which knows the meter.
    """

    tenant_id: str = attrs.field(validator=_text(256))
    event_name: str = attrs.field(validator=_text(100))
    identifier: str = attrs.field(validator=_text(256))
    timestamp: datetime
    properties: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_detail(cls, detail: Any, *, identifier: str | None = None, received: datetime | None = None) -> UsageEvent:
        """Parse an ``ingestUsage`` detail, canonical or Amberflo's flat form
        ``{tenantId, meterApiName, meterValue, meterTimeInMillis?, uniqueId?, ...dimensions}`` (flat:
        ``meterValue`` becomes ``properties.value``, other keys dimensions).

        Raises :class:`BadRequestError` naming what is missing or malformed.
        """
        if not isinstance(detail, dict):
            raise BadRequestError("usage event detail must be a JSON object")
        received = received or utcnow()
        if "meterApiName" in detail:
            rest = {k: v for k, v in detail.items() if k not in _FLAT_FORM_KEYS}
            dims = rest.pop("dimensions", None)
            if isinstance(dims, dict):
                rest.update(dims)
            properties = {**rest, "value": detail.get("meterValue")}
            detail = {"tenantId": detail.get("tenantId", detail.get("customerId")), "eventName": detail["meterApiName"],
                      "identifier": detail.get("uniqueId"), "timestamp": detail.get("meterTimeInMillis"),
                      "properties": properties}
        allowed = {"tenantId", "eventName", "identifier", "timestamp", "properties"}
        extra = sorted(set(detail) - allowed)
        if extra:
            raise BadRequestError(f"unknown usage event field(s) {', '.join(extra)}; "
                                  "put dimensions and the value under properties")
        problems = [f"{k} is required" for k in ("tenantId", "eventName") if not detail.get(k)]
        for key in ("tenantId", "eventName", "identifier"):
            if detail.get(key) is not None and not isinstance(detail[key], str):
                problems.append(f"{key} must be a string")
        properties = detail.get("properties", {})
        if not isinstance(properties, dict):
            problems.append("properties must be a JSON object")
        ident = detail.get("identifier") or identifier
        if not ident:
            problems.append("identifier is required when the event has no envelope id")
        try:
            ts = parse_timestamp(detail["timestamp"]) if detail.get("timestamp") is not None else received
        except ValueError as exc:
            problems.append(str(exc))
            ts = received
        if problems:
            raise BadRequestError("; ".join(problems))
        assert isinstance(ident, str)  # a missing or non-string identifier is one of the problems raised above
        try:
            return cls(tenant_id=detail["tenantId"], event_name=detail["eventName"], identifier=ident,
                       timestamp=ts, properties=properties)
        except ValueError as exc:
            raise BadRequestError(str(exc)) from None

    @classmethod
    def from_event(cls, event: Event, *, received: datetime | None = None) -> UsageEvent:
        """The usage event an ``ingestUsage`` envelope carries; ``identifier`` defaults to the envelope id
        and ``timestamp`` to ``received``, by default the envelope's ``time`` (when it was put: so a
        retried delivery an hour later still counts the usage when it happened)."""
        return cls.from_detail(event.detail, identifier=event.id, received=received or event.time)

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> list[UsageEvent]:
        """``[UsageEvent.from_event(e) for e in events]``, raising what the first event that does not parse
        raises (:class:`BadRequestError`): how the bus hands a burst of ``ingestUsage`` envelopes to the
        metering provider's batch hook."""
        return [cls.from_event(event) for event in events]


#: Keys of the flat (Amberflo) form that are not dimensions.
_FLAT_FORM_KEYS = frozenset({"tenantId", "customerId", "meterApiName", "meterValue", "meterTimeInMillis", "uniqueId"})


def _limit(_: object, __: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= MAX_PAGE_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_LIMIT}")


@attrs.frozen
class UsageQuery:
    """Query of ``GET /usage/{meterId}``: ``[from, to)`` (``from`` inclusive, ``to`` exclusive, as
    OpenMeter computes it), ``windowSize`` (MINUTE, HOUR, DAY, MONTH, or none for one row per group),
    ``windowTimeZone`` (IANA, default UTC), ``tenantId`` filter, ``groupBy`` (meter dimensions),
    ``limit`` + ``next_token``. Rows are grouped by tenant always."""

    from_: datetime = attrs.field(metadata={WIRE_KEY: "from"})
    to: datetime
    window_size: WindowSize | None = attrs.field(default=None, converter=attrs.converters.optional(WindowSize))
    window_time_zone: str = attrs.field(default="UTC", validator=_zone)
    tenant_id: str | None = None
    group_by: tuple[str, ...] = attrs.field(default=(), converter=_group_names, validator=_group_by)
    limit: int = attrs.field(default=100, validator=_limit)
    next_token: str | None = attrs.field(default=None, metadata={WIRE_KEY: "next_token"})

    def __attrs_post_init__(self) -> None:
        if self.from_ >= self.to:
            raise ValueError("from must be before to (the range is [from, to))")

    @property
    def zone(self) -> ZoneInfo:
        """``windowTimeZone`` as a ZoneInfo."""
        return ZoneInfo(self.window_time_zone)


@attrs.frozen
class UsageRow:
    """One row of usage: the aggregated ``value`` of ``tenantId``'s events in ``[windowStart, windowEnd)``
    for one combination of ``groups`` (group-by name -> value; a missing dimension is ``""``)."""

    tenant_id: str
    window_start: datetime
    window_end: datetime
    value: float
    groups: dict[str, str] = attrs.field(factory=dict)


def _identifiers(_: object, __: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    """Nothing to refuse: the converter reads a list, or comma-separated text, and drops blank items."""


stating(_identifiers, type=["array", "string"], items={"type": "string"})


@attrs.frozen
class CancelUsageRequest:
    """Body of ``DELETE /usage``: either ``identifiers`` (event idempotency keys), or ``meterId`` with
    ``from``/``to`` (``[from, to)`` of event time) and optionally ``tenantId``."""

    identifiers: tuple[str, ...] = attrs.field(default=(), converter=_tuple, validator=_identifiers)
    meter_id: str | None = None
    tenant_id: str | None = None
    from_: datetime | None = attrs.field(default=None, metadata={WIRE_KEY: "from"})
    to: datetime | None = None

    def __attrs_post_init__(self) -> None:
        by_range = self.meter_id is not None or self.from_ is not None or self.to is not None
        if self.identifiers and by_range:
            raise ValueError("cancel either by identifiers or by meterId + from + to, not both")
        if not self.identifiers and not by_range:
            raise ValueError("give identifiers, or meterId with from and to")
        if by_range:
            if self.meter_id is None or self.from_ is None or self.to is None:
                raise ValueError("cancelling by range needs meterId, from and to")
            if self.from_ >= self.to:
                raise ValueError("from must be before to (the range is [from, to))")


_NULL = {"type": "null"}
_SOME_IDENTIFIER = {"anyOf": [{"type": "array", "contains": {"type": "string", "pattern": NONBLANK_PATTERN}},
                              {"type": "string", "pattern": f"[^,{WHITESPACE}]"}]}
stating(CancelUsageRequest, anyOf=[
    # Blank items are ignored (the converter drops them): one identifier at least is not blank.
    {"required": ["identifiers"], "properties": {"identifiers": _SOME_IDENTIFIER, "meterId": _NULL, "from": _NULL,
                                                 "to": _NULL}},
    {"required": ["meterId", "from", "to"], "properties": {
        "identifiers": {"not": _SOME_IDENTIFIER}, "meterId": {"type": "string"},
        "from": {"type": ["string", "number"]}, "to": {"type": ["string", "number"]}}}])


@attrs.frozen
class CancelResult:
    """How many events this request cancelled (already-cancelled events are not counted again)."""

    cancelled: int
