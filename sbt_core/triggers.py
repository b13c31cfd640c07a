"""Triggers as data: what makes a hook run — an event, an HTTP route, or a schedule.

Schedule expressions use EventBridge syntax: ``rate(5 minutes)`` and the six-field
``cron(minutes hours day-of-month month day-of-week year)``, where one of day-of-month and
day-of-week must be ``?`` and day-of-week counts 1-7 from Sunday (AWS "Schedule expressions").
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

import attrs

from .errors import BadRequestError

__all__ = [
    "Authorizer", "Cron", "EventTrigger", "Rate", "RouteTrigger", "ScheduleTrigger", "Trigger",
    "StartupTrigger", "AnyTrigger", "parse_route", "parse_schedule",
]


class Authorizer(StrEnum):
    """Who checks a route's caller: a bearer JWT (the default) or nobody (the webhook; the provider verifies)."""

    JWT = "jwt"
    NONE = "none"


@attrs.frozen
class EventTrigger:
    """Run the hook for every event whose bare detail type and source match (``sbt_aws_`` names fold to bare)."""

    detail_type: str
    source: str

    kind: Literal["event"] = attrs.field(default="event", init=False)

    def describe(self) -> str:
        return f"event {self.detail_type} from {self.source}"


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_PATH = re.compile(r"^(/([A-Za-z0-9._~\-]+|\{[A-Za-z_][A-Za-z0-9_]*\}))+$|^/$")


def _upper(method: str) -> str:
    # A named function rather than ``converter=str.upper``, which mypy's attrs plugin cannot type.
    return str.upper(method)


@attrs.frozen
class RouteTrigger:
    """Run the hook for ``method path`` (path parameters as ``{name}``), after the authorizer and ``scope``."""

    method: str = attrs.field(converter=_upper)
    path: str
    scope: str | None = None
    authorizer: Authorizer = attrs.field(default=Authorizer.JWT, converter=Authorizer)

    kind: Literal["route"] = attrs.field(default="route", init=False)

    def __attrs_post_init__(self) -> None:
        if self.method not in _METHODS:
            raise BadRequestError(f"route method {self.method!r} is not one of {', '.join(_METHODS)}")
        if not _PATH.match(self.path):
            raise BadRequestError(f"route path {self.path!r} must start with / and hold segments or {{params}}")

    @property
    def shape(self) -> tuple[str, str]:
        """``(method, path with every {param} as {})``: two routes with the same shape clash."""
        return self.method, re.sub(r"\{[^}]+\}", "{}", self.path)

    def describe(self) -> str:
        scope = f" [{self.scope}]" if self.scope else ""
        auth = " (no JWT)" if self.authorizer is Authorizer.NONE else ""
        return f"{self.method} {self.path}{scope}{auth}"


def parse_route(text: str, *, scope: str | None = None, authorizer: str = "jwt") -> RouteTrigger:
    """``"POST /meters"`` -> RouteTrigger; raises BadRequestError on a malformed route."""
    parts = text.split()
    if len(parts) != 2:
        raise BadRequestError(f"route {text!r} must be 'METHOD /path'")
    return RouteTrigger(method=parts[0], path=parts[1], scope=scope, authorizer=authorizer)


# --- schedules ---------------------------------------------------------------------------------------

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_DAYS = "SUN MON TUE WED THU FRI SAT".split()


@attrs.frozen
class Rate:
    """``rate(N unit)``: every N minutes/hours/days; N = 1 takes the singular unit, N > 1 the plural (AWS)."""

    value: int
    unit: str  # "minute" | "hour" | "day"

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.value * _UNIT_SECONDS[self.unit])

    def next_after(self, moment: datetime, *, start: datetime) -> datetime:
        """The first firing strictly after ``moment`` in the series ``start + k*interval``."""
        step = self.interval
        if moment < start:
            return start
        k = int((moment - start) / step) + 1
        return start + k * step


def _check_field(text: str, low: int, high: int, names: list[str] | None, *, extra: str = "") -> None:
    """Validate one cron field: lists, ranges, steps, names, wildcards and the AWS extras in ``extra``."""
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise ValueError(f"bad step {step!r}")
        if base in ("*", "?") and ("?" in extra or base == "*"):
            continue
        if extra and base in {"L", "W", "LW"}:
            continue
        if "#" in base and "#" in extra:
            day, _, nth = base.partition("#")
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise ValueError(f"bad nth weekday {base!r}")
            base = day
        if base.endswith("W") and "W" in extra:
            base = base[:-1]
        if base.endswith("L") and "L" in extra and len(base) > 1:
            base = base[:-1]
        for bound in base.split("-", 1):
            value = _value(bound, names)
            if value is None or not low <= value <= high:
                raise ValueError(f"{bound!r} is out of {low}-{high}")


