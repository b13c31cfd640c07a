"""Schedule expressions in EventBridge syntax, and routes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from sbt_core.errors import BadRequestError
from sbt_core.triggers import Cron, Rate, parse_route, parse_schedule

NOON = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize(("expression", "interval"), [
    ("rate(1 minute)", timedelta(minutes=1)),
    ("rate(5 minutes)", timedelta(minutes=5)),
    ("rate(1 hour)", timedelta(hours=1)),
    ("rate(24 hours)", timedelta(hours=24)),
    ("rate(7 days)", timedelta(days=7)),
])
def test_rate_expressions_parse_to_their_interval(expression: str, interval: timedelta) -> None:
    trigger = parse_schedule(expression)
    assert isinstance(trigger.spec, Rate)
    assert trigger.spec.interval == interval
    assert trigger.next_after(NOON, start=NOON) == NOON + interval
    assert trigger.next_after(NOON + interval / 2, start=NOON) == NOON + interval


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("cron(0 12 * * ? *)", NOON, datetime(2026, 11, 22, 12, 0, tzinfo=UTC)),
    ("cron(15 10 ? * 6L 2026)", NOON, datetime(2026, 11, 27, 10, 15, tzinfo=UTC)),  # last Friday
    ("cron(0/15 * ? * MON-FRI *)", NOON, datetime(2026, 11, 23, 0, 0, tzinfo=UTC)),  # Saturday: skip to Monday
    ("cron(0 8 ? * 2 *)", NOON, datetime(2026, 11, 23, 8, 0, tzinfo=UTC)),  # AWS day 2 = Monday
    ("cron(0 18 ? * 2#1 *)", NOON, datetime(2026, 12, 7, 18, 0, tzinfo=UTC)),  # first Monday
    ("cron(0 0 L * ? *)", NOON, datetime(2026, 11, 30, 0, 0, tzinfo=UTC)),
    ("cron(0 0 1 1 ? 2030)", NOON, datetime(2030, 1, 1, 0, 0, tzinfo=UTC)),
])
def test_cron_expressions_fire_when_eventbridge_would(expression: str, after: datetime, expected: datetime) -> None:
    trigger = parse_schedule(expression)
    assert isinstance(trigger.spec, Cron)
    assert trigger.next_after(after) == expected


@pytest.mark.parametrize(("expression", "message"), [
    ("rate(1 hours)", "write rate(1 hour)"),
    ("rate(2 hour)", "write rate(2 hours)"),
    ("rate(0 minutes)", "at least 1"),
    ("rate(5 weeks)", "is not rate("),
    ("rate(-1 days)", "is not rate("),
    ("every day", "neither rate"),
    ("cron(0 12 * *)", "6 fields"),
    ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week"),
    ("cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week"),
    ("cron(61 12 * * ? *)", "minutes '61'"),
    ("cron(0 24 * * ? *)", "hours '24'"),
    ("cron(0 12 32 * ? *)", "day-of-month '32'"),
    ("cron(0 12 ? * 8 *)", "day-of-week '8'"),
    ("cron(0 12 ? FOO MON *)", "month 'FOO'"),
    ("cron(0/0 12 * * ? *)", "bad step"),
])
def test_bad_schedule_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(BadRequestError, match=re.escape(message)):
        parse_schedule(expression)


def test_routes_clash_by_shape_not_parameter_name() -> None:
    assert parse_route("GET /meters/{meterId}").shape == parse_route("get /meters/{id}").shape
    assert parse_route("GET /meters/{meterId}").shape != parse_route("PUT /meters/{meterId}").shape


@pytest.mark.parametrize("text", ["/meters", "FETCH /meters", "GET meters", "GET /meters/{bad-name}"])
def test_malformed_routes_are_refused(text: str) -> None:
    with pytest.raises(BadRequestError):
        parse_route(text)
