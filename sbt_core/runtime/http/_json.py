"""JSON answers: every route answers through :class:`JSONAnswer`, which never fails on what is stored.

Decoding requests is :func:`sbt_core.input_policy.loads` (``orjson`` where it accepts, the standard
library's messages where it refuses, the input policy on top).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.responses import JSONResponse

from ...input_policy import REPLACED_KEY, answerable

__all__ = ["FastJSONResponse", "JSONAnswer"]

log = logging.getLogger("sbt.http")


class JSONAnswer(JSONResponse):
    """Starlette's :class:`JSONResponse` (the same bytes), except that content holding a value JSON cannot
    carry — a non-finite number, an unpaired surrogate, nesting too deep, stored before the input policy
    refused them — is answered with those values replaced (:func:`~sbt_core.input_policy.answerable`) and
    each record so changed flagged with ``"sbt_replaced": [paths]``. A record is each item of ``data``
    when it is a list, else ``data``, else the whole body."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except (ValueError, UnicodeEncodeError, RecursionError):
            pass
        fixed = _answerable_body(content)
        log.warning("answered stored values JSON cannot carry with replacements (flagged %r)", REPLACED_KEY)
        return super().render(fixed)


def _flagged(record: Any) -> Any:
    fixed, replaced = answerable(record)
    if replaced and isinstance(fixed, dict):
        fixed = {**fixed, REPLACED_KEY: replaced}
    return fixed


def _answerable_body(content: Any) -> Any:
    if isinstance(content, dict) and "data" in content:
        data = content["data"]
        data = [_flagged(item) for item in data] if isinstance(data, list) else _flagged(data)
        return answerable({**content, "data": data})[0]
    return _flagged(content)


class FastJSONResponse(JSONAnswer):
    """A :class:`JSONAnswer` rendered by ``orjson``: the same compact UTF-8 bytes as Starlette's for
    content made of strings, ints, bools, None, lists and dicts — what the PutEvents answer holds.

    Not for content with floats: ``orjson`` writes NaN as ``null`` where Starlette refuses it. Anything
    ``orjson`` cannot render (a non-string key, an integer beyond 64 bits) falls back to Starlette's.
    """

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return super().render(content)
