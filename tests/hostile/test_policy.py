"""The input policy itself (sbt_core.input_policy) and the bus's entry points that apply it."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sbt_core import input_policy
from sbt_core.errors import BadRequestError
from sbt_core.input_policy import MAX_DEPTH, answerable, check, loads, name_problem
from sbt_core.models import Event, format_timestamp, parse_timestamp
from sbt_core.runtime.bus import Bus


@pytest.mark.parametrize(("text", "field"), [
    (b'{"a": {"b": NaN}}', "a.b"), (b'{"a": [1, Infinity]}', "a[1]"), (b'{"a": -Infinity}', "a"),
    (b'{"a": 1e999}', "a"), (b'{"a": -1e400}', "a"), (b'{"a": "\\ud800"}', "a"), (b'{"\\udc00": 1}', "\udc00"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "[0]" * MAX_DEPTH),
    (b"[" * 100_000 + b"]" * 100_000, "body"),
])
def test_what_no_answer_can_carry_is_refused_naming_the_field(text: bytes, field: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        loads(text)
    assert refused.value.message.startswith(f"{field}: ")


@pytest.mark.parametrize("text", [b'{"a": 1e308, "b": -1.7976931348623157e308, "c": "\\ud83d\\ude00"}',
                                  b'{"nul": "a\\u0000b", "ctl": "\\u0007\\n"}',
                                  b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, b'{"a": 1, "a": 2}'])
def test_free_form_json_that_can_be_answered_is_accepted_exactly(text: bytes) -> None:
    import json

    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("name", ["a\x00b", "line\nbreak", "tab\t", "del\x7f", "c1\x85", "\ud800"])
def test_names_refuse_control_characters_and_surrogates(name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(BadRequestError, match="^meterId: "):
        input_policy.check_name(name, "meterId")


@pytest.mark.parametrize("name", ["calls", "Ünïcødé name", "with space", "emoji \U0001f600", "\u00a0nbsp"])
def test_ordinary_names_pass(name: str) -> None:
    assert name_problem(name) is None


def test_answerable_replaces_and_lists_what_it_replaced() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(MAX_DEPTH + 2):
        node.append([])
        node = node[0]  # type: ignore[assignment]
    value = {"n": float("nan"), "ok": [1, "x"], "s": "a\ud800", "deep": deep}
    fixed, replaced = answerable(value)
    assert fixed["n"] is None and fixed["ok"] == [1, "x"] and fixed["s"] == "a\ufffd"
    assert sorted(replaced) == ["deep" + "[0]" * (MAX_DEPTH - 1), "n", "s"]
    assert answerable({"fine": 1.5}) == ({"fine": 1.5}, [])
    assert math.isnan(value["n"])  # the stored value itself is left alone


def test_check_names_the_document() -> None:
    with pytest.raises(BadRequestError, match=r"^detail\.properties\.value: not a finite"):
        check({"properties": {"value": float("inf")}}, "detail")


def test_the_bus_refuses_per_entry_what_the_policy_refuses_before_logging_it(tmp_path: Path) -> None:
    bus = Bus()
    good = Event.create("custom", {"a": 1})
    bad = [Event.create("custom", {"a": float("nan")}), Event.create("custom", {"s": "\udfff"}),
           Event(detail_type="custom", source="a\x00b", detail={})]
    results = bus.put_events([good, *bad])
    assert results[0].event_id == good.id
    assert [r.error_code for r in results[1:]] == ["InvalidArgument"] * 3
    assert results[1].error_message is not None and results[1].error_message.startswith("detail.a: ")
    assert [r.event.id for r in bus.recent()] == [good.id]
    ids = bus.put_events([Event.create("ingestUsage", {"tenantId": "t\x00", "eventName": "calls"}),
                          Event.create("ingestUsage", {"tenantId": "t1", "eventName": "calls\n"})])
    assert [r.error_message for r in ids] == [
        "detail.tenantId: control characters (such as NUL or a line break) are not allowed in a name or id",
        "detail.eventName: control characters (such as NUL or a line break) are not allowed in a name or id"]
    with pytest.raises(BadRequestError, match="detail.a"):
        bus.publish(Event.create("custom", {"a": float("inf")}))
    bus.stop(0)


@pytest.mark.parametrize(("when", "text"), [
    (datetime(848, 9, 1, tzinfo=UTC), "0848-09-01T00:00:00Z"), (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
    (datetime(999, 12, 31, 23, 59, 59, 5000, tzinfo=UTC), "0999-12-31T23:59:59.005Z"),
    (datetime(9999, 12, 31, 23, 59, 59, 123456, tzinfo=UTC), "9999-12-31T23:59:59.123456Z"),
])
def test_timestamps_are_rfc_3339_for_every_year_the_models_accept(when: datetime, text: str) -> None:
    assert format_timestamp(when) == text
    assert parse_timestamp(text) == when


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00Z"])
def test_timestamps_outside_the_years_1_to_9999_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)
