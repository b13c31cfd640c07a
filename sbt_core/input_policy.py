"""The one input policy at the edge: what JSON and names sbt accepts, and how a stored value it can no
longer answer with is shown.

Every HTTP route (through :func:`loads` and the path/query check of the HTTP app), the event bus's entry
points (:func:`check` on each event's detail) and the CLI read input through this module, so a value is
refused with a 400 naming its field **before** anything is stored, queued or logged:

- JSON the answer cannot represent: ``NaN``, ``Infinity``, ``-Infinity`` (Python's ``json`` accepts them,
  RFC 8259 does not), numbers that overflow a double to infinity (``1e999``), and strings holding an
  unpaired UTF-16 surrogate (``"\\ud800"``: no UTF-8 answer, no PostgreSQL column can carry it);
- objects and arrays nested deeper than :data:`MAX_DEPTH` levels (the document itself is level 1);
  Python's ``RecursionError`` never escapes;
- a name or id (``meterId``, ``userName``, ``Source``, a query parameter...) holding a control
  character (C0, DEL, C1; NUL included), which logs, terminals and PostgreSQL text columns mishandle.

Free-form data (``tenantData``, event details) accepts any other JSON: whatever can be answered back.

Reads never fail on what is stored: :func:`answerable` turns a value stored before this policy (or by
an older version) into one the answer can carry — a non-finite number becomes ``null``, an unpaired
surrogate U+FFFD, a too-deep branch ``null`` — and lists the paths it replaced; the HTTP answer then
flags the record with :data:`REPLACED_KEY`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from .errors import BadRequestError

__all__ = ["DETAIL_ID_KEYS", "MAX_DEPTH", "NAME_PATTERN", "NONBLANK_NAME_PATTERN", "NONBLANK_PATTERN", "REPLACED_KEY",
           "WHITESPACE", "WHITESPACE_PRINTABLE", "answerable", "check", "check_name", "detail_problem",
           "first_problem", "loads", "name_problem", "plainly_shallow", "report_unanswerable"]

log = logging.getLogger("sbt.input")

#: Deepest nesting of objects/arrays a JSON document may have, the document itself being level 1
#: (DynamoDB, where sbt-aws keeps tenants, allows 32 levels of nested attributes).
MAX_DEPTH = 32
#: Key added to a record in an answer whose stored values had to be replaced to be answered: the JSON
#: paths replaced (e.g. ``["tenantName"]``).
REPLACED_KEY = "sbt_replaced"

#: Top-level keys of an event detail that hold a name or id (SBT's tenant and registration ids, a usage
#: event's meter event name and idempotency key): under the rule for names when they are strings.
DETAIL_ID_KEYS = ("tenantId", "tenantRegistrationId", "eventName", "identifier")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _path(where: str, path: tuple[Any, ...]) -> str:
    out = where
    for key in path:
        out = f"{out}[{key}]" if isinstance(key, int) else (f"{out}.{key}" if out else str(key))
    return out or "body"


def _scalar_problem(value: Any) -> str | None:
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            return f"not a finite JSON number (got {value!r}; NaN, Infinity and beyond ±1.8e308 cannot be answered)"
    elif kind is str and not value.isascii() and _SURROGATE.search(value):
        return "holds an unpaired UTF-16 surrogate, which is not text"
    return None


def _walk(value: Any, *, scalars: bool = True) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Each problem of ``value`` as ``(path, message)``, without recursion; a branch deeper than
    :data:`MAX_DEPTH` is one problem and is not entered. ``scalars=False`` checks nesting only (what
    ``orjson`` already guarantees of numbers and strings)."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        kind = type(item)
        if kind is not dict and kind is not list:
            if scalars and (problem := _scalar_problem(item)) is not None:
                yield path, problem
            continue
        if depth > MAX_DEPTH:
            yield path, f"nests deeper than {MAX_DEPTH} levels"
            continue
        pairs = item.items() if kind is dict else enumerate(item)
        for key, child in pairs:
            if scalars and type(key) is str and not key.isascii() and _SURROGATE.search(key):
                yield (*path, key), "the key holds an unpaired UTF-16 surrogate, which is not text"
                continue
            child_kind = type(child)
            if child_kind is dict or child_kind is list:
                stack.append((child, depth + 1, (*path, key)))
            elif scalars and (child_kind is float or child_kind is str) \
                    and (problem := _scalar_problem(child)) is not None:
                yield (*path, key), problem


def _clean(value: Any) -> bool:
    """True when the policy refuses nothing in ``value``: :func:`_walk`'s answer for the usual case, one
    nesting level at a time with no paths kept (every event put on the bus pays for it)."""
    level, depth = [value], 1
    while level:
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is dict:
                if depth > MAX_DEPTH:
                    return False
                for key in item:
                    if type(key) is str and not key.isascii() and _SURROGATE.search(key):
                        return False
                children: Any = item.values()
            elif kind is list:
                if depth > MAX_DEPTH:
                    return False
                children = item
            else:
                children = (item,)
            for child in children:
                child_kind = type(child)
                if child_kind is str:
                    if not child.isascii() and _SURROGATE.search(child):
                        return False
                elif child_kind is float:
                    if child - child != 0.0:  # NaN or an infinity
                        return False
                elif child_kind is dict or child_kind is list:
                    below.append(child)
        level, depth = below, depth + 1
    return True


def _plainly_clean(value: Any) -> bool:
    """True when ``value`` surely holds nothing the policy refuses, judged from ``orjson``'s rendering
    (C-level, a fraction of :func:`_clean`'s cost): it refuses unpaired surrogates, and a rendering with no
    ``null`` (NaN and infinities render as ``null``) and at most :data:`MAX_DEPTH` brackets cannot hold a
    non-finite number or nest too deep. False only means "look closer"."""
    try:
        text = orjson.dumps(value)
    except TypeError:  # a surrogate, a non-string key, an integer beyond 64 bits...
        return False
    return b"null" not in text and text.count(b"{") + text.count(b"[") <= MAX_DEPTH


def first_problem(value: Any, where: str = "") -> str | None:
    """``"<where>.<path>: <why>"`` of the first value the policy refuses in ``value``, or None."""
    if _plainly_clean(value) or _clean(value):
        return None
    for path, message in _walk(value):
        return f"{_path(where, path)}: {message}"
    return None


def check(value: Any, where: str = "") -> Any:
    """``value`` (decoded JSON, e.g. an event detail built in Python) if the policy accepts it.

    :raises BadRequestError: ``<where>.<path>: <why>`` for the first refused value (``where`` names the
        document, e.g. ``detail``; empty for a request body, whose paths start at its top-level keys).
    """
    problem = first_problem(value, where)
    if problem is not None:
        raise BadRequestError(problem)
    return value


def plainly_shallow(data: bytes | str) -> bool:
    """True when ``data`` (JSON text) surely nests no deeper than :data:`MAX_DEPTH`: it holds at most that
    many brackets (a C-level count, cheaper than walking what it decodes to). False only means "look
    closer"."""
    if isinstance(data, str):
        return data.count("{") + data.count("[") <= MAX_DEPTH
    return data.count(b"{") + data.count(b"[") <= MAX_DEPTH


def _too_deep(value: Any) -> bool:
    """Whether decoded JSON nests containers deeper than :data:`MAX_DEPTH`: one level at a time, each a
    list comprehension over the containers only (what ``orjson`` decoded needs no other check)."""
    level, depth = [value], 1
    while level:
        if depth > MAX_DEPTH:
            return True
        below: list[Any] = []
        for item in level:
            below += [child for child in (item.values() if type(item) is dict else item)
                      if type(child) is dict or type(child) is list]
        level, depth = below, depth + 1
    return False


def loads(data: bytes | str, where: str = "") -> Any:
    """Decode a JSON document under the policy: ``orjson`` where it accepts (it already refuses NaN,
    infinities and unpaired surrogates; only the nesting is left to check), else the standard library
    (for its messages, and what it accepts beyond ``orjson``) followed by :func:`check`. As before the
    policy, ``orjson`` reads an integer beyond 64 bits as the nearest float.

    :raises BadRequestError: ``<where>: not valid JSON: <msg> at line L column C``, not UTF-8, or a value
        the policy refuses (named by its path).
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        kind = type(value)
        if (kind is dict or kind is list) and _too_deep(value):
            check(value, where)  # names the path
        return value
    try:
        value = json.loads(data)
    except UnicodeDecodeError:
        raise BadRequestError(f"{where or 'body'}: not valid JSON: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"{where or 'body'}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except RecursionError:
        raise BadRequestError(f"{where or 'body'}: nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts (sys.int_info)
        raise BadRequestError(f"{where or 'body'}: not valid JSON: {exc}") from None
    return check(value, where)


def detail_problem(detail: Any, where: str = "detail") -> str | None:
    """``"<where>.<path>: <why>"`` when the policy refuses an event detail: a value no answer can carry,
    or a name or id (:data:`DETAIL_ID_KEYS`) holding a control character; else None."""
    if type(detail) is dict:
        for key in DETAIL_ID_KEYS:
            value = detail.get(key)
            if type(value) is str and not value.isprintable() and (problem := name_problem(value)) is not None:
                return f"{where}.{key}: {problem}"
    return first_problem(detail, where)


#: The control characters a name may not hold (C0, DEL, C1), as the body of a regular expression class.
_CONTROLS = "\\u0000-\\u001f\\u007f-\\u009f"
#: What ``str.strip()`` removes (``str.isspace``), as the body of a class: ``\s`` differs between
#: ECMA 262 (the OpenAPI document's patterns) and Python, so it is spelled out; a test compares it with
#: ``str.isspace`` over every code point. ``WHITESPACE_PRINTABLE`` is the part that is no control character.
WHITESPACE_PRINTABLE = "\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
WHITESPACE = f"\\u0009-\\u000d\\u001c-\\u001f\\u0085{WHITESPACE_PRINTABLE}"

#: What :func:`check_name` accepts, as a JSON Schema ``pattern`` (ECMA 262) for the OpenAPI document: no
#: control character (a surrogate cannot reach a name: it is not text).
NAME_PATTERN = f"^[^{_CONTROLS}]*$"
#: A name that is not blank either (``value.strip()`` is not empty): what the records' name fields accept.
NONBLANK_NAME_PATTERN = f"^[^{_CONTROLS}]*[^{_CONTROLS}{WHITESPACE_PRINTABLE}][^{_CONTROLS}]*$"
#: Free text that is not blank (a description): some character ``str.strip()`` keeps.
NONBLANK_PATTERN = f"[^{WHITESPACE}]"


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a name or id (a control character or an unpaired surrogate), or None."""
    if value.isprintable():
        return None
    if _CONTROL.search(value):
        return "control characters (such as NUL or a line break) are not allowed in a name or id"
    if _SURROGATE.search(value):
        return "holds an unpaired UTF-16 surrogate, which is not text"
    return None


def check_name(value: str, field: str) -> str:
    """``value`` if it may be a name or id.

    :raises BadRequestError: ``<field>: <why>``.
    """
    problem = name_problem(value)
    if problem is not None:
        raise BadRequestError(f"{field}: {problem}")
    return value


def answerable(value: Any) -> tuple[Any, list[str]]:
    """``value`` made answerable — non-finite numbers and too-deep branches as ``null``, unpaired
    surrogates as U+FFFD — with the paths replaced (empty, and ``value`` itself, when nothing was)."""
    replaced: list[str] = []

    def fix(item: Any, depth: int, path: tuple[Any, ...]) -> Any:
        kind = type(item)
        if kind is dict or kind is list:
            if depth > MAX_DEPTH:
                replaced.append(_path("", path))
                return None
            if kind is dict:
                return {_fix_text(k) if type(k) is str else k: fix(v, depth + 1, (*path, k)) for k, v in item.items()}
            return [fix(v, depth + 1, (*path, i)) for i, v in enumerate(item)]
        if _scalar_problem(item) is None:
            return item
        replaced.append(_path("", path))
        return _fix_text(item) if kind is str else None

    if first_problem(value) is None:
        return value, []
    return fix(value, 1, ()), replaced


def _fix_text(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def report_unanswerable(what: str, records: Iterable[tuple[str, Any]]) -> list[str]:
    """The start-up check of a store: the ids of ``records`` (``(id, JSON value)`` pairs) holding a value
    the input policy refuses — stored by an older version — logged as one warning line naming them (reads
    still answer them, replaced and flagged). Returns those ids."""
    found = [(record_id, problem) for record_id, value in records
             if (problem := first_problem(value)) is not None]
    if found:
        log.warning("%d stored %s hold values an answer cannot carry; they are answered with those values "
                    "replaced and flagged %r: %s", len(found), what, REPLACED_KEY,
                    "; ".join(f"{record_id} ({problem})" for record_id, problem in found))
    return [record_id for record_id, _ in found]