def _value(text: str, names: list[str] | None) -> int | None:
    if text.isdigit():
        return int(text)
    if names and text.upper() in names:
        return names.index(text.upper()) + 1
    return None


@attrs.frozen
class Cron:
    """``cron(min hour dom month dow year)`` in EventBridge syntax, in UTC."""

    minutes: str
    hours: str
    day_of_month: str
    month: str
    day_of_week: str
    year: str

    def croniter_expression(self) -> str:
        """The five-field expression croniter evaluates (``?`` -> ``*``; AWS day-of-week 1-7 -> 0-6)."""
        dow = self.day_of_week
        if dow != "?":
            dow = re.sub(r"(?<![#/\d])\d+", lambda m: str(int(m.group()) - 1), dow)
            dow = re.sub(r"(\w+)L\b", r"L\1", dow)  # AWS "6L" (last Friday) is croniter's "L5"
        dom = "*" if self.day_of_month == "?" else self.day_of_month
        dow = "*" if dow == "?" else dow
        return f"{self.minutes} {self.hours} {dom} {self.month} {dow}"

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after ``moment`` (UTC), honouring the year field."""
        from croniter import croniter

        it = croniter(self.croniter_expression(), moment)
        for _ in range(1000):
            candidate: datetime = it.get_next(datetime)
            if self.year in ("*", "?") or _year_matches(self.year, candidate.year):
                return candidate
        raise BadRequestError(f"cron({self}) never fires again")


def _year_matches(field: str, year: int) -> bool:
    for part in field.split(","):
        base, _, step = part.partition("/")
        lo, _, hi = base.partition("-")
        start = 1970 if lo == "*" else int(lo)
        end = 2199 if lo == "*" else int(hi or lo if not step else 2199)
        if start <= year <= end and (year - start) % int(step or 1) == 0:
            return True
    return False


@attrs.frozen
class ScheduleTrigger:
    """Run the hook on a schedule: ``expression`` is ``rate(...)`` or ``cron(...)``, parsed into ``spec``."""

    expression: str
    spec: Rate | Cron = attrs.field(eq=False, repr=False)

    kind: Literal["schedule"] = attrs.field(default="schedule", init=False)

    def describe(self) -> str:
        return f"schedule {self.expression}"

    def next_after(self, moment: datetime, *, start: datetime | None = None) -> datetime:
        """When this schedule next fires after ``moment``; a rate counts from ``start`` (default ``moment``)."""
        if isinstance(self.spec, Rate):
            return self.spec.next_after(moment, start=start or moment)
        return self.spec.next_after(moment)


def parse_schedule(expression: str) -> ScheduleTrigger:
    """Parse an EventBridge schedule expression; raises BadRequestError saying what is wrong."""
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        singular = unit.rstrip("s")
        if value < 1:
            raise BadRequestError(f"{expression!r}: the rate value must be at least 1")
        if (value == 1) != (unit == singular):
            want = singular if value == 1 else singular + "s"
            raise BadRequestError(f"{expression!r}: write rate({value} {want})")
        return ScheduleTrigger(expression=text, spec=Rate(value, singular))
    if text.startswith("rate("):
        raise BadRequestError(f"{expression!r} is not rate(N minute[s]|hour[s]|day[s])")
    cron = _CRON.match(text)
    if not cron:
        raise BadRequestError(f"{expression!r} is neither rate(N unit) nor cron(min hour dom month dow year)")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise BadRequestError(f"{expression!r}: cron takes 6 fields "
                              f"(minutes hours day-of-month month day-of-week year), got {len(fields)}")
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise BadRequestError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'")
    for name, field, low, high, names, extra in (
        ("minutes", minutes, 0, 59, None, ""),
        ("hours", hours, 0, 23, None, ""),
        ("day-of-month", dom, 1, 31, None, "?LW"),
        ("month", month, 1, 12, _MONTHS, ""),
        ("day-of-week", dow, 1, 7, _DAYS, "?L#"),
        ("year", year, 1970, 2199, None, ""),
    ):
        try:
            _check_field(field, low, high, names, extra=extra)
        except ValueError as exc:
            raise BadRequestError(f"{expression!r}: {name} {field!r}: {exc}") from None
    spec = Cron(minutes, hours, dom, month, dow, year)
    try:
        from croniter import croniter

        croniter(spec.croniter_expression())
    except Exception as exc:  # croniter refuses a combination our field checks let through
        raise BadRequestError(f"{expression!r}: {exc}") from None
    return ScheduleTrigger(expression=text, spec=spec)


Trigger = EventTrigger | RouteTrigger | ScheduleTrigger


@attrs.frozen
class StartupTrigger:
    """Run once when the control plane starts (``auth_settings``, ``auth_create_admin_user``); not overridable."""

    kind: Literal["startup"] = attrs.field(default="startup", init=False)

    def describe(self) -> str:
        return "start-up"


AnyTrigger = Trigger | StartupTrigger
