"""JSON Schema (2020-12, as OpenAPI 3.1 embeds it) of the attrs records, derived from their fields.

Keys are the wire keys the converter uses (:func:`sbt_core.models._convert.wire_key`), so the schema
always matches what :func:`~sbt_core.models.to_json` writes and :func:`~sbt_core.models.from_json` reads.
Each record becomes a named component; references are ``#/components/schemas/<Name>``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Collection, Mapping
from datetime import datetime
from enum import Enum
from typing import Any

import attrs

from ...models import Secret
from ...models._convert import JSON_SCHEMA_ATTRIBUTE, stated_keywords, wire_key

__all__ = ["SchemaRegistry"]

_NONE = type(None)

#: RFC 3339 with its UTC offset, as answers write it and parse_timestamp reads it.
_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH, _DAY = "(0[1-9]|1[0-2])", "(0[1-9]|[12][0-9]|3[01])"
_HOUR, _SIXTY = "([01][0-9]|2[0-3])", "[0-5][0-9]"
_RFC3339 = {"type": "string", "format": "date-time",
            "pattern": f"^{_YEAR}-{_MONTH}-{_DAY}[Tt]{_HOUR}:{_SIXTY}:{_SIXTY}(\\.[0-9]+)?"
                       f"([Zz]|[+-]{_HOUR}:{_SIXTY})$"}
#: Epoch numbers parse_timestamp reads: seconds up to 1e11 in magnitude, milliseconds beyond, within years
#: 1 to 9999 (``datetime``'s range).
_FIRST, _LAST, _MS = -62135596800, 253402300799, 10**11
_EPOCH = ({"type": "number", "minimum": _FIRST, "maximum": _MS},
          {"type": "number", "exclusiveMinimum": _MS, "exclusiveMaximum": (_LAST + 1) * 1000},
          {"type": "number", "minimum": _FIRST * 1000, "exclusiveMaximum": -_MS})


class SchemaRegistry:
    """Collects component schemas while describing types; :attr:`components` is the ``schemas`` map."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}

    def ref(self, cls: type) -> dict[str, Any]:
        """A ``$ref`` to ``cls``'s component, adding it (and what it refers to) on first use."""
        name = cls.__name__
        if name not in self.components:
            self.components[name] = {}  # placeholder: breaks recursion
            self.components[name] = self._record(cls)
        return {"$ref": f"#/components/schemas/{name}"}

    def describe_fields(self, cls: type, names: Collection[str]) -> dict[str, Any]:
        """The inline schema of an object holding only the fields ``names`` of the record ``cls``."""
        return self._record(cls, names)

    def request_ref(self, cls: type) -> dict[str, Any]:
        """:meth:`ref` for a request body: the record's component is closed (``additionalProperties: false``),
        as the converter refuses unknown keys. Answers stay open: a record answered with stored values
        replaced carries ``sbt_replaced`` (:data:`sbt_core.input_policy.REPLACED_KEY`)."""
        ref = self.ref(cls)
        self.components[cls.__name__]["additionalProperties"] = False
        return ref

    def _record(self, cls: type, only: Collection[str] | None = None) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            if (not field.init and field.default is attrs.NOTHING) or (only is not None and field.name not in only):
                continue
            key = wire_key(field)
            schema = self.describe(hints.get(field.name, Any))
            stated = stated_keywords(field.validator)
            if stated and "$ref" not in schema:
                schema = {**schema, **stated}
            properties[key] = schema
            if field.default is attrs.NOTHING:
                required.append(key)
        out: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            out["required"] = required
        if only is None:
            # A rule across fields (``__attrs_post_init__``) the record states with ``stating(cls, ...)``.
            out |= vars(cls).get(JSON_SCHEMA_ATTRIBUTE) or {}
        doc = (cls.__doc__ or "").strip() if only is None else ""
        if doc:
            out["description"] = " ".join(doc.split("\n\n")[0].split())
        return out

    def describe(self, tp: Any) -> dict[str, Any]:
        """The schema of a type annotation."""
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any or tp is object:
            return {}
        if origin in (typing.Union, types.UnionType):
            options = [a for a in args if a is not _NONE]
            nullable = len(options) != len(args)
            if len(options) == 1:
                inner = self.describe(options[0])
                if not nullable:
                    return inner
                if "type" in inner and isinstance(inner["type"], str) and "$ref" not in inner:
                    return {**inner, "type": [inner["type"], "null"]}
                return {"anyOf": [inner, {"type": "null"}]}
            schemas = [self.describe(a) for a in options] + ([{"type": "null"}] if nullable else [])
            return {"anyOf": schemas}
        if origin in (list, tuple, set, frozenset, typing.Sequence) or tp in (list, tuple):
            item = args[0] if args else Any
            return {"type": "array", "items": self.describe(item)}
        if origin in (dict, Mapping, typing.Mapping) or tp is dict:
            value = args[1] if len(args) == 2 else Any
            return {"type": "object", "additionalProperties": self.describe(value)}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if isinstance(tp, type):
            if issubclass(tp, Enum):
                return {"type": "string", "enum": [m.value for m in tp]}
            if tp is bool:
                return {"type": "boolean"}
            if tp is int:
                return {"type": "integer"}
            if tp is float:
                return {"type": "number"}
            if tp is str:
                return {"type": "string"}
            if tp is bytes:
                return {"type": "string", "contentEncoding": "base64"}
            if tp is datetime:  # what parse_timestamp reads; answers are always RFC 3339 text
                self.components.setdefault("Timestamp", {
                    "anyOf": [_RFC3339, *_EPOCH],
                    "description": "RFC 3339 (e.g. 2026-01-31T12:00:00Z; answers always write it), or epoch "
                                   "seconds (milliseconds beyond 1e11), in years 1 to 9999"})
                return {"$ref": "#/components/schemas/Timestamp"}
            if tp is Secret:
                return {"type": "string", "writeOnly": True}
            if attrs.has(tp):
                return self.ref(tp)
        if origin is not None and attrs.has(origin):  # a generic record such as Page[User]
            return self.ref(origin)
        return {}
