"""The wire's converter: records <-> JSON over HTTP and in events, a :class:`~sbt_core.structure.StrictConverter`
(strict scalars, unknown keys refused so a typo never silently does nothing, every problem at once).

Field names are snake_case in Python and camelCase on the wire (docs/design.md section 4), except where a
field's metadata names its wire key (``from`` for ``from_``, ``detail-type``, sbt-aws's ``next_token``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import attrs
from cattrs.gen import make_dict_unstructure_fn, override

from ..errors import BadRequestError
from ..structure import Invalid, StrictConverter

T = TypeVar("T")

WIRE_KEY = "sbt_wire_key"


def camel(name: str) -> str:
    """``value_property`` -> ``valueProperty``; a trailing underscore (``from_``) is dropped."""
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


#: The attribute of a field validator naming the JSON Schema keywords it enforces (``maxLength``…), which
#: the OpenAPI schema of the record states: the document says what the validator refuses.
JSON_SCHEMA_ATTRIBUTE = "json_schema"


def stating(validator: Any, **keywords: Any) -> Any:
    """``validator``, marked with the JSON Schema ``keywords`` it enforces (see :data:`JSON_SCHEMA_ATTRIBUTE`)."""
    setattr(validator, JSON_SCHEMA_ATTRIBUTE, keywords)
    return validator


def stated_keywords(validator: Any) -> dict[str, Any]:
    """The keywords ``validator`` (or each validator of an ``attrs.validators.and_``) states."""
    out: dict[str, Any] = {}
    for v in getattr(validator, "_validators", None) or ([validator] if validator is not None else []):
        out |= getattr(v, JSON_SCHEMA_ATTRIBUTE, None) or {}
    return out


def wire_key(field: attrs.Attribute[Any]) -> str:
    """The JSON key of an attrs field."""
    return field.metadata.get(WIRE_KEY) or camel(field.name)


def parse_timestamp(value: Any) -> datetime:
    """RFC 3339 text, or epoch seconds / milliseconds (a number above 1e11 is taken as ms), to aware UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError(f"timestamp must be RFC 3339 text or epoch seconds/milliseconds, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"timestamp must be finite, got {value!r}")
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):  # what the platform's time_t or datetime cannot hold
            raise ValueError(f"timestamp {value!r} is out of range") from None
    if isinstance(value, str):
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return parse_timestamp(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {value!r} is not RFC 3339 (e.g. 2026-01-31T12:00:00Z)") from None
        if parsed.tzinfo is None:
            raise ValueError(f"timestamp {value!r} has no UTC offset; RFC 3339 needs one (add Z)")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is in year 0 in UTC
            raise ValueError(f"timestamp {value!r} is out of range (years 1 to 9999 in UTC)") from None
    raise ValueError(f"timestamp must be RFC 3339 text or epoch seconds/milliseconds, got {type(value).__name__}")


def format_timestamp(value: datetime) -> str:
    """Aware datetime -> RFC 3339 in UTC with a ``Z`` (milliseconds kept when present), the year always
    four digits (``0848-09-01T00:00:00Z``; ``strftime("%Y")`` writes ``848`` on glibc)."""
    value = value.astimezone(UTC)
    micro = value.microsecond
    text = (f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
            f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
    if not micro:
        return text + "Z"
    fraction = f"{micro // 1000:03d}" if micro % 1000 == 0 else f"{micro:06d}"
    return f"{text}.{fraction}Z"


def _names(value: Any, _: type) -> tuple[str, ...]:
    # Query strings carry lists as "a,b"; JSON as ["a", "b"].
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"expected a list of names, got {type(value).__name__}")
    return tuple(converter.scalar(item, str).strip() for item in items if not isinstance(item, str) or item.strip())


def _enum(value: Any, type_: type[StrEnum]) -> StrEnum:
    try:
        return type_(value)
    except ValueError:
        choices = ", ".join(m.value for m in type_)
        raise ValueError(f"{value!r} is not one of {choices}") from None


def _unstructure_factory(cls: type) -> Any:
    overrides = {f.name: override(rename=wire_key(f), omit_if_default=f.metadata.get("omit_if_default", False))
                 for f in attrs.fields(cls)}
    # The ignore: mypy checks **overrides against every keyword parameter, cattrs' bool flags included,
    # though field names only ever reach its ``**kwargs: AttributeOverride``.
    return make_dict_unstructure_fn(cls, converter, **overrides)  # type: ignore[arg-type]


#: Wire JSON <-> records: camelCase keys (:func:`wire_key`), numbers also as text (query strings), RFC 3339
#: timestamps, enums by value. The models' validators say ``userName must be ...``: their field is in the words.
converter = StrictConverter(key=wire_key, noun="field", numbers_from_text=True, validators_name_fields=True)
converter.register_structure_hook(datetime, lambda v, _: parse_timestamp(v))
converter.register_unstructure_hook(datetime, format_timestamp)
converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _names)
converter.register_structure_hook(StrEnum, _enum)  # before str in the MRO
converter.register_unstructure_hook(StrEnum, lambda e: e.value)  # before str in the MRO
converter.register_unstructure_hook_factory(attrs.has, _unstructure_factory)


def from_json(cls: type[T], data: Any) -> T:
    """Structure wire JSON into ``cls``; any problem is a :class:`BadRequestError` naming every bad field."""
    if attrs.has(cls) and not isinstance(data, dict):
        raise BadRequestError(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    try:
        return converter.check(data, cls)
    except Invalid as exc:
        raise BadRequestError(str(exc)) from exc


def to_json(obj: Any) -> Any:
    """Unstructure a record (or list/dict of them) into camelCase JSON-ready data."""
    return converter.unstructure(obj)
