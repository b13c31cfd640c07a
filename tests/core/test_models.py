"""The records hooks exchange: validated on construction, camelCase JSON both ways."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sbt_core.errors import BadRequestError
from sbt_core.models import (
    Aggregation,
    BillingUsage,
    CancelUsageRequest,
    Event,
    Meter,
    MeterCreate,
    MeterUpdate,
    Page,
    UpdateUserRequest,
    UsageEvent,
    UsageQuery,
    canonical_detail_type,
    from_json,
    output_detail_type,
    to_json,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_meter_round_trips_through_camel_case_json() -> None:
    meter = Meter.new("m-1", from_json(MeterCreate, {"name": "API calls", "eventName": "api_call",
                                                     "aggregation": "SUM", "valueProperty": "tokens",
                                                     "groupBy": ["region"]}))
    wire = to_json(meter)
    assert set(wire) == {"meterId", "name", "eventName", "aggregation", "valueProperty", "groupBy", "description",
                         "status", "created", "modified"}
    assert (wire["aggregation"], wire["status"], wire["groupBy"]) == ("SUM", "active", ["region"])
    assert from_json(Meter, wire) == meter


def test_count_meters_refuse_a_value_property_and_others_default_it() -> None:
    with pytest.raises(BadRequestError, match="valueProperty is not allowed for a COUNT meter"):
        from_json(MeterCreate, {"name": "n", "eventName": "e", "aggregation": "COUNT", "valueProperty": "v"})
    assert from_json(MeterCreate, {"name": "n", "eventName": "e", "aggregation": "COUNT"}).value_property is None
    assert from_json(MeterCreate, {"name": "n", "eventName": "e", "aggregation": "MAX"}).value_property == "value"


def test_bad_bodies_name_every_field() -> None:
    with pytest.raises(BadRequestError) as info:
        from_json(MeterCreate, {"name": 3, "eventName": "e", "aggregation": "MEDIAN", "colour": "red"})
    message = info.value.message
    assert "name: expected a string, got int" in message
    assert "aggregation: 'MEDIAN' is not one of SUM, COUNT, MAX, MIN, AVG, LATEST, UNIQUE_COUNT" in message
    with pytest.raises(BadRequestError, match="unknown field"):
        from_json(MeterCreate, {"name": "n", "eventName": "e", "colour": "red"})
    with pytest.raises(BadRequestError, match="expected a JSON object"):
        from_json(MeterCreate, ["not", "an", "object"])


def test_meter_update_refuses_what_would_rewrite_history() -> None:
    with pytest.raises(BadRequestError, match="aggregation, eventName cannot change once a meter exists"):
        MeterUpdate.from_body({"eventName": "x", "aggregation": "SUM"})
    assert MeterUpdate.from_body({"status": "inactive"}).status == "inactive"


def test_event_envelope_uses_eventbridge_keys_and_folds_sbt_aws_names() -> None:
    event = from_json(Event, {"version": "0", "id": "e-1", "detail-type": "sbt_aws_onboardingRequest",
                              "source": "sbt.control.plane", "time": "2026-11-01T00:00:00Z",
                              "detail": {"tenantId": "t-1"}, "account": "123", "region": "eu-west-1",
                              "resources": []})
    assert event.name == "onboardingRequest" and event.time == T0
    wire = to_json(event)
    assert wire["detail-type"] == "sbt_aws_onboardingRequest" and wire["account"] == "123"
    assert "resources" not in wire  # empty optional keys are left out, as EventBridge does
    assert canonical_detail_type("sbt_aws_customThing") == "sbt_aws_customThing"  # only standard names fold
    assert output_detail_type("ingestUsage", "sbt_aws") == "sbt_aws_ingestUsage"
    assert output_detail_type("customThing", "sbt_aws") == "customThing"
    assert Event.create("ingestUsage").source == "sbt.application.plane"


@pytest.mark.parametrize("timestamp", ["2026-11-01T00:00:00Z", "2026-11-01T01:00:00+01:00", 1793491200,
                                       1793491200000, "1793491200"])
def test_usage_event_timestamps_accept_rfc3339_and_epoch_seconds_or_ms(timestamp: object) -> None:
    usage = UsageEvent.from_detail({"tenantId": "t", "eventName": "e", "timestamp": timestamp,
                                    "properties": {"value": 1}}, identifier="i")
    assert usage.timestamp == T0


def test_usage_event_defaults_identifier_to_envelope_id_and_time_to_receipt() -> None:
    event = Event.create("ingestUsage", {"tenantId": "t", "eventName": "e", "properties": {"value": 2}})
    usage = UsageEvent.from_event(event, received=T0)
    assert (usage.identifier, usage.timestamp) == (event.id, T0)


def test_usage_event_time_defaults_to_when_the_envelope_was_put_not_when_it_is_delivered() -> None:
    put = Event("ingestUsage", "sbt.application.plane", {"tenantId": "t", "eventName": "e"}, id="e-1", time=T0)
    usage = UsageEvent.from_event(put)  # delivered (or retried) any time later
    assert usage.timestamp == T0 and usage.properties == {}


def test_amberflo_flat_form_is_accepted() -> None:
    usage = UsageEvent.from_detail({"tenantId": "t", "meterApiName": "calls", "meterValue": 3, "region": "eu",
                                    "uniqueId": "u-1"})
    assert (usage.event_name, usage.identifier, usage.properties) == ("calls", "u-1", {"region": "eu", "value": 3})


@pytest.mark.parametrize(("detail", "message"), [
    ({"eventName": "e"}, "tenantId is required"),
    ({"tenantId": "t", "eventName": "e", "timestamp": "yesterday"}, "not RFC 3339"),
    ({"tenantId": "t", "eventName": "e", "timestamp": "2026-11-01T00:00:00"}, "no UTC offset"),
    ({"tenantId": "t", "eventName": "e", "timestamp": 1e20}, "timestamp 1e.20 is out of range"),
    ({"tenantId": "t", "eventName": "e", "timestamp": 10**30}, "out of range"),
    ({"tenantId": "t", "eventName": "e", "timestamp": "99999999999999999999"}, "out of range"),
    ({"tenantId": "t", "eventName": "e", "properties": [1]}, "properties must be a JSON object"),
    ({"tenantId": "t", "eventName": "e", "value": 1}, "unknown usage event field(s) value"),
    ({"tenantId": 5, "eventName": "e"}, "tenantId must be a string"),
])
def test_malformed_usage_events_say_why(detail: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        UsageEvent.from_detail(detail, identifier="i")


def test_usage_query_from_a_query_string() -> None:
    query = from_json(UsageQuery, {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z", "windowSize": "DAY",
                                   "windowTimeZone": "Europe/Paris", "groupBy": "region,plan", "limit": "50"})
    assert (query.group_by, query.limit, query.zone.key) == (("region", "plan"), 50, "Europe/Paris")
    with pytest.raises(BadRequestError, match="from must be before to"):
        from_json(UsageQuery, {"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"})
    with pytest.raises(BadRequestError, match="not an IANA time zone"):
        from_json(UsageQuery, {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z",
                               "windowTimeZone": "Mars/Olympus"})


def test_cancel_takes_identifiers_or_a_range_not_both() -> None:
    assert from_json(CancelUsageRequest, {"identifiers": ["a", "b"]}).identifiers == ("a", "b")
    ranged = from_json(CancelUsageRequest, {"meterId": "m", "from": "2026-11-01T00:00:00Z",
                                            "to": "2026-11-02T00:00:00Z"})
    assert ranged.tenant_id is None and ranged.from_ == T0
    for body, message in (({}, "give identifiers"), ({"identifiers": ["a"], "meterId": "m"}, "not both"),
                          ({"meterId": "m"}, "needs meterId, from and to")):
        with pytest.raises(BadRequestError, match=message):
            from_json(CancelUsageRequest, body)


def test_update_user_needs_at_least_one_attribute() -> None:
    assert from_json(UpdateUserRequest, {"email": "a@b.co"}).user_role is None
    with pytest.raises(BadRequestError, match="give userRole, email or both"):
        from_json(UpdateUserRequest, {})


def test_page_uses_sbt_aws_next_token_key() -> None:
    assert to_json(Page(items=[1, 2], next_token="abc")) == {"items": [1, 2], "next_token": "abc"}
    assert Aggregation("LATEST") is Aggregation.LATEST


@pytest.mark.parametrize("detail", [
    {"tenantId": "t", "eventName": "e", "properties": {"value": 1, "region": "eu"}},
    {"tenantId": "t", "eventName": "e", "identifier": "own-id"},
    {"tenantId": "t", "eventName": "e", "timestamp": "2026-11-01T00:00:00Z", "properties": {}},
])
def test_a_canonical_detail_builds_the_usage_event_it_describes(detail: dict[str, object]) -> None:
    usage = UsageEvent.from_detail(detail, identifier="envelope-id", received=T0)
    assert usage == UsageEvent(tenant_id="t", event_name="e", identifier=str(detail.get("identifier", "envelope-id")),
                               timestamp=T0, properties=dict(detail.get("properties", {})))  # type: ignore[arg-type]


@pytest.mark.parametrize(("detail", "message"), [
    ({"tenantId": "   ", "eventName": "e"}, "tenantId must be 1 to 256 characters"),
    ({"tenantId": "t", "eventName": "e" * 101}, "eventName must be 1 to 100 characters"),
    ({"tenantId": "t", "eventName": "e", "identifier": 7}, "identifier must be a string"),
])
def test_a_malformed_detail_is_refused_naming_the_field(detail: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        UsageEvent.from_detail(detail, identifier="envelope-id", received=T0)


# --- UsageEvent.from_events: a batch of ingestUsage envelopes, as from_event of each ---------------------------

def _envelopes(details: list[object]) -> list[Event]:
    return [Event(detail_type="ingestUsage", source="sbt.application.plane", detail=d,  # type: ignore[arg-type]
                  id=f"id-{i}", time=T0) for i, d in enumerate(details)]


def _each(events: list[Event]) -> list[UsageEvent] | str:
    try:
        return [UsageEvent.from_event(event) for event in events]
    except BadRequestError as exc:
        return exc.message


def _batch(events: list[Event]) -> list[UsageEvent] | str:
    try:
        return UsageEvent.from_events(events)
    except BadRequestError as exc:
        return exc.message


_CANONICAL = {"tenantId": "t-1", "eventName": "api_call", "properties": {"value": 3, "region": "eu"}}
#: One odd detail of each kind the batch checks; among canonical ones it must change nothing but its own answer.
_ODD_DETAILS: list[object] = [
    {"tenantId": "t-2", "eventName": "api_call", "identifier": "own-id", "properties": {}},
    {"tenantId": "t-2", "eventName": "api_call", "timestamp": "2026-11-01T01:00:00Z", "properties": {}},
    {"tenantId": "t-2", "eventName": "api_call"},
    {"tenantId": "t-2", "eventName": "api_call", "properties": None},
    {"tenantId": "t-2", "eventName": "api_call", "properties": [1]},
    {"tenantId": "   ", "eventName": "api_call", "properties": {}},
    {"tenantId": "", "eventName": "api_call", "properties": {}},
    {"tenantId": "t" * 257, "eventName": "api_call", "properties": {}},
    {"tenantId": ["t"], "eventName": "api_call", "properties": {}},
    {"tenantId": 7, "eventName": "api_call", "properties": {}},
    {"tenantId": "t-2", "eventName": "e" * 101, "properties": {}},
    {"tenantId": "t-2", "properties": {}},
    {"tenantId": "t-2", "eventName": "api_call", "properties": {}, "extra": 1},
    {"tenantId": "t-3", "meterApiName": "api_call", "meterValue": 2},
    "not an object",
]


def test_a_batch_of_canonical_usage_events_equals_one_by_one() -> None:
    events = _envelopes([dict(_CANONICAL, tenantId=f"t-{i % 3}") for i in range(20)])
    batch = UsageEvent.from_events(events)
    assert batch == _each(events)
    assert [u.identifier for u in batch] == [e.id for e in events] and {u.timestamp for u in batch} == {T0}
    assert UsageEvent.from_events([]) == []


@pytest.mark.parametrize("odd", _ODD_DETAILS, ids=repr)
@pytest.mark.parametrize("where", [0, 5, 9])
def test_one_odd_usage_event_in_a_batch_gets_what_it_gets_alone(odd: object, where: int) -> None:
    details: list[object] = [dict(_CANONICAL) for _ in range(10)]
    details[where] = odd
    events = _envelopes(details)
    assert _batch(events) == _each(events)


def test_an_envelope_id_the_usage_event_cannot_take_as_identifier_is_refused_as_alone() -> None:
    events = _envelopes([dict(_CANONICAL) for _ in range(4)])
    events[2] = Event(detail_type="ingestUsage", source="sbt.application.plane", detail=dict(_CANONICAL),
                      id="x" * 300, time=T0)
    assert _batch(events) == _each(events) == "identifier must be 1 to 256 characters"


def test_billing_usage_reads_sbt_aws_and_canonical_usage_alike() -> None:
    sbt_aws = Event.create("ingestUsage", {"tenantId": "t1", "metric": {"name": "productsSold", "unit": "Count",
                                                                         "value": "5"}})
    usage = BillingUsage.from_event(sbt_aws)
    assert (usage.tenant_id, usage.metric, usage.value, usage.unit) == ("t1", "productsSold", 5, "Count")
    assert (usage.identifier, usage.timestamp) == (sbt_aws.id, sbt_aws.time)
    canonical = Event.create("ingestUsage", {"tenantId": "t1", "eventName": "api_calls", "identifier": "u-1",
                                             "timestamp": "2026-01-02T03:04:05Z", "properties": {"calls": 2.5}})
    usage = BillingUsage.from_event(canonical, value_key="calls")
    assert (usage.tenant_id, usage.metric, usage.value, usage.identifier, usage.unit) == \
        ("t1", "api_calls", 2.5, "u-1", None)
    assert usage.timestamp.isoformat() == "2026-01-02T03:04:05+00:00"
    counted = Event.create("ingestUsage", {"tenantId": "t1", "eventName": "logins"})
    assert BillingUsage.from_event(counted, default_value=1).value == 1
    refused = [({"tenantId": "t1", "eventName": "logins"}, "properties.value is required"),
               ({"tenantId": "t1", "metric": {"name": "x", "value": True}}, "metric.value must be a number"),
               ({"tenantId": "t1", "metric": {"value": 1}}, "metric.name is required"),
               ({"metric": {"name": "x", "value": 1}}, "tenantId is required")]
    for detail, message in refused:
        with pytest.raises(BadRequestError, match=message):
            BillingUsage.from_event(Event.create("ingestUsage", detail))
